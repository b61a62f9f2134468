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
another detection score (a low one prints every image's best score, for a sweep).

Prints each image's result to stderr and, last, one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gatectl.runtime.app import App, simulated_boards  # noqa: E402
from gatectl.config import load_config, parse_config  # noqa: E402
from gatectl.config.gates import EbikeGateConfig  # noqa: E402
from gatectl.sources.media import read_image  # noqa: E402

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
    args = ap.parse_args()
    cfg = load_config(args.config) if args.config else parse_config(DEFAULT)
    gate_cfg = next(g for g in cfg.gates if isinstance(g, EbikeGateConfig)).model_copy(update={"car_region": None})
    if args.detector:
        gate_cfg = gate_cfg.model_copy(update={"detector": gate_cfg.detector.model_copy(
            update={"file": args.detector.resolve(), "family": "yolox"})})
    if args.threshold is not None:
        gate_cfg = gate_cfg.model_copy(update={"detector": gate_cfg.detector.model_copy(
            update={"threshold": args.threshold})})
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
            dets = gate.find(read_image(path))
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
                      "model": str(gate_cfg.detector.file or gate_cfg.detector.model)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
