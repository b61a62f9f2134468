#!/usr/bin/env python3
"""Soak: every gate kind at once (a face door, a plate lane, an elevator car) in one daemon -
this process runs `gatectl run`'s Runner on looping sample folders from tests/data - for N
minutes, and what it cost: frames analysed, decisions, CPU %, RSS and open descriptors at the
start (after --warmup-s: onnxruntime's arenas grow over the first runs of each model) and at
the end, with RSS each minute. A leak shows as RSS or descriptors growing with time.

The daemon gives the C heap's free pages back every ``[run] trim_heap_s`` (`runtime/heap.py`);
``--trim-heap-s 0`` turns that off to see the allocator's drift. ``--trace`` compares tracemalloc
snapshots of Python's own allocations (numpy arrays included, onnxruntime's C++ heap not) at the
start and the end and prints where they grew.

Prints a progress line a minute to stderr and, last, one JSON line on stdout.

    python scripts/soak.py --minutes 30 [--fps 5] [--warmup-s 30] [--motion] [--trim-heap-s S] [--trace]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemonlib import (  # noqa: E402
    CARS,
    FACES,
    PLATES,
    InProcessDaemon,
    cpu_seconds,
    folder,
    machine,
    open_fds,
    rss_mb,
    site,
)


def grown(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int = 12) -> list[dict]:
    """Where Python's allocations grew most between two snapshots (by allocating line)."""
    stats = after.compare_to(before, "lineno")
    return [{"where": str(s.traceback[0]), "grew_kb": round(s.size_diff / 1024, 1),
             "blocks": s.count_diff} for s in stats[:top] if s.size_diff > 0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    ap.add_argument("--fps", type=float, default=5.0, help="each camera's frame rate (default 5)")
    ap.add_argument("--warmup-s", type=float, default=30.0, help="not measured (default 30)")
    ap.add_argument("--motion", action="store_true", help="the motion pre-filter on")
    ap.add_argument("--trim-heap-s", type=float, default=60.0,
                    help="[run] trim_heap_s: heap trims every S s, 0 never (default 60)")
    ap.add_argument("--trace", action="store_true", help="tracemalloc: where Python's memory grew")
    args = ap.parse_args()
    if not 0 < args.minutes <= 24 * 60 or not 0.5 <= args.fps <= 30 or not 0 <= args.warmup_s <= 600:
        ap.error("--minutes must be 0-1440, --fps 0.5-30 and --warmup-s 0-600")
    with tempfile.TemporaryDirectory(prefix="gatectl-soak-") as tmp:
        root = Path(tmp)
        cameras = {"door_cam": folder(root, "faces", FACES), "lane_cam": folder(root, "plates", PLATES),
                   "car_cam": folder(root, "cars", CARS)}
        data = site(root, cameras, [("face", "door", "door_cam"), ("plate", "lane", "lane_cam"),
                                    ("ebike", "car", "car_cam")], args.fps,
                    {"motion": {"enabled": args.motion}, "trim_heap_s": args.trim_heap_s})
        if args.trace:
            tracemalloc.start(1)
        daemon = InProcessDaemon(data, root / "state")
        daemon.start()
        time.sleep(args.warmup_s)
        first = tracemalloc.take_snapshot() if args.trace else None
        start = {"rss_mb": rss_mb(), "open_fds": open_fds(),
                 "analysed": daemon.analysed()}
        t0, c0 = time.monotonic(), cpu_seconds()
        end_at = t0 + args.minutes * 60
        next_report = t0 + 60
        per_minute: list[float] = []
        try:
            while (now := time.monotonic()) < end_at:
                time.sleep(min(1.0, end_at - now))
                if time.monotonic() >= next_report:
                    next_report += 60
                    per_minute.append(rss_mb())
                    print(f"{(time.monotonic() - t0) / 60:.0f} min: {daemon.analysed()} frames, "
                          f"rss {per_minute[-1]} MB, fds {open_fds()}", file=sys.stderr, flush=True)
            wall, cpu = time.monotonic() - t0, cpu_seconds() - c0
            end = {"rss_mb": rss_mb(), "open_fds": open_fds()}
            heap = daemon.runner.heap.health()
            growth = grown(first, tracemalloc.take_snapshot()) if first is not None else None
            counters = daemon.counters()
            decisions = daemon.decisions()
        finally:
            daemon.stop()
    print(json.dumps({
        "minutes": round(wall / 60, 2),
        "gates": ["face", "plate", "ebike"],
        "frames_analysed": counters["analysed"] - start["analysed"],
        "frames_per_s": round((counters["analysed"] - start["analysed"]) / wall, 2),
        **{k: counters[k] for k in ("skipped", "skipped_motion", "errors", "restarts")},
        "decisions": decisions,
        "cpu_percent": round(100 * cpu / wall, 1),
        "rss_mb": {"start": start["rss_mb"], "end": end["rss_mb"],
                   "growth_percent": round(100 * (end["rss_mb"] / start["rss_mb"] - 1), 2),
                   "per_minute": per_minute},
        "trim_heap_s": args.trim_heap_s,
        "heap": heap,
        "open_fds": {"start": start["open_fds"], "end": end["open_fds"]},
        **({"python_growth": growth} if growth is not None else {}),
        "machine": machine(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
