#!/usr/bin/env python3
"""The tailgate watch's person cues on real labelled photos, frame by frame: how many of the
labelled people the COCO person class finds (analysis.tailgate.threshold), and how many more
the face cue adds (YuNet at analysis.tailgate.face_threshold, a face outside every person box
taken as a body under it: `gatectl.analysis.tailgate.person_boxes`), and at what cost in boxes
that are nobody (a person box overlapping no labelled person of any size at IoU 0.3; a face
box in no labelled person's upper half). ``--model`` compares another person detector (a
`scripts/train_detector.py --target person` output) and ``--held`` keeps to the images that
run held aside, so a trained model is measured only on photos it never saw.

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
        [--model NAME|FILE.onnx] [--held OUT/manifest.json]
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
from gatectl.gates.base import iou
from gatectl.vision.face.detect import FaceDetector
from gatectl.vision.models import ModelStore
from gatectl.vision.objects import open_detector

MIN_HEIGHT = 1 / 8  # of the frame: smaller people are not at the door


def split_names(manifest: Path, split: str = "held") -> set[str]:
    """File names of the photos a scripts/train_detector.py run held aside (``split`` "held")
    or trained on ("trained"), from its manifest.json."""
    m = json.loads(manifest.read_text())
    files = m["held_aside_files"] if split == "held" else [d["file"] for d in m["data"]]
    return {Path(f).name for f in files}


def labels(path: Path, w: int, h: int, min_height: float = MIN_HEIGHT) -> list[np.ndarray]:
    """The labelled people of one image at least ``min_height`` of it high, in pixels (YOLO
    rows ``class cx cy w h``)."""
    out = []
    for row in path.read_text().splitlines():
        f = row.split()
        if len(f) == 5 and f[0] == "0":
            cx, cy, bw, bh = (float(v) for v in f[1:])
            if bh >= min_height:
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
    ap.add_argument("--model", default=defaults.model,
                    help="the person detector: a registry name, or an .onnx file (a trainer's "
                    "output)")
    ap.add_argument("--held", type=Path, metavar="MANIFEST",
                    help="only the images a scripts/train_detector.py run held aside (its "
                    "manifest.json)")
    args = ap.parse_args()
    models = ModelStore()
    session = (models.session_for_file(Path(args.model)) if args.model.endswith(".onnx")
               else models.session(args.model))
    detector = open_detector(session, "yolox", 416, {"person": 0}, args.threshold, 1, "eval")
    faces = FaceDetector(models, 640, args.face_threshold)
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0, 0])
    images = sorted((args.dataset / "images").iterdir())
    if args.held:
        held = split_names(args.held)
        images = [p for p in images if p.name in held]
    for img_path in images:
        image = cv2.imread(str(img_path))
        label = args.dataset / "labels" / f"{img_path.stem}.txt"
        if image is None or not label.is_file():
            continue
        truth = labels(label, image.shape[1], image.shape[0])
        anyone = labels(label, image.shape[1], image.shape[0], 0.0)
        persons = [np.asarray(d.box) for d in detector.detect(image) if d.label == "person"]
        nobody = sum(all(iou(a, p) < 0.3 for a in anyone) for p in persons)
        bodies = [s.box for s in person_boxes([(p, 1.0) for p in persons],
                                              [np.asarray(f.box) for f in faces.detect(image)])
                  if s.face_only]
        p, f, false = found(truth, persons, bodies)
        source = re.sub(r"[-_]?\d+$", "", img_path.stem.split("_jpg.rf.")[0].split("_png")[0])
        for key in ("all", source or "numbered"):
            t = tally[key]
            for i, v in enumerate((1, len(truth), p, f, false, len(persons), nobody)):
                t[i] += v
    out = {}
    for key, (images, people, p, f, false, boxes, nobody) in sorted(tally.items()):
        if key != "all" and people < 5:
            continue
        out[key] = {"images": images, "people": people, "by_person": p, "by_face_only": f,
                    "recall_person": round(p / people, 3) if people else None,
                    "recall_with_faces": round((p + f) / people, 3) if people else None,
                    "face_boxes_of_nobody": false, "person_boxes": boxes,
                    "person_boxes_of_nobody": nobody}
    print(json.dumps({"model": args.model, "held": str(args.held) if args.held else None,
                      "threshold": args.threshold, "face_threshold": args.face_threshold,
                      "min_height": MIN_HEIGHT, "sets": out}))


if __name__ == "__main__":
    main()
