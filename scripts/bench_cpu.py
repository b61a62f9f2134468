#!/usr/bin/env python3
"""CPU of one daemon running 2 face doors + 1 plate lane + 1 elevator car, each on its own
camera (looping image folders at --fps), with the motion pre-filter on:

* idle: every camera shows the same empty scene (static frames: the filter spares them after
  its first look and hold);
* busy: the cameras show faces, plates and e-bikes (changing frames: every frame up to
  ``run.max_fps`` is analysed).

CPU % is this process's user + system time over wall time (100 = one core busy); the idle
figure is mostly the decoding of the sample files, which ``per_frame_cpu_ms`` splits from the
motion filter's own cost. Prints, last, one JSON line on stdout.

    python scripts/bench_cpu.py [--seconds 30] [--fps 10] [--max-fps 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemonlib import (  # noqa: E402
    CARS,
    EMPTY,
    FACES,
    PLATES,
    InProcessDaemon,
    cpu_seconds,
    folder,
    machine,
    rss_mb,
    site,
)
from gatectl.config.run import MotionConfig  # noqa: E402  (importable once daemonlib set the path)
from gatectl.sources.media import read_image  # noqa: E402
from gatectl.sources.motion import MotionFilter  # noqa: E402

GATES = [("face", "door_a", "cam_a"), ("face", "door_b", "cam_b"), ("plate", "lane", "cam_lane"),
         ("ebike", "car", "cam_car")]


def phase(root: Path, busy: bool, seconds: float, fps: float, max_fps: float) -> dict:
    scenes = {"cam_a": FACES, "cam_b": FACES[::-1], "cam_lane": PLATES, "cam_car": CARS}
    cameras = {cam: folder(root, cam, scenes[cam] if busy else [EMPTY]) for cam in scenes}
    run = {"max_fps": max_fps, "motion": {"enabled": True, "hold_s": 2.0}}
    daemon = InProcessDaemon(site(root, cameras, GATES, fps, run), root / "state", enroll=busy)
    daemon.start()
    try:
        time.sleep(3.0)  # past the first look and its hold
        before, t0, c0 = daemon.counters(), time.monotonic(), cpu_seconds()
        time.sleep(seconds)
        wall, cpu = time.monotonic() - t0, cpu_seconds() - c0
        after = daemon.counters()
    finally:
        daemon.stop()
    analysed = after["analysed"] - before["analysed"]
    return {
        "cpu_percent": round(100 * cpu / wall, 1),
        # less dependent on what else the machine runs than the percentage: a starved process
        # analyses fewer frames at the same cost each
        "cpu_ms_per_analysed_frame": round(1000 * cpu / analysed, 1) if analysed else None,
        "analysed_per_s": round((after["analysed"] - before["analysed"]) / wall, 2),
        "spared_by_motion_per_s": round((after["skipped_motion"] - before["skipped_motion"]) / wall, 2),
        "skipped_over_max_fps_per_s": round((after["skipped"] - before["skipped"]) / wall, 2),
        "errors": after["errors"],
        "rss_mb": rss_mb(),
    }


def per_frame_costs(n: int = 100) -> dict:
    """What an idle frame costs, split: decoding the sample file (a camera's JPEG/H.264 decode
    costs the same kind of work) and the motion filter's look at it."""
    image = read_image(EMPTY)
    t = time.process_time()
    for _ in range(n):
        read_image(EMPTY)
    decode = (time.process_time() - t) * 1000 / n
    f = MotionFilter(MotionConfig(enabled=True, hold_s=0))
    t = time.process_time()
    for i in range(n):
        f.wants(image, float(i))
    motion = (time.process_time() - t) * 1000 / n
    return {"decode_sample": round(decode, 3), "motion_filter": round(motion, 3),
            "frame": f"{image.shape[1]}x{image.shape[0]}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="measured time per phase (default 30)")
    ap.add_argument("--fps", type=float, default=10.0, help="each camera's frame rate (default 10)")
    ap.add_argument("--max-fps", type=float, default=8.0, help="run.max_fps (default 8)")
    args = ap.parse_args()
    if not 1 <= args.seconds <= 3600:
        ap.error("--seconds must be 1-3600")
    out: dict = {"gates": [f"{k}:{n}" for k, n, _ in GATES], "camera_fps": args.fps, "max_fps": args.max_fps}
    for name, busy in (("idle", False), ("busy", True)):
        with tempfile.TemporaryDirectory(prefix=f"gatectl-cpu-{name}-") as tmp:
            out[name] = phase(Path(tmp), busy, args.seconds, args.fps, args.max_fps)
            print(f"{name}: {out[name]}", file=sys.stderr, flush=True)
    out["per_frame_cpu_ms"] = per_frame_costs()
    out["machine"] = machine()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
