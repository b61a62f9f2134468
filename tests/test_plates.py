"""Plate recognition on the repo's real plate scenes and crops, the plate grammar, and the lane:
lists, one decision per vehicle, barrier, entry/exit records, replay."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest

from gatectl.domain import plate_format
from gatectl.runtime.app import App, simulated_boards
from gatectl.config import parse_config
from gatectl.sources.media import read_image
from gatectl.vision.models import ModelStore
from gatectl.vision.plate.analyzer import PlateAnalyzer
from gatectl.vision.plate.read import PlateReader
from tests.conftest import DATA, run_cli

PLATES = DATA / "plates"


def scene_truth() -> list[tuple[str, set[str]]]:
    with open(PLATES / "scenes" / "ground_truth.csv", newline="", encoding="utf-8") as f:
        return [(r["file"], set(r["plates"].split(";"))) for r in csv.DictReader(f)]


def crop_truth() -> list[tuple[str, str]]:
    out = [(p.name, p.stem) for p in sorted((PLATES / "lprnet_crops").glob("*.jpg"))]
    for p in sorted((PLATES / "crops").glob("*.jpg")):
        out.append((f"crops/{p.name}", p.stem.split("_")[-1] if p.stem.startswith("hyperlpr") else p.stem.split("_")[1]))
    return out


@pytest.fixture(scope="module")
def analyzer():
    return PlateAnalyzer(ModelStore(), 320, 0.5)


@pytest.mark.parametrize("file,truth", scene_truth(), ids=[f for f, _ in scene_truth()])
def test_every_scene_plate_is_found_and_read_exactly(analyzer, file, truth):
    obs = analyzer.analyze(read_image(PLATES / "scenes" / file))
    read = {o.text for o in obs if o.text}
    assert read == truth


def test_colours_follow_the_plate(analyzer):
    colours = {}
    for file, _ in scene_truth():
        for o in analyzer.analyze(read_image(PLATES / "scenes" / file)):
            colours[o.text] = (o.colour, o.det.double)
    assert colours["沪AF71017"] == ("green", False) and colours["苏ED51712"][0] == "green"
    assert colours["京EA5331"] == ("yellow", True) and colours["沪AN9241"] == ("yellow", True)
    assert colours["鄂F8888警"][0] == "white" and colours["粤ZR066港"][0] == "black"
    assert colours["川A8H458"][0] == "blue"


def test_crop_accuracy_is_above_the_best_single_model(analyzer):
    reader = analyzer.reader
    truth = crop_truth()
    right = sum(reader.read(read_image(PLATES / ("" if f.startswith("crops/") else "lprnet_crops") / f)).text == gt
                for f, gt in truth)
    assert len(truth) == 605
    assert right / len(truth) >= 0.985, f"{right}/{len(truth)}"


def test_grammar_accepts_real_formats_and_rejects_the_rest():
    for plate, kind in [("粤B12345", "ordinary"), ("沪AD12345", "new_energy_small"), ("沪A12345D", "new_energy_large"),
                        ("鄂F8888警", "police"), ("琼A6716学", "coach"), ("沪A1707领", "consulate"),
                        ("粤ZR066港", "hk_macau"), ("WJ1693015", "armed_police"), ("冀D5L690", "ordinary")]:
        assert plate_format.kind_of(plate) == kind, plate
    for bad in ["A-88602", "皖AO1234", "皖AI1234", "皖A1234", "06", "皖A123456", "XX12345", "粤B1234港", "警A12345", ""]:
        assert not plate_format.is_plate(bad), bad
    assert plate_format.normalise(" 粤b·123-45 ") == "粤B12345"


def test_reader_never_returns_a_non_plate(analyzer):
    """Text that is not a plate (a face photo, a sign) is read as nothing, not as a plate."""
    reader: PlateReader = analyzer.reader
    face = read_image(DATA / "faces" / "obama_01.jpg")
    r = reader.read(face[300:400, 200:600])
    assert r.text is None or plate_format.is_plate(r.text)
    blank = np.full((48, 160, 3), 200, np.uint8)
    assert reader.read(blank).text is None


# ---- the lane --------------------------------------------------------------------------------

def lane_cfg(direction: str = "entry", **gate) -> dict:
    return {"cameras": [{"name": "lane", "source": str(PLATES / "scenes"), "kind": "images"}],
            "outputs": [{"name": "arm", "channel": 1}],
            "inputs": [{"name": "loop", "index": 0, "role": "vehicle_guard"}],
            "barriers": [{"name": "arm", "open_output": "arm", "guard_input": "loop"}],
            "gates": [{"kind": "plate", "name": "main-" + direction, "camera": "lane", "barrier": "arm",
                       "direction": direction, **gate}]}


class Lane:
    def __init__(self, tmp_path, direction="entry", clock=time.time, **gate):
        self.cfg = parse_config(lane_cfg(direction, **gate))
        self.boards = simulated_boards(self.cfg)
        self.app = App(self.cfg, tmp_path, boards=self.boards, clock=clock)
        self.lane = self.app.gate(self.cfg.gates[0])

    def drive(self, file: str, frames: int = 3, t0: float = 0.0):
        img = read_image(PLATES / "scenes" / file)
        out = []
        for i in range(frames):
            out += self.lane.process(img, t0 + i * 0.2)
        return out + self.lane.flush(t0 + 100)

    def pulses(self) -> int:
        return len(self.boards["main"].history)


def test_whitelisted_car_opens_once_unknown_is_denied_blacklisted_alerts(tmp_path):
    lane = Lane(tmp_path)
    store = lane.app.store
    store.add_plate("川A8H458", "resident", unit="3-1201")
    store.add_plate("豫ERU586", "blacklist", note="police notice 17")
    [d] = lane.drive("we0091234_Quicker_20220930_180856.png", frames=6)
    assert (d.plate, d.decision, d.reason, d.colour) == ("川A8H458", "granted", "resident 3-1201", "blue")
    assert lane.pulses() == 1 and d.event.snapshot  # one vehicle, one pulse, one photo
    [d] = lane.drive("we0091234_single_green.jpg", t0=200)
    assert (d.plate, d.decision, d.reason) == ("沪AF71017", "denied", "unknown plate") and d.event.snapshot
    [d] = lane.drive("we0091234_Quicker_20220930_180938.png", t0=400)
    assert (d.decision, d.event.kind) == ("alert", "alert") and "police notice 17" in d.reason
    assert lane.pulses() == 1
    assert [e.reason.split(":")[0] for e in store.events()] == ["川A8H458 entry", "沪AF71017 entry", "豫ERU586 entry"]


def test_matching_is_exact_and_windows_and_status_apply(tmp_path):
    now = time.time()
    lane = Lane(tmp_path, clock=lambda: now)
    store = lane.app.store
    store.add_plate("川A8H459", "resident")  # one character off the car in the scene
    [d] = lane.drive("we0091234_Quicker_20220930_180856.png")
    assert d.decision == "denied" and d.reason == "unknown plate"
    store.add_plate("沪AF71017", "visitor", valid_from=now - 7200, valid_to=now - 3600)
    [d] = lane.drive("we0091234_single_green.jpg", t0=200)
    assert (d.decision, d.reason) == ("denied", "visitor pass expired")
    assert lane.pulses() == 0


def test_low_confidence_never_opens(tmp_path):
    lane = Lane(tmp_path, thresholds={"detect": 0.6, "char": 0.99})
    lane.app.store.add_plate("WJ1693015", "resident")
    [d] = lane.drive("we0091234_tmpA5E3.png")
    assert d.decision == "denied" and d.reason.startswith("low confidence (character")
    assert lane.pulses() == 0


def test_entry_and_exit_records_time_inside(tmp_path):
    t = [1_800_000_000.0]
    entry = Lane(tmp_path, "entry", clock=lambda: t[0])
    entry.app.store.add_plate("皖K66666", "resident")
    [d] = entry.drive("we0091234_single_yellow.jpg")
    assert d.decision == "granted"
    assert [v["plate"] for v in entry.app.store.vehicles_inside()] == ["皖K66666"]
    t[0] += 5400
    cfg = parse_config(lane_cfg("exit"))
    exit_app = App(cfg, tmp_path, boards=simulated_boards(cfg), clock=lambda: t[0])
    exit_lane = exit_app.gate(cfg.gates[0])
    img = read_image(PLATES / "scenes" / "we0091234_single_yellow.jpg")
    decided = [x for i in range(3) for x in exit_lane.process(img, i * 0.2)] + exit_lane.flush(100)
    assert [(x.plate, x.decision) for x in decided] == [("皖K66666", "granted")]
    passes = exit_app.store.vehicle_passes(plate="皖K66666")
    assert [(p["direction"], p["inside_s"]) for p in passes] == [("entry", None), ("exit", 5400.0)]
    assert exit_app.store.vehicles_inside() == []


def test_replay_prints_plate_decisions_and_plates_cli(tmp_path):
    cfg_path = tmp_path / "lane.toml"
    cfg_path.write_text(f"""
[[cameras]]
name = "lane"
source = "{PLATES / 'scenes'}"

[[outputs]]
name = "arm"

[[barriers]]
name = "arm"
open_output = "arm"

[[gates]]
kind = "plate"
name = "lane-in"
camera = "lane"
barrier = "arm"
""")
    d = tmp_path / "state"
    r = run_cli("plates", "add", "粤b 12345", "--list", "resident", "--unit", "1-101", config=cfg_path, data=d)
    assert r.returncode == 0 and "粤B12345 on the resident list" in r.stdout, r.stderr
    r = run_cli("plates", "add", "粤B1234O", config=cfg_path, data=d)
    assert r.returncode == 2 and r.stderr.strip().startswith("gatectl: plate: '粤B1234O' is not a valid Chinese plate")
    assert run_cli("plates", "add", "皖K66666", config=cfg_path, data=d).returncode == 0
    r = run_cli("replay", "--store", "--json", str(PLATES / "scenes" / "we0091234_single_yellow.jpg"),
                str(PLATES / "scenes" / "we0091234_double_yellow.jpg"), config=cfg_path, data=d)
    assert r.returncode == 0, r.stderr
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(o["plate"], o["color"], o["decision"]) for o in out] == [("皖K66666", "yellow", "granted"),
                                                                        ("京EA5331", "yellow", "denied")]
    assert all(set(o) >= {"plate", "color", "decision", "reason", "score"} for o in out)
    r = run_cli("vehicles", "log", "--json", config=cfg_path, data=d)
    assert [json.loads(l)["plate"] for l in r.stdout.splitlines()] == ["皖K66666", "京EA5331"]
    r = run_cli("vehicles", "inside", "--days", "0", config=cfg_path, data=d)
    assert [l.split()[0] for l in r.stdout.splitlines()[1:]] == ["皖K66666"] and "LONG STAY" in r.stdout, r.stdout
    r = run_cli("plates", "list", config=cfg_path, data=d)
    assert "粤B12345" in r.stdout and "皖K66666" in r.stdout


def test_a_locked_store_does_not_keep_a_resident_car_out(tmp_path):
    """Another process holding the write lock made the pass record raise before the barrier."""
    import subprocess
    import sys

    from tests.test_store_faults import LOCKER

    lane = Lane(tmp_path)
    lane.app.store.add_plate("川A8H458", "resident", unit="3-1201")
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(lane.app.store.path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        [d] = lane.drive("we0091234_Quicker_20220930_180856.png", frames=6)
        assert (d.plate, d.decision) == ("川A8H458", "granted") and lane.pulses() == 1
        assert len(lane.app.recorder.spool.entries()) == 1
    finally:
        locker.communicate("\n", timeout=10)
    assert lane.app.recorder.drain_spool() == 1
    assert [e.id for e in lane.app.store.events()] == [d.event.id]
