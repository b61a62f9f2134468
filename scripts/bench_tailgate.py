#!/usr/bin/env python3
"""Tailgating: precision and recall of the tailgate watch on clips composed from real photos of
people (tests/tailgate_clips.py: per person a single pass, a follower on one grant, a pass where
the door closed in between, two people on two grants), and its cost per frame: the detectors'
run (``detector_ms``: the person detector, ``analysis.tailgate.model``, 416 px, and with
``--faces on`` YuNet at 640 px) and the whole `TailgateWatch.process`.

A clip is a positive when two people went in on one grant; it counts as found when the watch
raised exactly one alert on it, and any alert on another clip is a false positive. ``--people
all`` includes the two people the COCO model (``--model yolox_nano``) misses (person_12,
masked, pale coat on a pale wall; person_13, head cut by the photo's top edge): YuNet finds
person_12's face once she is near the camera (``--view approach``), not at the side view's size;
the default person model (yolox_nano_person) finds both. ``--model FILE.onnx`` measures a
`scripts/train_detector.py --target person` output before it is installed. With ``--gate on``
each frame goes through the door camera's face gate first, as in the daemon, and the watch takes
the faces the gate found in it (``faces_reused``): its ``detector_ms`` then has no YuNet run of
its own.
``--groups``: two people through side by side (`group_clips`: on one grant, on two), from the
shared face set's group photos or, with ``--people-from``, pairs cut by rule (`cut_pairs`).

Prints progress to stderr and, last, one JSON line on stdout.

    python scripts/bench_tailgate.py [--people detectable|all] [--first N]
        [--view side|approach] [--faces on|off] [--threshold T] [--gate on|off]
        [--model NAME|FILE.onnx] [--people-from DATASET [--held MANIFEST [--split S]]]
        [--start-threshold T] [--groups]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import cv2
import numpy as np
from benchlib import stats
from eval_person_cues import labels, split_names

from gatectl.gates.base import iou
from gatectl.runtime.app import SITE_MODELS
from gatectl.vision.models import install_site_model
from tests.tailgate_clips import (
    ALL,
    DETECTABLE,
    FACES,
    GROUPS,
    PEOPLE,
    VIEWS,
    H,
    Rig,
    W,
    background,
    clips,
    group_clips,
    paste,
    person,
)


def _labelled(dataset: Path, held: Path | None, split: str
              ) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """(photo, its labelled people in pixels) of a YOLO-labelled set (class 0 = person), in
    name order; with ``held`` (a scripts/train_detector.py manifest) only the photos that run
    held aside (``split`` "held", to measure) or trained on ("trained", to choose the watch's
    settings on without touching the held ones)."""
    names = sorted((dataset / "images").iterdir())
    if held is not None:
        keep = split_names(held, split)
        names = [p for p in names if p.name in keep]
    for path in names:
        label = dataset / "labels" / f"{path.stem}.txt"
        image = cv2.imread(str(path))
        if image is not None and label.is_file():
            yield image, labels(label, image.shape[1], image.shape[0], 0.0)


def _standing(b: np.ndarray, w: int, h: int) -> bool:
    """A whole person standing: at least 0.4 of the photo high, 1.8 times as high as wide,
    clear of the photo's edges."""
    return bool(b[3] - b[1] >= 0.4 * h and b[3] - b[1] >= 1.8 * (b[2] - b[0]) and b[0] >= 3
                and b[1] >= 3 and b[2] <= w - 3 and b[3] <= h - 3)


def _save_crop(image: np.ndarray, box: np.ndarray, out: Path, name: str) -> None:
    """``box`` plus a 4 % margin, 260 px high, JPEG q90 (as tests/data/people was made)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    m = 0.04 * (y1 - y0)
    crop = image[int(max(y0 - m, 0)):int(min(y1 + m, h)), int(max(x0 - m, 0)):int(min(x1 + m, w))]
    crop = cv2.resize(crop, (max(1, round(crop.shape[1] * 260 / crop.shape[0])), 260),
                      interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(out / f"{name}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])


def cut_people(dataset: Path, held: Path | None, out: Path, most: int,
               split: str = "held") -> list[str]:
    """People cut from a YOLO-labelled photo set into ``out`` (`_labelled`, `_save_crop`). Only
    whole people standing alone (`_standing`, overlapping no other labelled person, whose part
    would walk in unlabelled), the tallest of each photo. A rule, not a choice: which people
    pass it is fixed before any clip is scored."""
    out.mkdir(parents=True, exist_ok=True)
    cut: list[str] = []
    for image, boxes in _labelled(dataset, held, split):
        h, w = image.shape[:2]
        alone = [b for i, b in enumerate(boxes) if _standing(b, w, h)
                 and not any(iou(b, o) > 0 for j, o in enumerate(boxes) if j != i)]
        if not alone:
            continue
        cut.append(f"held_{len(cut):03d}")
        _save_crop(image, max(alone, key=lambda b: b[3] - b[1]), out, cut[-1])
        if len(cut) == most:
            break
    return cut


def cut_pairs(dataset: Path, held: Path | None, out: Path, most: int,
              split: str = "held") -> list[str]:
    """Pairs cut like `cut_people`: two whole people standing side by side (each `_standing`,
    the gap between them under half the narrower one's width, their feet level within a tenth
    of the taller one's height), cut together, with no other labelled person in the cut - the
    first such pair of each photo."""
    out.mkdir(parents=True, exist_ok=True)
    cut: list[str] = []
    for image, boxes in _labelled(dataset, held, split):
        h, w = image.shape[:2]
        up = sorted((b for b in boxes if _standing(b, w, h)), key=lambda b: float(b[0]))
        for a, b in pairwise(up):
            width = min(a[2] - a[0], b[2] - b[0])
            tall = max(a[3] - a[1], b[3] - b[1])
            both = np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])])
            if (b[0] - a[2] < 0.5 * width and abs(a[3] - b[3]) <= 0.1 * tall
                    and not any(iou(o, both) > 0 for o in boxes
                                if o is not a and o is not b)):
                cut.append(f"pair_{len(cut):03d}")
                _save_crop(image, both, out, cut[-1])
                break
        if len(cut) == most:
            break
    return cut


def standing_scores(rig: Rig, people: list[str], folder: Path) -> dict[str, dict[str, float]]:
    """The detectors' best scores for each person standing mid-frame in the hallway, at two
    sizes: how well the person model sees these people at all (0 below its threshold,
    analysis.tailgate.threshold, 0.35 by default) and, with faces on, how well YuNet sees
    their faces (analysis.tailgate.face_threshold, 0.5)."""
    detector, faces = rig.watch.detector, rig.watch.faces
    out = {}
    for i, name in enumerate(people):
        best = {"person": 0.0, "face": 0.0}
        for height in (200, 260):
            frame = background(i)
            paste(frame, person(name, height, folder), W // 2 + 120, H - 20)
            scores = [d.score for d in detector.detect(frame) if d.label == "person"]
            best["person"] = max([best["person"], *scores])
            best["face"] = max([best["face"], *(f.score for f in faces.detect(frame))]
                               if faces else [0.0])
        out[name] = {k: round(v, 3) for k, v in best.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", choices=["detectable", "all"], default="all")
    ap.add_argument("--first", type=int, default=0, metavar="N",
                    help="only the first N of those people (a quick run)")
    ap.add_argument("--people-from", type=Path, metavar="DATASET",
                    help="people cut from a YOLO-labelled photo set instead (`cut_people`), e.g. "
                    "../shared/datasets/people with --held")
    ap.add_argument("--held", type=Path, metavar="MANIFEST",
                    help="with --people-from: only the photos a train_detector.py run held aside")
    ap.add_argument("--split", choices=["held", "trained"], default="held",
                    help="with --held: its held-aside photos (to measure) or its trained ones "
                    "(to choose settings on)")
    ap.add_argument("--groups", action="store_true",
                    help="two people through side by side instead (`group_clips`): the shared "
                    "face set's group photos, or with --people-from pairs cut by rule "
                    "(`cut_pairs`)")
    ap.add_argument("--start-threshold", type=float, default=None,
                    help="analysis.tailgate.start_threshold (default: the config's)")
    ap.add_argument("--view", choices=["side", "approach"], default="side",
                    help="side: walking across a vertical line; approach: walking towards the "
                    "camera over a floor line (tests/tailgate_clips.py)")
    ap.add_argument("--faces", choices=["on", "off"], default="on",
                    help="analysis.tailgate.faces: faces count as people too (off: as before)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="analysis.tailgate.threshold (default: the config's)")
    ap.add_argument("--model", default=None, metavar="NAME|FILE.onnx",
                    help="analysis.tailgate.model (default: the config's), or a detector file "
                    "(a scripts/train_detector.py output), installed as a site model for the run")
    ap.add_argument("--gate", choices=["on", "off"], default="off",
                    help="on: frames go through the door camera's face gate first, as in the "
                    "daemon, and the watch takes the gate's faces (process_ms is then the gate "
                    "and the watch together)")
    args = ap.parse_args()
    people, folder = ((GROUPS, FACES) if args.groups
                      else (ALL if args.people == "all" else DETECTABLE, PEOPLE))
    with tempfile.TemporaryDirectory() as tmp:
        if args.people_from:
            folder = Path(tmp) / "people"
            cut = cut_pairs if args.groups else cut_people
            people = cut(args.people_from, args.held, folder, args.first or 10_000, args.split)
            print(f"{len(people)} {'pairs' if args.groups else 'people'} cut from "
                  f"{args.people_from}", file=sys.stderr)
        if args.first > 0:
            people = people[: args.first]
        over: dict[str, object] = {"faces": args.faces == "on", **VIEWS[args.view]}
        if args.threshold is not None:
            over["threshold"] = args.threshold
        if args.start_threshold is not None:
            over["start_threshold"] = args.start_threshold
        if args.model and args.model.endswith(".onnx"):
            install_site_model(Path(tmp) / "state" / SITE_MODELS, "candidate", Path(args.model),
                               f"bench_tailgate candidate ({args.model})")
            over["model"] = "candidate"
        elif args.model:
            over["model"] = args.model
        rig = Rig(Path(tmp), **over)
        standing = standing_scores(rig, people, folder)
        if args.gate == "on":
            rig.through_gate()
        process_ms: list[float] = []
        original = rig.watch_step

        def timed(image, t):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            out = original(image, t)
            process_ms.append((time.perf_counter() - t0) * 1000)
            return out

        rig.watch_step = timed
        rig.watch.run_ms = deque()  # keep every run, not the last 200
        tp = fp = fn = 0
        per_clip = {}
        frames = 0
        for clip in (group_clips if args.groups else clips)(people, args.view, folder):
            frames += len(clip.steps)
            before = rig.watch.alerts  # counted by the watch: through the gate, play gets none
            rig.play(clip)
            n = rig.watch.alerts - before
            per_clip[clip.name] = (clip.tailgate, n)
            if clip.tailgate:
                tp += n == 1
                fn += n != 1
                fp += max(n - 1, 0)
            else:
                fp += n
            print(f"{clip.name}: {n} alert(s)", file=sys.stderr)
        runs, reused = rig.watch.runs, rig.watch.faces_reused
        detect = list(rig.watch.run_ms)
        rig.app.close()
    positives = tp + fn
    print(json.dumps({
        "view": args.view,
        "faces": args.faces,
        "gate": args.gate,
        "model": args.model or rig.watch.cfg.model,
        "threshold": rig.watch.cfg.threshold,
        "start_threshold": rig.watch.cfg.start,
        "people": len(people),
        "people_from": str(args.people_from) if args.people_from else str(PEOPLE),
        "clips": len(per_clip),
        "positives": positives,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "precision": round(tp / (tp + fp), 3) if tp + fp else None,
        "recall": round(tp / positives, 3) if positives else None,
        "missed": [k for k, (truth, n) in per_clip.items() if truth and n != 1],
        "false_alerts": [k for k, (truth, n) in per_clip.items() if not truth and n],
        "standing_best_score": standing,
        "frames": frames,
        "detector_runs": runs,
        "faces_reused": reused,
        "detector_ms": stats(detect),
        "process_ms": stats(process_ms),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
