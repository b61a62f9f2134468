#!/usr/bin/env python3
"""E-bike detection on labelled images, with the production gate (car region off, one frame).

``--images DIR`` holds images and a ground_truth.csv (``file,contains,...``; ``contains`` lists
what is in the image separated by ``;``). An image is positive when it contains an electric
moped, e-bike, scooter or motorcycle; recall = positives found; false alarms = negatives
(people only, bicycles where allowed, ...) on which the gate finds an e-bike. ``--negatives DIR``
adds a folder of images with no two-wheeler at all (e.g. tests/data/faces), counted on its own too
(``per_set``: one false-alarm class per folder, see scripts/make_ebike_negatives.py). ``--config``
uses a device config's first e-bike gate (detector, classes, threshold), default: built-in
settings; ``--detector FILE`` swaps in another ONNX detector of the yolox family, ``--threshold``
another detection score (a low one prints every image's best score, for a sweep), ``--tiles``
another tile grid (test-time scale: 3 = also a 3x3 grid, one model run per tile).

``--frames N`` turns each image into a sequence of N frames - the scene drifting into place as a
bike pushed through the door would (a shift and zoom easing to rest, sensor noise, a little
flicker) - and runs the whole gate on it (`process`: detection, confirmation, evidence over
frames with ``--track-threshold``/``--evidence``); a sequence counts when the gate confirms an
e-bike. This is how evidence over frames is measured against negative sequences.

Prints each image's result to stderr and, last, one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gatectl.runtime.app import App, simulated_boards  # noqa: E402
from gatectl.config import load_config, parse_config  # noqa: E402
from gatectl.config.gates import EbikeGateConfig  # noqa: E402
from gatectl.sources.media import read_image  # noqa: E402
from gatectl.vision.objects import Detection  # noqa: E402

POSITIVE = ("electric moped", "e-bike", "ebike", "scooter", "moped", "motorcycle", "electric bicycle")
DEFAULT = {"outputs": [{"name": "hold"}], "elevators": [{"name": "car", "hold_output": "hold"}],
           "cameras": [{"name": "c", "source": "0"}],
           "gates": [{"kind": "ebike", "name": "eval", "camera": "c", "elevator": "car"}]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--negatives", type=Path, action="append", default=[])
    ap.add_argument("--config", type=Path)
    ap.add_argument("--detector", type=Path, help="an ONNX detector (yolox family) instead of the configured one")
    ap.add_argument("--threshold", type=float, help="detection score instead of the configured one")
    ap.add_argument("--tiles", type=int, choices=[1, 2, 3, 4],
                    help="tile grid instead of the configured one")
    ap.add_argument("--frames", type=int, default=0, help="run each image as a sequence of this many frames")
    ap.add_argument("--track-threshold", type=float, help="evidence over frames: tracked weak detections from this score")
    ap.add_argument("--evidence", type=float, help="evidence over frames: a track's score sum that confirms")
    args = ap.parse_args()
    cfg = load_config(args.config) if args.config else parse_config(DEFAULT)
    gate_cfg = next(g for g in cfg.gates if isinstance(g, EbikeGateConfig)).model_copy(update={"car_region": None})
    if args.detector:
        gate_cfg = gate_cfg.model_copy(update={"detector": gate_cfg.detector.model_copy(
            update={"file": args.detector.resolve(), "family": "yolox"})})
    for key in ("threshold", "tiles"):
        if getattr(args, key) is not None:
            gate_cfg = gate_cfg.model_copy(update={"detector": gate_cfg.detector.model_copy(
                update={key: getattr(args, key)})})
    gate_cfg = gate_cfg.model_copy(update={k: v for k, v in (
        ("track_threshold", args.track_threshold), ("evidence", args.evidence)) if v is not None})
    with open(args.images / "ground_truth.csv", newline="", encoding="utf-8") as f:
        rows = [(r["file"], r["contains"].lower()) for r in csv.DictReader(f)]
    items = [(args.images / name, any(p in contains for p in POSITIVE), "") for name, contains in rows]
    for folder in args.negatives:
        items += [(p, False, folder.name) for p in sorted(folder.iterdir())
                  if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    per_set = {folder.name: {"images": 0, "false_alarms": 0, "max_score": 0.0} for folder in args.negatives}
    with tempfile.TemporaryDirectory() as tmp:
        app = App(cfg, Path(tmp), boards=simulated_boards(cfg))
        gate = app.gate(gate_cfg)
        found = false_alarms = positives = 0
        for path, positive, group in items:
            image = read_image(path)
            dets = gate.find(image) if not args.frames else confirmed(gate, sequence(image, args.frames))
            positives += positive
            found += positive and bool(dets)
            false_alarms += (not positive) and bool(dets)
            if group:
                per_set[group]["images"] += 1
                per_set[group]["false_alarms"] += bool(dets)
                per_set[group]["max_score"] = round(max(per_set[group]["max_score"], dets[0].score if dets else 0), 3)
            best = f"{dets[0].label} {dets[0].score:.2f}" if dets else "-"
            print(f"{path.name}: {'POSITIVE' if positive else 'negative'} -> {best}", file=sys.stderr)
        app.close()
    negatives = len(items) - positives
    print(json.dumps({"images": len(items), "positives": positives, "found": found,
                      "recall": round(found / max(positives, 1), 4), "negatives": negatives,
                      "false_alarms": false_alarms, "per_set": per_set, "threshold": gate_cfg.detector.threshold,
                      "tiles": gate_cfg.detector.tiles,
                      "model": str(gate_cfg.detector.file or gate_cfg.detector.model),
                      "frames": args.frames, "track_threshold": gate_cfg.track_threshold,
                      "evidence": gate_cfg.evidence if gate_cfg.track_threshold is not None else None}))
    return 0


def sequence(image: np.ndarray, n: int) -> list[np.ndarray]:
    """``image`` as ``n`` frames of a scene coming to rest: shifted by up to 15% of the width and
    zoomed out by up to 10% at first, easing to the image itself, with noise and flicker (seeded
    per image, so runs repeat)."""
    h, w = image.shape[:2]
    rng = np.random.default_rng(int(image[::16, ::16].sum()) % 2**32)
    out = []
    for k in range(n):
        a = 1.0 - k / max(n - 1, 1)  # 1 -> 0: how far from rest
        scale = 1.0 - 0.1 * a
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, scale)
        m[0, 2] += 0.15 * w * a
        frame = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        frame = frame * rng.uniform(0.92, 1.08) + rng.normal(0, 3, frame.shape)
        out.append(np.clip(frame, 0, 255).astype(np.uint8))
    return out


def confirmed(gate, frames: list[np.ndarray]) -> list:
    """The gate's detections at its first confirmation over ``frames`` ([] if it never confirms)."""
    gate.reset()
    for i, frame in enumerate(frames):
        if any(d.decision == "ebike" for d in gate.process(frame, float(i))):
            return gate.last_detections or [Detection(np.zeros(4, np.float32), 0.0, "confirmed")]
    return []


if __name__ == "__main__":
    sys.exit(main())
