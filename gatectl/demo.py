"""`gatectl demo`: the whole face-entry job on bundled photos, in a scratch folder.

Enrolls four sample residents (one of them 20 days ago and never seen since, one suspended by
the management), puts a fifth person on the watchlist, then replays other photos of them, a
stranger, a printed-photo attack and a screen-replay attack through the same gate pipeline as
`gatectl run`, driving a simulated relay.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from gatectl.app import App
from gatectl.cli import replay
from gatectl.config import default_config
from gatectl.decision import DAY_SECONDS
from gatectl.enroll import Enroller, Sample
from gatectl.hw.relay import SimulatedRelay
from gatectl.media import read_image

RESIDENTS = [  # name, unit, enrollment photo, days since enrollment
    ("Barack Obama", "1-1-101", "faces/obama_01.jpg", 0),
    ("Joe Biden", "1-2-202", "faces/biden_01.jpg", 20),
    ("Kit Harington", "2-1-301", "faces/kit_harington_01.jpeg", 0),
    ("Rose Leslie", "2-1-302", "faces/rose_leslie_01.jpg", 0),
]
WATCHED = ("Alex Lacamoire", "demo: banned by the management", "faces/alex_lacamoire_01.jpg")
SUSPENDED = "Rose Leslie"
PROBES = ["faces/obama_02.jpg", "faces/obama_03.jpg", "faces/kit_harington_02.jpeg", "faces/biden_02.jpg",
          "faces/rose_leslie_02.jpg", "faces/alex_lacamoire_02.jpg", "faces/lin_manuel_miranda_01.png",
          "liveness/image_F1.jpg", "liveness/image_F2.jpg"]


def run_demo(data: Path, samples: Path, json_out: bool = False) -> int:
    cfg = default_config()
    relay = SimulatedRelay()
    door = cfg.doors[0]
    say = (lambda s: None) if json_out else print
    say(f"gatectl demo - state folder {data}")
    for name, unit, photo, days_ago in RESIDENTS:
        # enroll "in the past" through a store whose clock is shifted, as if done back then
        then = time.time() - days_ago * DAY_SECONDS
        past = App(cfg, data, boards={"main": relay}, clock=lambda then=then: then)
        r = Enroller(past).enroll_resident(name, unit, [Sample(photo, read_image(samples / photo))])
        past.close()
        say(f"  enrolled #{r.id} {name} ({unit})" + (f", {days_ago} days ago, never seen since" if days_ago else ""))
    app = App(cfg, data, boards={"main": relay})
    rose = app.store.find_residents(SUSPENDED)[0]
    app.store.set_status(rose.id, "suspended")
    say(f"  suspended #{rose.id} {rose.name} (account flag from the management)")
    wname, reason, wphoto = WATCHED
    w = Enroller(app).add_watch(wname, reason, [Sample(wphoto, read_image(samples / wphoto))])
    say(f"  watchlist #{w.id} {wname}: {reason}")
    say("replaying sample photos through gate 'gate' (a still = 3 camera frames):")

    def emit(d: dict) -> None:
        d["source"] = str(Path(d["source"]).relative_to(samples))
        pulses = len(relay.history)
        d["relay"] = (f"channel {relay.history[-1].channel} pulsed {relay.history[-1].seconds:.0f} s"
                      if pulses > emit.pulses else None)
        emit.pulses = pulses
        if json_out:
            print(json.dumps(d, ensure_ascii=False), flush=True)
        else:
            score = "-" if d["score"] is None else f"{d['score']:.2f}"
            door_note = f" -> door '{door.name}' {d['relay']}" if d["relay"] else ""
            print(f"  {d['source']:32} {d['decision']:8} {d['resident'] or '-':16} {d['reason']} "
                  f"(score {score}){door_note}", flush=True)

    emit.pulses = 0  # type: ignore[attr-defined]
    replay(app, [str(samples / p) for p in PROBES], None, emit)
    n_events = len(app.store.events())
    say(f"{n_events} events recorded with snapshots; try: gatectl --data {data} events list")
    app.close()
    return 0
