#!/usr/bin/env python3
"""E-bike gate latency: the detector per frame at the configured input size (with and without
the 4 tiles), and the time from the confirming frame to the hold frame leaving the serial port.

The second figure runs the real chain: `EbikeGate.process` on the frame that confirms the
e-bike -> `Controls.ebike` -> elevator hold machine -> named output -> Modbus driver -> the
flash-on frame written to the pty of the simulated board (the driver's write hook), 115200 baud.

Prints progress to stderr and, last, one JSON line on stdout.

    python scripts/bench_ebike.py [--iterations 50] [--confirmations 30]
    python scripts/bench_ebike.py --file site.onnx --family yolov8 --input-size 640   # a site's model
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchlib import stats, timed  # noqa: E402
from gatectl.runtime.app import App  # noqa: E402
from gatectl.config import parse_config  # noqa: E402
from gatectl.config.hardware import ModbusBoardConfig  # noqa: E402
from gatectl.hw.serial.modbus import parse_flash_on  # noqa: E402
from gatectl.hw.serial.port import SerialBoard  # noqa: E402
from gatectl.hw.serial.sim import SimulatedBoard  # noqa: E402
from gatectl.sources.media import read_image  # noqa: E402

FRAME = REPO / "tests/data/ebike/paddle_elevator_pic_1.png"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--confirmations", type=int, default=30)
    ap.add_argument("--file", type=Path, help="an ONNX detector of your own instead of the bundled YOLOX-nano")
    ap.add_argument("--family", choices=["yolox", "yolov8"], default="yolox", help="output layout of --file")
    ap.add_argument("--input-size", type=int, default=416)
    args = ap.parse_args()
    detector = {"input_size": args.input_size}
    if args.file:
        detector |= {"file": str(args.file), "family": args.family}
    frame = read_image(FRAME)
    sim = SimulatedBoard(baud=115200)
    written = threading.Event()
    at: list[float] = []

    def on_write(data: bytes, t: float) -> None:
        flash = parse_flash_on(data)
        if flash is not None and flash[0] == 0:  # the hold output is channel 0
            at.append(t)
            written.set()

    board = SerialBoard(ModbusBoardConfig(name="main", port=sim.port, baud=115200),
                        clock=time.perf_counter, on_write=on_write)
    cfg = parse_config({"outputs": [{"name": "hold", "channel": 0}, {"name": "buzzer", "channel": 1}],
                        "elevators": [{"name": "car", "hold_output": "hold", "alarm_output": "buzzer",
                                       "release_after_s": 0.05}],
                        "cameras": [{"name": "c", "source": "0"}],
                        "gates": [{"kind": "ebike", "name": "cam", "camera": "c", "elevator": "car",
                                   "confirm_frames": 1, "confirm_window": 1, "detector": detector}]})
    with tempfile.TemporaryDirectory() as tmp:
        app = App(cfg, Path(tmp), boards={"main": board})
        gate = app.gate(cfg.gates[0])
        deadline = time.monotonic() + 5
        while board.health()["state"] != "online" and time.monotonic() < deadline:
            time.sleep(0.01)
        det = gate.detector
        print(f"detector {det.size}x{det.size}: {args.iterations} frames with and without tiles ...", file=sys.stderr)
        timed(lambda: det.detect(frame), 3)
        tiled = timed(lambda: det.detect(frame), args.iterations)
        det.tiles = 1
        single = timed(lambda: det.detect(frame), args.iterations)
        det.tiles = 4
        tiled4 = timed(lambda: det.detect(frame), max(args.iterations // 2, 1))
        det.tiles = 2
        print(f"confirmation -> hold frame: {args.confirmations} times ...", file=sys.stderr)
        detections = gate.find(frame)  # the model's part of the confirming frame, timed above
        latency = []
        for i in range(args.confirmations):
            written.clear()
            t0 = time.perf_counter()
            gate.decide(detections, frame, float(i))
            if not written.wait(2):
                raise RuntimeError("no hold frame written")
            latency.append((at[-1] - t0) * 1000)
            gate.decide([], frame, i + 0.5)  # the e-bike leaves ...
            time.sleep(0.1)
            app.controls.poll()  # ... and the hold ends: the next one is a new incident
            time.sleep(0.05)
        app.close()
    sim.stop()
    result = {"frame": f"{frame.shape[1]}x{frame.shape[0]}", "input_size": det.size,
              "detector_ms": stats(single), "detector_tiles_ms": stats(tiled), "detector_tiles4x4_ms": stats(tiled4),
              "confirm_to_relay_ms": stats(latency), "baud": 115200,
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
