#!/usr/bin/env python3
"""Build the e-bike false-alarm sets (evaluation only) in a folder of your choice, one subfolder per class.

- ``elevator_crops``: parts of the repo's elevator frames (tests/data/ebike) that hold people and
  no moped (left of, right of and above the moped's box);
- ``elevator_painted``: the same frames with the moped painted out (OpenCV inpainting of its box);
- ``dog``, ``bicycle``: the dog and the bicycle of ``yolox_dog_bicycle.jpg``, cut apart;
- ``people``: the held-aside fifth of the shared person-only images (``--shared``; the same split
  scripts/train_detector.py keeps out of training, minus images in which the COCO model sees a
  two-wheeler);
- ``vehicles``: the shared two-wheeler set's valid/test images with cars, buses, trains or ships
  and no labelled bike (never used for training), minus those in which the COCO model sees a
  two-wheeler (some hold an unlabelled motorbike at the edge).

Both filters favour the COCO model (it scores 0 on those sets by construction); they are there
because an image with a real two-wheeler is no negative.

The moped boxes below were marked by hand on the frames; they only decide what is cut or painted
out. Nothing of this is training data: scripts/train_detector.py never reads tests/data/ebike.

    python scripts/make_ebike_negatives.py --out build/negatives
    python scripts/eval_ebike.py --images tests/data/ebike --negatives build/negatives/people ...
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
EBIKE = REPO / "tests/data/ebike"
# file -> moped box (x0, y0, x1, y1) as fractions of the frame
MOPEDS = {
    "paddle_elevator_det_test.jpg": (0.41, 0.38, 0.60, 0.80),
    "paddle_elevator_pic_1.png": (0.29, 0.47, 0.59, 0.89),
    "paddle_elevator_pic_2.png": (0.29, 0.42, 0.51, 0.81),
    "paddle_elevator_pic_3.png": (0.23, 0.51, 0.63, 0.89),
    "paddle_elevator_pic_4.png": (0.20, 0.51, 0.46, 0.91),
}
DOG_BICYCLE = {"dog": (0.16, 0.38, 0.42, 0.95), "bicycle": (0.16, 0.2, 0.76, 0.76)}
MIN_SIDE = 0.25  # a crop narrower than this fraction of the frame is too small to mean anything


def crops_without(img: np.ndarray, box: tuple[float, float, float, float]) -> list[tuple[str, np.ndarray]]:
    """The strips of ``img`` left of, right of and above ``box`` (each at least MIN_SIDE wide)."""
    h, w = img.shape[:2]
    x0, y0, x1 = int(box[0] * w), int(box[1] * h), int(box[2] * w)
    out = []
    if x0 >= MIN_SIDE * w:
        out.append(("left", img[:, :x0]))
    if w - x1 >= MIN_SIDE * w:
        out.append(("right", img[:, x1:]))
    if y0 >= MIN_SIDE * h:
        out.append(("top", img[:y0]))
    return out


def painted_out(img: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    mask[int(box[1] * h):int(box[3] * h), int(box[0] * w):int(box[2] * w)] = 255
    return cv2.inpaint(img, mask, 7, cv2.INPAINT_TELEA)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "scripts"))
    from train_detector import OrtModel, held_aside, read_yolo, sha256, shows_two_wheeler

    counts: dict[str, int] = {}

    def put(cls: str, name: str, img: np.ndarray) -> None:
        (args.out / cls).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.out / cls / name), img)
        counts[cls] = counts.get(cls, 0) + 1

    for name, box in MOPEDS.items():
        img = cv2.imread(str(EBIKE / name))
        stem = Path(name).stem
        for side, crop in crops_without(img, box):
            put("elevator_crops", f"{stem}_{side}.png", crop)
        put("elevator_painted", f"{stem}_painted.png", painted_out(img, box))
    img = cv2.imread(str(EBIKE / "yolox_dog_bicycle.jpg"))
    h, w = img.shape[:2]
    for cls, (x0, y0, x1, y1) in DOG_BICYCLE.items():
        put(cls, f"{cls}.png", img[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)])
    teacher = OrtModel(REPO / "models/yolox_nano/yolox_nano.onnx")
    for s in read_yolo(args.shared / "people"):
        if held_aside(s, 0.2, sha256(s.path)) and not shows_two_wheeler(teacher, s.path):
            (args.out / "people").mkdir(parents=True, exist_ok=True)
            shutil.copy(s.path, args.out / "people" / s.path.name)
            counts["people"] = counts.get("people", 0) + 1
    for split in ("valid", "test"):
        for s in read_yolo(args.shared / "two-wheelers" / split):
            if len(s.boxes) and not (s.boxes[:, 0] == 0).any() and not shows_two_wheeler(teacher, s.path):
                (args.out / "vehicles").mkdir(parents=True, exist_ok=True)
                shutil.copy(s.path, args.out / "vehicles" / s.path.name)
                counts["vehicles"] = counts.get("vehicles", 0) + 1
    print(counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
