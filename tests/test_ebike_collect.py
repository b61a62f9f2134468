"""`gatectl ebike collect`: a site's candidate frames, saved with metadata and YOLO pre-labels in
the layout `scripts/train_detector.py --data` reads. Real model, real frames, the real CLI."""

from __future__ import annotations

import json
import shutil
import stat

import pytest

from tests.conftest import FACES, run_cli
from tests.test_ebike import EBIKE, car_config

MOPEDS = ["paddle_elevator_pic_1.png", "paddle_elevator_pic_4.png", "paddle_elevator_pic_2.png"]
PORTRAITS = ["obama_01.jpg", "kit_harington_01.jpeg"]


@pytest.fixture
def frames(tmp_path):
    """A folder source: three car frames with mopeds, then two portraits (no bike)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, name in enumerate(MOPEDS):
        shutil.copy(EBIKE / name, folder / f"{i}_{name}")
    for i, name in enumerate(PORTRAITS, len(MOPEDS)):
        shutil.copy(FACES / name, folder / f"{i}_{name}")
    return folder


def collect(tmp_path, *args: str):
    return run_cli("ebike", "collect", "--gate", "cam", *args, config=car_config(tmp_path),
                   data=tmp_path / "state")


def test_collect_saves_alerts_hard_cases_and_negatives_with_prelabels(tmp_path, frames):
    out = tmp_path / "site"
    r = collect(tmp_path, "--out", str(out), "--source", str(frames), "--empty-every", "0",
                "--low", "0.05")
    assert r.returncode == 0, r.stderr
    assert "personal data" in r.stderr
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 5  # --empty-every 0: every frame is one of the three kinds
    threshold = 0.22  # the gate's default detector threshold
    reasons = [r["reason"] for r in rows]
    # pic_1 and pic_4 are found by the shipped model; the quilt-covered pic_2 is a hard case
    assert reasons[:2] == ["alert", "alert"] and reasons[2] == "low"
    assert set(reasons[3:]) <= {"empty", "low"} and "empty" in reasons[3:]
    for row in rows:
        assert row["gate"] == "cam" and row["model"]["name"] == "yolox_nano_ebike"
        assert len(row["model"]["sha256"]) == 12 and row["time"] > 0
        best = max((b["score"] for b in row["boxes"]), default=0.0)
        assert (row["reason"] == "alert") == (best >= threshold)
        assert (row["reason"] == "empty") == (not row["boxes"])
        assert all(b["score"] >= 0.05 and b["class"] == "motorcycle" for b in row["boxes"])
        image = out / row["file"]
        label = out / "labels" / (image.stem + ".txt")
        assert image.parent.name == "images" and image.stat().st_size > 1000
        lines = [line.split() for line in label.read_text().splitlines()]
        assert len(lines) == len(row["boxes"])
        assert all(f[0] == "0" and all(0 <= float(v) <= 1 for v in f[1:]) for f in lines)
    assert (out / "classes.txt").read_text().splitlines() == ["ebike", "bicycle"]
    # private: every folder 0700, every file 0600; the scratch store is gone
    for p in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), p
    assert not (out / ".scratch").exists()
    # a collect folder can be reopened; --max bounds what DIR holds in all
    r = collect(tmp_path, "--out", str(out), "--source", str(frames), "--max", "7")
    assert r.returncode == 0, r.stderr
    assert len((out / "metadata.jsonl").read_text().splitlines()) == 7
    assert len(list((out / "images").iterdir())) == 7 == len(list((out / "labels").iterdir()))


def test_max_bounds_a_new_folder(tmp_path, frames):
    out = tmp_path / "site"
    r = collect(tmp_path, "--out", str(out), "--source", str(frames), "--max", "2")
    assert r.returncode == 0, r.stderr
    assert len(list((out / "images").iterdir())) == 2


def test_empty_frames_are_sampled_not_all_kept(tmp_path, frames):
    out = tmp_path / "site"
    r = collect(tmp_path, "--out", str(out), "--source", str(frames), "--empty-every", "3600",
                "--low", "0.2")
    assert r.returncode == 0, r.stderr
    lines = (out / "metadata.jsonl").read_text().splitlines()
    reasons = [json.loads(line)["reason"] for line in lines]
    assert reasons.count("empty") == 1


@pytest.mark.parametrize("args, message", [
    (["--gate", "nope"], "--gate: no gate named 'nope'"),
    (["--source", "/nonexistent/frames.mp4"], "--source"),
])
def test_bad_gate_or_source_is_one_line(tmp_path, frames, args, message):
    out = tmp_path / "site"
    gate = [] if args[0] == "--gate" else ["--gate", "cam"]
    r = run_cli("ebike", "collect", "--out", str(out), *gate, *args,
                config=car_config(tmp_path), data=tmp_path / "state")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "personal data" not in line]
    assert len(errors) == 1 and message in errors[0], r.stderr
    assert not out.exists()  # nothing written when it cannot start


def test_a_folder_that_is_not_a_collect_folder_is_refused(tmp_path, frames):
    r = collect(tmp_path, "--out", str(frames), "--source", str(frames))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "personal data" not in line]
    assert len(errors) == 1 and "not a collect folder" in errors[0], r.stderr
    assert len(list(frames.iterdir())) == len(MOPEDS) + len(PORTRAITS)  # nothing added
    assert not (frames / "metadata.jsonl").exists()


def test_without_source_the_gates_camera_is_read(tmp_path):
    out = tmp_path / "site"
    r = collect(tmp_path, "--out", str(out), "--max", "3")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and rows[0]["gate"] == "cam"


def test_a_video_is_timed_by_its_own_clock(tmp_path):
    """40 frames of a 10 fps video (4 s) without a bike: --empty-every 1 keeps one a second."""
    import cv2

    portrait = cv2.resize(cv2.imread(str(FACES / "obama_01.jpg")), (320, 240))
    video = tmp_path / "car.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for _ in range(40):
        writer.write(portrait)
    writer.release()
    out = tmp_path / "site"
    r = collect(tmp_path, "--out", str(out), "--source", str(video), "--empty-every", "1",
                "--low", "0.2")
    assert r.returncode == 0, r.stderr
    lines = (out / "metadata.jsonl").read_text().splitlines()
    assert [json.loads(line)["reason"] for line in lines] == ["empty"] * 4, lines
