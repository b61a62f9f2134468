#!/usr/bin/env python3
"""Plate recognition accuracy on labelled crops and scenes, with the production code.

- crops: every image in --crops named by its plate (``皖A00E66.jpg``; for ``hyperlpr_rec_N_<plate>``
  and ``crnn_<plate>_...`` names the plate is taken from the name the same way), read by the
  recogniser as gatectl reads a rectified plate: exact-plate accuracy and per-character accuracy
  (position by position, over crops whose reading has the right length; other crops count all
  their characters as wrong).
- scenes: images in --scenes with a ground_truth.csv (``file,plates,...``; plates separated by
  ``;``): detection + rectification + reading as a lane does; recall = ground-truth plates read
  exactly, precision = readings that are a ground-truth plate.

Prints the misreads to stderr and, last, one JSON line on stdout.

    python scripts/eval_plates.py --crops tests/data/plates/lprnet_crops --crops tests/data/plates/crops \\
        --scenes tests/data/plates/scenes
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gatectl.sources.media import read_image  # noqa: E402
from gatectl.vision.models import ModelStore  # noqa: E402
from gatectl.vision.plate.analyzer import PlateAnalyzer  # noqa: E402


def plate_of(path: Path) -> str:
    stem = path.stem
    if stem.startswith("hyperlpr_rec_"):
        return stem.split("_")[-1]
    if stem.startswith("crnn_"):
        return stem.split("_")[1]
    return stem


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--crops", type=Path, action="append", default=[], help="folder of crops (repeatable)")
    ap.add_argument("--scenes", type=Path, help="folder of scenes with ground_truth.csv")
    ap.add_argument("--detector-size", type=int, choices=[320, 640], default=320)
    args = ap.parse_args()
    analyzer = PlateAnalyzer(ModelStore(), args.detector_size, 0.5)
    result: dict = {"detector_size": args.detector_size}
    files = [f for d in args.crops for f in sorted(d.iterdir()) if f.suffix.lower() in (".jpg", ".jpeg", ".png")]
    if files:
        exact = chars_right = chars_total = 0
        for f in files:
            truth = plate_of(f)
            got = analyzer.reader.read(read_image(f)).text or ""
            exact += got == truth
            chars_total += len(truth)
            if len(got) == len(truth):
                chars_right += sum(a == b for a, b in zip(got, truth))
            if got != truth:
                print(f"crop {f.name}: read {got or '(nothing)'}", file=sys.stderr)
        result.update({"crops": len(files), "crop_exact": exact, "crop_exact_accuracy": round(exact / len(files), 4),
                       "char_accuracy": round(chars_right / chars_total, 4)})
    if args.scenes:
        with open(args.scenes / "ground_truth.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        truth_n = read_right = read_n = 0
        for row in rows:
            truth = {p for p in row["plates"].split(";") if p and "?" not in p}
            got = [o.text for o in analyzer.analyze(read_image(args.scenes / row["file"])) if o.text]
            truth_n += len(truth)
            read_n += len(got)
            read_right += len(truth & set(got))
            for miss in truth - set(got):
                print(f"scene {row['file']}: {miss} not read (read {got})", file=sys.stderr)
        result.update({"scenes": len(rows), "scene_plates": truth_n,
                       "scene_recall": round(read_right / max(truth_n, 1), 4),
                       "scene_precision": round(read_right / max(read_n, 1), 4)})
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
