"""How long an elevator is held when an e-bike stays in the car and the detector misses it now
and then: `control.elevator_hold` driven with a frame every `--step` s for `--hours`, the object
unseen for `--miss-s` every `--every-s`. Prints one JSON line.

`--implementation FILE` runs another version of gatectl/control/elevator_hold.py (for a
before/after figure: `git show <commit>:gatectl/control/elevator_hold.py > /tmp/old.py`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

from gatectl.control.actions import Alarm, Latch, Notice, Pulse


def simulate(hold, seen: Callable[[float], bool], until: float, step: float = 0.2) -> dict:
    """Drive ``hold`` (an ElevatorHold driving output "hold") with a frame every ``step`` s while
    ``seen(t)``: seconds the hold contact was energised, and the alert and notice kinds."""
    held, hold_until, alerts, notices = 0.0, 0.0, [], []
    t = 0.0
    while t < until:
        actions = (hold.ebike(t) if seen(t) else []) + hold.tick(t)
        for a in actions:
            if isinstance(a, Pulse) and a.output == "hold":
                hold_until = max(hold_until, t + a.seconds)
            elif isinstance(a, Latch) and a.output == "hold" and not a.on:
                hold_until = t
            elif isinstance(a, Alarm):
                alerts.append(a.kind)
            elif isinstance(a, Notice):
                notices.append(a.kind)
        held += step if t < hold_until else 0.0
        t = round(t + step, 3)
    return {"held_s": round(held, 1), "held_fraction": round(held / until, 4), "alerts": alerts,
            "notices": notices}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--miss-s", type=float, default=6.0, help="each detection gap")
    ap.add_argument("--every-s", type=float, default=100.0, help="one gap per this many seconds")
    ap.add_argument("--step", type=float, default=0.2, help="seconds between frames")
    ap.add_argument("--implementation", type=Path, help="another elevator_hold.py to run instead")
    args = ap.parse_args()
    if args.implementation:
        spec = importlib.util.spec_from_file_location("elevator_hold_under_test", args.implementation)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cls = module.ElevatorHold
    else:
        from gatectl.control.elevator_hold import ElevatorHold as cls
    hold = cls("hold", "buzzer", pulse_s=3, renew_s=1, release_after_s=5, cap_s=120)  # the shipped defaults
    out = simulate(hold, lambda t: t % args.every_s < args.every_s - args.miss_s, args.hours * 3600, args.step)

    def count(kinds: list[str]) -> dict[str, int]:
        return {k: kinds.count(k) for k in sorted(set(kinds))}

    print(json.dumps({"hours": args.hours, "miss_s": args.miss_s, "every_s": args.every_s,
                      "held_s": out["held_s"], "held_fraction": out["held_fraction"],
                      "alerts": count(out["alerts"]), "notices": count(out["notices"])}))


if __name__ == "__main__":
    main()
