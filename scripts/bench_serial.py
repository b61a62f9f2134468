#!/usr/bin/env python3
"""Serial relay benchmark: Modbus round trips and grant -> relay-frame latency on a pty.

Runs the production code (SerialLink for single transactions, SerialBoard for the grant path)
against the simulated board, which delays each reply by the wire time of request + reply at
the configured baud (a pty itself is instant), at 9600 and 115200 baud:

- ``round_trip_ms``: write + validated reply of FC 01 read coils (8 coils: 8 + 6 bytes) and of
  a flash-on write (8 + 8 bytes), back to back; ``wire_floor_ms`` is the pure transmission time
  of those bytes and ``frame_gap_ms`` the Modbus inter-frame silence the driver keeps before
  each request (part of every back-to-back round trip).
- ``grant_to_frame_ms``: from ``Controls.grant()`` (what a gate calls on a granted decision:
  door controller, named output, driver queue) to the flash frame's bytes being handed to the
  OS, taken by the driver's ``on_write`` hook. Grants
  arrive at random phases of the 100 ms input poll, at least 100 ms apart (so the previous
  pulse's write and coil read-back are over), so a grant may wait for a poll or read-back in
  flight: that wait, not the code path, is what the p95 shows at 9600 baud.

Prints progress to stderr and, last, one JSON line on stdout.

    python scripts/bench_serial.py [--iterations 200] [--grants 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import serial

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchlib import stats, timed  # noqa: E402
from gatectl.config import Config  # noqa: E402
from gatectl.config.hardware import DoorConfig, ModbusBoardConfig, OutputConfig  # noqa: E402
from gatectl.store.recorder import EventRecorder  # noqa: E402
from gatectl.hw.outputs import Outputs  # noqa: E402
from gatectl.hw.serial import modbus  # noqa: E402
from gatectl.hw.serial.dialect import frame_gap_s, wire_time_s  # noqa: E402
from gatectl.hw.serial.modbus import ModbusDialect  # noqa: E402
from gatectl.hw.serial.port import READ_TICK_S, Counters, SerialBoard, SerialLink  # noqa: E402
from gatectl.hw.serial.sim import SimulatedBoard  # noqa: E402
from gatectl.control.controls import Controls  # noqa: E402
from gatectl.store import Store  # noqa: E402

BAUDS = (9600, 115200)
PULSE_S = 0.5


def round_trips(cfg: ModbusBoardConfig, n: int) -> dict:
    """Single transactions on a port of our own, before the driver's thread opens it."""
    port = serial.serial_for_url(cfg.port, baudrate=cfg.baud, timeout=READ_TICK_S)
    counters = Counters()
    link = SerialLink(port, ModbusDialect(cfg), counters)
    try:
        read = timed(lambda: link.transact(modbus.read_coils(cfg.address, 0, 8)), n)
        flash = timed(lambda: link.transact(modbus.flash_on(cfg.address, 0, PULSE_S)), n)
    finally:
        port.close()
    bad = {k: v for k, v in counters.snapshot().items()
           if k not in ("frames_sent", "frames_ok") and v}
    if bad:
        raise RuntimeError(f"round trips at {cfg.baud} baud were not clean: {bad}")
    return {"read_coils": stats(read), "flash_on": stats(flash),
            "wire_floor_ms": {"read_coils": round(wire_time_s(8 + 6, cfg.baud) * 1000, 3),
                              "flash_on": round(wire_time_s(8 + 8, cfg.baud) * 1000, 3)},
            "frame_gap_ms": round(frame_gap_s(cfg.baud) * 1000, 3)}


def grant_to_frame(cfg: ModbusBoardConfig, n: int, rng: random.Random) -> tuple[dict, dict]:
    written = threading.Event()
    flash_at: list[float] = []

    def on_write(frame: bytes, t: float) -> None:
        if modbus.parse_flash_on(frame) is not None:
            flash_at.append(t)
            written.set()

    board = SerialBoard(cfg, clock=time.perf_counter, on_write=on_write)
    site = Config(boards=[cfg], outputs=[OutputConfig(name="door", board=cfg.name)],
                  doors=[DoorConfig(name="door", output="door", unlock_seconds=PULSE_S)])
    tmp = tempfile.TemporaryDirectory()
    store = Store(Path(tmp.name) / "bench.db")
    controls = Controls(site, Outputs(site.outputs, {cfg.name: board}),
                        EventRecorder(store, Path(tmp.name) / "snapshots"), clock=time.perf_counter)
    try:
        deadline = time.monotonic() + 5
        while board.health()["state"] != "online":
            if time.monotonic() > deadline:
                raise RuntimeError(f"board at {cfg.baud} baud not online: "
                                   f"{board.health()['last_error']}")
            time.sleep(0.01)
        samples = []
        for _ in range(n):
            time.sleep(0.1 + rng.uniform(0, cfg.poll_ms / 1000))  # any phase of the poll cycle
            written.clear()
            t0 = time.perf_counter()
            controls.grant("door")
            if not written.wait(2.0):
                raise RuntimeError(f"no flash frame written within 2 s at {cfg.baud} baud")
            samples.append((flash_at[-1] - t0) * 1000)
        done_by = time.monotonic() + 2
        while board.health()["commands_ok"] + board.health()["commands_failed"] < n:
            if time.monotonic() > done_by:
                raise RuntimeError(f"the last pulse at {cfg.baud} baud never completed")
            time.sleep(0.01)
        status = board.health()
    finally:
        board.close()
        store.close()
        tmp.cleanup()
    keep = ("frames_sent", "frames_ok", "timeouts", "bad_frames", "commands_ok", "commands_failed")
    return stats(samples), {k: status[k] for k in keep}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=200,
                    help="round trips per request kind and baud")
    ap.add_argument("--grants", type=int, default=100, help="pulses per baud for grant_to_frame_ms")
    args = ap.parse_args()
    rng = random.Random(1)
    result: dict = {"round_trip_ms": {}, "grant_to_frame_ms": {}, "driver_counters": {},
                    "iterations": args.iterations, "grants": args.grants,
                    "python": platform.python_version(), "pyserial": serial.__version__}
    for baud in BAUDS:
        sim = SimulatedBoard(baud=baud)
        try:
            cfg = ModbusBoardConfig(name="bench", port=sim.port, baud=baud)
            print(f"{baud} baud: {args.iterations} x read coils, {args.iterations} x flash-on ...",
                  file=sys.stderr)
            result["round_trip_ms"][str(baud)] = round_trips(cfg, args.iterations)
            print(f"{baud} baud: {args.grants} grants through SerialBoard "
                  f"(poll every {cfg.poll_ms} ms) ...", file=sys.stderr)
            g, counters = grant_to_frame(cfg, args.grants, rng)
            result["grant_to_frame_ms"][str(baud)] = g
            result["driver_counters"][str(baud)] = counters
        finally:
            sim.stop()
        print(f"{baud} baud: round trips {result['round_trip_ms'][str(baud)]}, grant->frame {g}",
              file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
