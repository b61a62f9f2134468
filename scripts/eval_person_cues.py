#!/usr/bin/env python3
"""The tailgate watch's person cues on real labelled photos, frame by frame: how many of the
labelled people the COCO person class finds (analysis.tailgate.threshold), and how many more
the face cue adds (YuNet at analysis.tailgate.face_threshold, a face outside every person box
taken as a body under it: `gatectl.analysis.tailgate.person_boxes`), and at what cost in boxes
that are nobody.

The photos are a YOLO-labelled set (class 0 = person), e.g. the shared training set
``datasets/people`` ("Capston2", CC BY 4.0): read where they are, never copied into the
project. Besides the whole set, the figures are given per source (the file name up to its frame
number), so a door camera's own frames (``clip_main_lobby_Tan_mp4``: a lobby's glass door seen
from inside) can be read apart from crowd photos where most people are tiny (a source with
fewer than 5 people is in ``all`` only).

A labelled person is found by a person box of IoU >= 0.5 with it, or by a face-derived box
whose face lies in the labelled box's upper half (a face says nothing of where the body ends).
People under 1/8 of the frame's height are left out: no door camera sees anyone that small at
its door.

Prints one JSON line.

    python scripts/eval_person_cues.py DATASET_DIR [--threshold T] [--face-threshold F]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gatectl.analysis.tailgate import BODY_PER_FACE, person_boxes
from gatectl.config.analysis import TailgateConfig
from gatectl.runtime.app import PERSON_MODEL
from gatectl.vision.face.detect import FaceDetector
from gatectl.vision.models import ModelStore
from gatectl.vision.objects import open_detector

MIN_HEIGHT = 1 / 8  # of the frame: smaller people are not at the door


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


def labels(path: Path, w: int, h: int) -> list[np.ndarray]:
    """The labelled people of one image in pixels (YOLO rows ``class cx cy w h``)."""
    out = []
    for row in path.read_text().splitlines():
        f = row.split()
        if len(f) == 5 and f[0] == "0":
            cx, cy, bw, bh = (float(v) for v in f[1:])
            if bh >= MIN_HEIGHT:
                out.append(np.array([(cx - bw / 2) * w, (cy - bh / 2) * h,
                                     (cx + bw / 2) * w, (cy + bh / 2) * h]))
    return out


def found(truth: list[np.ndarray], persons: list[np.ndarray],
          bodies: list[np.ndarray]) -> tuple[int, int, int]:
    """(found by person boxes, found only by face bodies, face bodies that are nobody)."""
    free = list(range(len(truth)))
    by_person = 0
    for p in persons:
        best = max(free, key=lambda i: iou(truth[i], p), default=None)
        if best is not None and iou(truth[best], p) >= 0.5:
            free.remove(best)
            by_person += 1
    by_face = false = 0
    for b in bodies:
        cx, cy = (b[0] + b[2]) / 2, b[1] + (b[3] - b[1]) / BODY_PER_FACE / 2  # the face's centre
        hit = [i for i in free if truth[i][0] <= cx <= truth[i][2]
               and truth[i][1] <= cy <= (truth[i][1] + truth[i][3]) / 2]
        if hit:
            free.remove(hit[0])
            by_face += 1
        else:
            false += 1
    return by_person, by_face, false


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path, help="a folder with images/ and YOLO labels/")
    defaults = TailgateConfig(door="d", camera="c")
    ap.add_argument("--threshold", type=float, default=defaults.threshold)
    ap.add_argument("--face-threshold", type=float, default=defaults.face_threshold)
    args = ap.parse_args()
    models = ModelStore()
    detector = open_detector(models.session(PERSON_MODEL), "yolox", 416, {"person": 0},
                             args.threshold, 1, "eval")
    faces = FaceDetector(models, 640, args.face_threshold)
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    for img_path in sorted((args.dataset / "images").iterdir()):
        image = cv2.imread(str(img_path))
        label = args.dataset / "labels" / f"{img_path.stem}.txt"
        if image is None or not label.is_file():
            continue
        truth = labels(label, image.shape[1], image.shape[0])
        persons = [np.asarray(d.box) for d in detector.detect(image) if d.label == "person"]
        bodies = person_boxes(persons, [np.asarray(f.box) for f in faces.detect(image)])
        bodies = bodies[len(persons):]
        p, f, false = found(truth, persons, bodies)
        source = re.sub(r"[-_]?\d+$", "", img_path.stem.split("_jpg.rf.")[0].split("_png")[0])
        for key in ("all", source or "numbered"):
            t = tally[key]
            for i, v in enumerate((1, len(truth), p, f, false, len(persons))):
                t[i] += v
    out = {}
    for key, (images, people, p, f, false, boxes) in sorted(tally.items()):
        if key != "all" and people < 5:
            continue
        out[key] = {"images": images, "people": people, "by_person": p, "by_face_only": f,
                    "recall_person": round(p / people, 3) if people else None,
                    "recall_with_faces": round((p + f) / people, 3) if people else None,
                    "face_boxes_of_nobody": false, "person_boxes": boxes}
    print(json.dumps({"threshold": args.threshold, "face_threshold": args.face_threshold,
                      "min_height": MIN_HEIGHT, "sets": out}))


if __name__ == "__main__":
    main()
