"""OSDP card-read latency: from a card at the simulated reader to the access decision (the
sink), and on to the door relay's frame on a simulated Modbus board, at 9600 and 115200 baud.

Production code end to end: libosdp's peripheral device on a pty (`gatectl.hw.osdp.sim`, each
byte costing its wire time at the baud), the control panel thread (`gatectl.hw.osdp.panel`) with
the Secure Channel on, a sink that does what a grant does - ``Controls.grant("door")`` - and the
relay board's port thread (`SerialBoard`) writing the flash-on frame to a simulated Modbus board
that also answers at the baud. Each card waits for the previous one's feedback, at a random
phase of the polling. Last line: JSON with p50/p95/max in ms.

    python scripts/bench_osdp.py [--cards 40]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import stats  # noqa: E402
from gatectl.config import Config  # noqa: E402
from gatectl.config.hardware import DoorConfig, ModbusBoardConfig, OutputConfig  # noqa: E402
from gatectl.config.readers import ReaderConfig  # noqa: E402
from gatectl.control.controls import Controls  # noqa: E402
from gatectl.domain.credentials import Outcome, Presented  # noqa: E402
from gatectl.hw.osdp.panel import ReaderPanel  # noqa: E402
from gatectl.hw.osdp.sim import SimulatedReader  # noqa: E402
from gatectl.hw.outputs import Outputs  # noqa: E402
from gatectl.hw.serial import modbus  # noqa: E402
from gatectl.hw.serial.port import SerialBoard  # noqa: E402
from gatectl.hw.serial.sim import SimulatedBoard  # noqa: E402
from gatectl.store import Store  # noqa: E402
from gatectl.store.recorder import EventRecorder  # noqa: E402

BAUDS = (9600, 115200)
KEY = bytes(range(16))
PULSE_S = 1.0


def wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.002)


def run(baud: int, cards: int, rng: random.Random) -> dict:
    clock = time.perf_counter
    relay_sim = SimulatedBoard(baud=baud)
    flash_at: list[float] = []
    board_cfg = ModbusBoardConfig(name="relay", port=relay_sim.port, baud=baud)
    board = SerialBoard(board_cfg, clock=clock, on_write=lambda frame, t: (
        flash_at.append(t) if modbus.parse_flash_on(frame) is not None else None))
    site = Config(boards=[board_cfg], outputs=[OutputConfig(name="door", board="relay")],
                  doors=[DoorConfig(name="door", output="door", unlock_seconds=PULSE_S)])
    tmp = tempfile.TemporaryDirectory()
    store = Store(Path(tmp.name) / "bench.db")
    controls = Controls(site, Outputs(site.outputs, {"relay": board}),
                        EventRecorder(store, Path(tmp.name) / "snapshots"), clock=clock)
    at_sink: list[float] = []
    fed_back = threading.Event()

    def sink(p: Presented) -> Outcome:
        at_sink.append(clock())
        controls.grant("door")
        return Outcome(True, "bench")

    reader = SimulatedReader(address=1, scbk=KEY, baud=baud,
                             on_command=lambda c: fed_back.set())
    cfg = ReaderConfig(name="bench", door="door", port=reader.port, baud=baud, address=1,
                       scbk=KEY.hex())
    panel = ReaderPanel(reader.port, baud, [cfg], lambda door: sink, lambda s, w: None,
                        clock=clock)
    panel.start()
    to_sink, to_frame = [], []
    try:
        wait(lambda: board.health()["state"] == "online", 10, f"the relay board at {baud}")
        wait(lambda: panel.readers[0].online and panel.readers[0].secure, 30,
             f"the reader online with the Secure Channel at {baud}")
        for i in range(cards):
            time.sleep(0.05 + rng.uniform(0, 0.1))
            fed_back.clear()
            n_sink, n_flash = len(at_sink), len(flash_at)
            t0 = clock()
            reader.card(0x100000 + i, 26)
            wait(lambda: len(at_sink) > n_sink and len(flash_at) > n_flash, 5,
                 f"card {i} at the sink and the relay at {baud}")
            to_sink.append((at_sink[-1] - t0) * 1000)
            to_frame.append((flash_at[-1] - t0) * 1000)
            wait(fed_back.is_set, 5, f"the reader's feedback for card {i}")
            time.sleep(PULSE_S * 0.2)
    finally:
        panel.stop()
        reader.stop()
        board.close()
        relay_sim.stop()
        store.close()
        tmp.cleanup()
    return {"card_to_sink_ms": stats(to_sink), "card_to_relay_frame_ms": stats(to_frame)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cards", type=int, default=40, help="card reads per baud")
    args = ap.parse_args()
    rng = random.Random(1)
    result: dict = {"cards": args.cards, "secure_channel": True,
                    "python": platform.python_version()}
    for baud in BAUDS:
        print(f"{baud} baud: {args.cards} cards ...", file=sys.stderr)
        result[str(baud)] = run(baud, args.cards, rng)
        print(f"{baud} baud: {result[str(baud)]}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
