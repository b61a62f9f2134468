#!/usr/bin/env python3
"""Tailgating: precision and recall of the tailgate watch on clips composed from real photos of
people (tests/tailgate_clips.py: per person a single pass, a follower on one grant, a pass where
the door closed in between, two people on two grants), and its cost per frame: the person
detector's run (the bundled COCO YOLOX-nano, 416 px) and the whole `TailgateWatch.process`.

A clip is a positive when two people went in on one grant; it counts as found when the watch
raised exactly one alert on it, and any alert on another clip is a false positive. ``--people
all`` includes the two people the detector misses on these backgrounds (dark, low contrast).

Prints progress to stderr and, last, one JSON line on stdout.

    python scripts/bench_tailgate.py [--people detectable|all] [--first N]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from benchlib import stats

from tests.tailgate_clips import (
    ALL,
    DETECTABLE,
    H,
    Rig,
    W,
    background,
    clips,
    paste,
    person,
)


def standing_scores(rig: Rig, people: list[str]) -> dict[str, float]:
    """The detector's best person score for each person standing mid-frame in the hallway, at
    two sizes: how well the COCO model sees these people at all (its threshold is
    analysis.tailgate.threshold, 0.35 by default)."""
    detector = rig.watch.detector
    out = {}
    for i, name in enumerate(people):
        best = 0.0
        for height in (200, 260):
            frame = background(i)
            paste(frame, person(name, height), W // 2 + 120, H - 20)
            scores = [d.score for d in detector.detect(frame) if d.label == "person"]
            best = max([best, *scores])
        out[name] = round(best, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", choices=["detectable", "all"], default="all")
    ap.add_argument("--first", type=int, default=0, metavar="N",
                    help="only the first N of those people (a quick run)")
    args = ap.parse_args()
    people = ALL if args.people == "all" else DETECTABLE
    if args.first > 0:
        people = people[: args.first]
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(Path(tmp))
        standing = standing_scores(rig, people)
        process_ms: list[float] = []
        original = rig.watch.process

        def timed(image, t):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            out = original(image, t)
            process_ms.append((time.perf_counter() - t0) * 1000)
            return out

        rig.watch.process = timed  # type: ignore[method-assign]
        rig.watch.run_ms = deque()  # keep every run, not the last 200
        tp = fp = fn = 0
        per_clip = {}
        frames = 0
        for clip in clips(people):
            frames += len(clip.steps)
            n = len(rig.play(clip))
            per_clip[clip.name] = n
            if clip.tailgate:
                tp += n == 1
                fn += n != 1
                fp += max(n - 1, 0)
            else:
                fp += n
            print(f"{clip.name}: {n} alert(s)", file=sys.stderr)
        runs = rig.watch.runs
        detect = list(rig.watch.run_ms)
        rig.app.close()
    positives = tp + fn
    print(json.dumps({
        "people": len(people),
        "clips": len(per_clip),
        "positives": positives,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "precision": round(tp / (tp + fp), 3) if tp + fp else None,
        "recall": round(tp / positives, 3) if positives else None,
        "missed": [k for k, v in per_clip.items() if k.startswith("tailgate") and v != 1],
        "false_alerts": [k for k, v in per_clip.items() if not k.startswith("tailgate") and v],
        "standing_best_score": standing,
        "frames": frames,
        "detector_runs": runs,
        "detector_ms": stats(detect),
        "process_ms": stats(process_ms),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
