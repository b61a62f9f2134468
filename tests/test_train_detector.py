"""scripts/train_detector.py on a tiny slice: the PyTorch run of the ONNX graph is the model the
daemon runs, a few real training steps change it, the export keeps the daemon's I/O and
reproduces the trained network, and both modes (shared data, a site's YOLO folder) print their
JSON. Skipped when the [train] extra (torch) is not installed; .ci/run installs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gatectl.vision.models import ModelStore  # noqa: E402
from gatectl.vision.objects import open_detector  # noqa: E402
from tests.conftest import REPO  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
import train_detector as td  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"
BASE = REPO / "models/yolox_nano/yolox_nano.onnx"
needs_data = pytest.mark.skipif(not (SHARED / "two-wheelers").is_dir(), reason="no ../shared/datasets")


def frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (416, 416, 3), dtype=np.uint8)


def test_the_pytorch_graph_computes_what_onnxruntime_computes():
    net = td.OnnxYolox(BASE)
    x = frame()
    with torch.no_grad():
        ours = net(torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32))).numpy()[0]
    assert np.abs(ours - td.OrtModel(BASE)(x)).max() < 1e-3


def test_training_from_the_frontier_matches_the_full_graph():
    """The frozen part comes from onnxruntime; the trained part must see the same tensors."""
    net = td.OnnxYolox(BASE)
    net.trainable("head")
    out, feats = td.OrtModel(BASE, net.frontier).features(frame(1))
    with torch.no_grad():
        part = net(frontier={n: torch.from_numpy(f) for n, f in zip(net.frontier, feats)}).numpy()[0]
    assert len(net.frontier) == 3 and np.abs(part - out).max() < 1e-3


def run(*args: str) -> dict:
    r = subprocess.run([sys.executable, str(REPO / "scripts/train_detector.py"), *args],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.splitlines()[-1])


def daemon_output(model) -> np.ndarray:
    """The exported file through the daemon's own loader and family check, then one run."""
    session = ModelStore().session_for_file(model)
    open_detector(session, "yolox", 416, {"bicycle": 1, "motorcycle": 3}, 0.15, 1, "detector")
    assert session.get_inputs()[0].shape == [1, 3, 416, 416]
    blob = frame(2).transpose(2, 0, 1)[None].astype(np.float32)
    return session.run(None, {session.get_inputs()[0].name: blob})[0]


@needs_data
def test_a_few_steps_on_the_shared_data_train_and_export(tmp_path):
    out = run("--out", str(tmp_path), "--max-files", "10", "--steps", "2", "--batch", "2", "--lr", "1e-2",
              "--train", "head", "--shared", str(SHARED))
    model = tmp_path / "yolox_nano_ebike.onnx"
    new, old = daemon_output(model), td.OrtModel(BASE)(frame(2))
    assert new.shape == (1, 3549, 85)
    assert np.abs(new[0] - old).max() > 1e-4  # the steps changed the weights
    assert out["sha256"] == td.sha256(model) and out["steps"] == 2 and out["cpu_s"] > 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert len(manifest["data"]) == out["files_used"] > 0
    first = manifest["data"][0]
    assert first["sha256"] == td.sha256(REPO.parent / first["file"])
    assert not any("tests/data/ebike" in d["file"] for d in manifest["data"])  # evaluation frames stay out


@needs_data
def test_a_site_folder_is_trained_and_compared_on_its_held_aside_split(tmp_path):
    site = tmp_path / "site"
    for sub in ("images", "labels"):
        (site / sub).mkdir(parents=True)
    for s in td.read_yolo(SHARED / "two-wheelers" / "valid")[:12]:
        shutil.copy(s.path, site / "images" / s.path.name)
        label = s.path.parent.parent / "labels" / (s.path.stem + ".txt")
        if label.exists():
            shutil.copy(label, site / "labels" / label.name)
    out = run("--data", str(site), "--out", str(tmp_path / "out"), "--steps", "2", "--batch", "2",
              "--holdout", "0.4", "--base", str(BASE))
    cmp = out["comparison"]
    assert set(cmp) == {"current", "new"} and out["held_aside"] == cmp["new"]["positives"] + cmp["new"]["negatives"]
    assert 0 < out["held_aside"] < 12 and cmp["current"]["file"] == str(BASE)


def test_a_missing_site_folder_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "scripts/train_detector.py"), "--data", str(tmp_path / "nope"),
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "--data" in r.stderr


def test_a_cut_keeps_the_visible_part_of_each_box_and_leaves_no_unlabelled_sliver():
    rng = np.random.default_rng(3)
    img = frame(4)
    boxes = np.array([[100, 20, 180, 400], [300, 150, 340, 250]], np.float32)
    for _ in range(50):
        out, kept = td.cut(rng, img, boxes)
        h, w = out.shape[:2]
        assert out.shape[0] >= 0.55 * 416 - 1 and out.shape[1] >= 0.55 * 416 - 1
        assert ((kept >= 0) & (kept <= [w, h, w, h])).all()  # inside the window
        for k in kept:  # each kept box is the visible part of one labelled box, a third of it or more
            assert (k[2:] - k[:2]).prod() >= min((b[2:] - b[:2]).prod() for b in boxes) / 3 - 1
        assert len(kept) <= 2


@needs_data
def test_people_train_on_channel_0_and_excluded_photos_are_held_aside(tmp_path):
    site = tmp_path / "site"
    for sub in ("images", "labels"):
        (site / sub).mkdir(parents=True)
    people = td.read_yolo(SHARED / "people")[:10]
    for s in people:
        shutil.copy(s.path, site / "images" / s.path.name)
        shutil.copy(s.path.parent.parent / "labels" / (s.path.stem + ".txt"), site / "labels")
    excluded = people[0].path.name
    out = run("--target", "person", "--data", str(site), "--out", str(tmp_path / "out"), "--steps", "2",
              "--batch", "2", "--crop", "0.5", f"--exclude={excluded[:12]}*", "--holdout", "0.3")
    assert out["target"] == "person" and (tmp_path / "out" / "yolox_nano_person.onnx").is_file()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    held = {f.split("/")[-1] for f in manifest["held_aside_files"]}
    trained = {d["file"].split("/")[-1] for d in manifest["data"]}
    assert excluded in held and not held & trained and len(held | trained) == 10
    assert out["comparison"]["new"]["positives"] == len(held)  # every photo shows people
    new = td.OrtModel(tmp_path / "out" / "yolox_nano_person.onnx")(frame(2))
    old = td.OrtModel(BASE)(frame(2))
    assert np.abs(new[:, 5] - old[:, 5]).max() > np.abs(new[:, 5 + td.MOTORCYCLE] - old[:, 5 + td.MOTORCYCLE]).max()


def test_people_need_a_site_folder(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "scripts/train_detector.py"), "--target", "person",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "--data" in r.stderr
