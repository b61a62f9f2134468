"""`gatectl demo`: the whole face-entry job on bundled photos, in a scratch folder.

Enrolls four sample residents (one of them 20 days ago and never seen since, one suspended by
the management), puts a fifth person on the watchlist, then replays other photos of them, a
stranger, a printed-photo attack and a screen-replay attack through the same gate pipeline as
`gatectl run`. The door relay is the real Modbus RTU driver talking over a pty to the simulated
board (`hw.serial.sim`), so the demo shows the exact frames a site's board would receive.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from gatectl.config import default_config
from gatectl.config.hardware import ModbusBoardConfig
from gatectl.domain.records import DAY_SECONDS
from gatectl.hw.serial.dialect import hexs
from gatectl.hw.serial.modbus import parse_flash_on
from gatectl.hw.serial.port import SerialBoard
from gatectl.hw.serial.sim import SimulatedBoard
from gatectl.people.enroll import Sample
from gatectl.runtime.app import App
from gatectl.runtime.replay import replay
from gatectl.sources.media import read_image

RESIDENTS = [  # name, unit, enrollment photo, days since enrollment
    ("Barack Obama", "1-1-101", "faces/obama_01.jpg", 0),
    ("Joe Biden", "1-2-202", "faces/biden_01.jpg", 20),
    ("Kit Harington", "2-1-301", "faces/kit_harington_01.jpeg", 0),
    ("Rose Leslie", "2-1-302", "faces/rose_leslie_01.jpg", 0),
]
WATCHED = ("Alex Lacamoire", "demo: banned by the management", "faces/alex_lacamoire_01.jpg")
SUSPENDED = "Rose Leslie"
PROBES = [
    "faces/obama_02.jpg",
    "faces/obama_03.jpg",
    "faces/kit_harington_02.jpeg",
    "faces/biden_02.jpg",
    "faces/rose_leslie_02.jpg",
    "faces/alex_lacamoire_02.jpg",
    "faces/lin_manuel_miranda_01.png",
    "liveness/image_F1.jpg",
    "liveness/image_F2.jpg",
]


def run_demo(data: Path, samples: Path, json_out: bool = False) -> int:
    cfg = default_config()
    door = cfg.doors[0]
    say: Callable[[str], object] = (lambda s: None) if json_out else print
    say(f"gatectl demo - state folder {data}")
    for name, unit, photo, days_ago in RESIDENTS:
        # enroll "in the past" through a store whose clock is shifted, as if done back then
        then = time.time() - days_ago * DAY_SECONDS

        def then_clock(t: float = then) -> float:
            return t

        past = App(cfg, data, clock=then_clock)
        r = past.enroller().enroll_resident(
            name, unit, [Sample(photo, read_image(samples / photo))]
        )
        past.close()
        say(
            f"  enrolled #{r.id} {name} ({unit})"
            + (f", {days_ago} days ago, never seen since" if days_ago else "")
        )
    sim = SimulatedBoard(address=1, channels=8, inputs=8, baud=9600)
    sent: list[bytes] = []
    board = SerialBoard(ModbusBoardConfig(name="main", port=sim.port),
                        on_write=lambda frame, _t: sent.append(frame))
    app = App(cfg, data, boards={"main": board})
    try:
        return _replay_samples(app, sim, board, sent, door.name, samples, json_out, say)
    finally:
        app.close()
        sim.stop()


def _replay_samples(app: App, sim: SimulatedBoard, board: SerialBoard, sent: list[bytes],
                    door: str, samples: Path, json_out: bool,
                    say: Callable[[str], object]) -> int:
    say(f"  relay: simulated Modbus RTU board on {sim.port}, driven by the real serial driver")
    rose = app.store.find_residents(SUSPENDED)[0]
    app.store.set_status(rose.id, "suspended")
    say(f"  suspended #{rose.id} {rose.name} (account flag from the management)")
    wname, reason, wphoto = WATCHED
    w = app.enroller().add_watch(wname, reason, [Sample(wphoto, read_image(samples / wphoto))])
    say(f"  watchlist #{w.id} {wname}: {reason}")
    deadline = time.monotonic() + 5
    while board.health()["state"] != "online" and time.monotonic() < deadline:
        time.sleep(0.02)
    say("replaying sample photos through gate 'gate' (a still = 3 camera frames):")
    seen = len(sent)

    def emit(d: dict) -> None:
        nonlocal seen
        d["source"] = str(Path(d["source"]).relative_to(samples))
        d["relay"] = None
        if d["decision"] == "granted":  # the port thread sends the frame a moment later
            until = time.monotonic() + 1.0
            flashes: list[bytes] = []
            while not flashes and time.monotonic() < until:
                time.sleep(0.005)
                flashes = [f for f in sent[seen:] if parse_flash_on(f)]
            flash = parse_flash_on(flashes[-1]) if flashes else None
            if flash is not None:
                channel, seconds = flash
                d["relay"] = (
                    f"{hexs(flashes[-1])} (relay {channel + 1} on for {seconds:g} s, board-timed)"
                )
            else:
                d["relay"] = "NOT SENT"
        seen = len(sent)
        if json_out:
            print(json.dumps(d, ensure_ascii=False), flush=True)
        else:
            score = "-" if d["score"] is None else f"{d['score']:.2f}"
            door_note = f" -> door '{door}' frame {d['relay']}" if d["relay"] else ""
            print(f"  {d['source']:32} {d['decision']:8} {d['resident'] or '-':16} {d['reason']} "
                  f"(score {score}){door_note}", flush=True)

    replay(app, [str(samples / p) for p in PROBES], None, emit)
    n_events = len(app.store.events())
    say(
        f"{n_events} events recorded with snapshots; try: gatectl --data {app.data_dir} events list"
    )
    st = board.health()
    say(f"relay board: {st['frames_sent']} frames sent, {st['frames_ok']} answered correctly, "
        f"{st['bad_frames']} rejected; every door pulse is timed by the board itself")
    return 0
