#!/usr/bin/env python3
"""Liveness (presentation attack detection) figures: APCER / BPCER per attack kind and per framing.

    python scripts/eval_liveness.py --liveness DIR [--framings] [--config FILE]

Also imported by scripts/eval_face.py (its --liveness part) and by the tests, which cut the
same camera framings from the project's photos. DIR holds images and a ground_truth.csv with
columns file, label (real | spoof) and optionally attack_type / kind; the attack kind is taken
from there or from the file name (print_*, replay_*). Terms as in ISO/IEC 30107-3: APCER =
attacks accepted as real, BPCER = bona fide faces refused, each over the samples in which a
face was found (no face found is counted apart). A face too near for the frame to show the
context liveness needs counts as refused (the gate asks the person to step back) and is also
reported on its own, as `too_close`.

--framings adds, for every sample, real camera frames cut from it (never padded or upscaled):
the widest frame of each aspect (16:9, 4:3, 1:1, 3:4) centred on the face, and frames in which
the face box is 30-90% of the frame height at several positions, downscaled to a camera's width.
The framings are reported per aspect (and attack kind) and per coverage band (how much of the
face's context box the frame shows: where the gate decides, decides only confident passes, or
asks to step back). Prints, last, one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gatectl.config import default_config, load_config  # noqa: E402
from gatectl.config.base import ConfigError  # noqa: E402
from gatectl.config.gates import FaceGateConfig  # noqa: E402
from gatectl.sources.media import MediaError, read_image  # noqa: E402
from gatectl.vision.face.detect import FaceDetector  # noqa: E402
from gatectl.vision.face.liveness import (  # noqa: E402
    MARGIN_CONTEXT,
    MIN_CONTEXT,
    LivenessModel,
    context_coverage,
)

# aspect name -> (width / height, the width of a camera of that aspect)
ASPECTS = {"16:9": (16 / 9, 1280), "4:3": (4 / 3, 640), "1:1": (1.0, 720), "3:4": (3 / 4, 480)}
FACE_HEIGHTS = (0.3, 0.45, 0.6, 0.75, 0.9)  # face box height / frame height
POSITIONS = ((0.5, 0.5), (0.25, 0.45), (0.75, 0.45), (0.5, 0.35), (0.15, 0.5), (0.85, 0.5))  # face centre


def _camera_size(frame: np.ndarray, width: int) -> np.ndarray:
    """Downscale (never upscale) to the camera's width, as a camera of that aspect would deliver."""
    h, w = frame.shape[:2]
    if w <= width:
        return frame
    return cv2.resize(frame, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def camera_framings(image: np.ndarray, box: np.ndarray) -> Iterator[tuple[str, str, np.ndarray]]:
    """(aspect, variant, frame): real frames of each aspect cut from ``image`` around the face
    ``box``. Only frames lying wholly inside the image are made, so every pixel is real."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy, bh = (x1 + x2) / 2, (y1 + y2) / 2, y2 - y1
    for name, (aspect, cam_w) in ASPECTS.items():
        fw, fh = (round(h * aspect), h) if w / h > aspect else (w, round(w / aspect))
        left = int(min(max(cx - fw / 2, 0), w - fw))
        top = int(min(max(cy - fh / 2, 0), h - fh))
        yield name, "widest", _camera_size(image[top:top + fh, left:left + fw], cam_w)
        for share in FACE_HEIGHTS:
            fh = bh / share
            fw = fh * aspect
            for px, py in POSITIONS:
                left, top = cx - px * fw, cy - py * fh
                if left < 0 or top < 0 or left + fw > w or top + fh > h:
                    continue
                frame = image[int(top):int(top + fh), int(left):int(left + fw)]
                yield name, f"face {share:.0%} at {px:.2f},{py:.2f}", _camera_size(frame, cam_w)


def attack_kind(row: dict) -> str:
    """bona fide | print | replay | other, from the ground truth or the file name."""
    if row.get("label") != "spoof":
        return "bona fide"
    text = " ".join([row.get("attack_type", ""), row.get("kind", ""), row.get("file", "")]).lower()
    if "print" in text or "paper" in text:
        return "print"
    if "replay" in text or "screen" in text:
        return "replay"
    return "other"


@dataclass(frozen=True)
class Outcome:
    """One frame's liveness result for its largest face: accepted as real or not, and why."""

    accepted: bool
    too_close: bool
    p_real: float | None  # None: too close to decide
    coverage: float  # of the face's context box by the frame (liveness.context_coverage)


def judge(detector: FaceDetector, live: LivenessModel, threshold: float, image: np.ndarray) -> Outcome | None:
    """The gate's liveness rule on one frame (None: no face found)."""
    faces = detector.detect(image)
    if not faces:
        return None
    face = max(faces, key=lambda f: f.width * f.height)
    coverage = context_coverage(face.box, image.shape[:2])
    p = live.judge(image, face.box, threshold)
    if p is None:
        return Outcome(False, True, None, coverage)
    return Outcome(p >= threshold, False, p, coverage)


# context coverage bands the framings are also reported by: where the gate decides at its
# threshold (>= MIN_CONTEXT), decides only confident passes (>= MARGIN_CONTEXT), and never decides
COVERAGE_BANDS = (
    (0.0, 0.4), (0.4, MARGIN_CONTEXT), (MARGIN_CONTEXT, MIN_CONTEXT), (MIN_CONTEXT, 1.01),
)


def coverage_band(coverage: float) -> str:
    """The COVERAGE_BANDS entry holding ``coverage``, as its JSON key ("0.50-0.55")."""
    lo, hi = next(b for b in COVERAGE_BANDS if b[0] <= coverage < b[1])
    return f"{lo:.2f}-{min(hi, 1.0):.2f}"


class Tally:
    """Counts for one group of samples (one attack kind, one aspect)."""

    def __init__(self) -> None:
        self.n = self.errors = self.too_close = self.no_face = 0

    def add(self, bona_fide: bool, outcome: Outcome | None) -> None:
        if outcome is None:
            self.no_face += 1
            return
        self.n += 1
        self.too_close += outcome.too_close
        self.errors += (not outcome.accepted) if bona_fide else outcome.accepted

    def report(self, bona_fide: bool) -> dict:
        """The rate over every sample with a face (too close = refused), and over those whose
        frame showed the face's surroundings (the ones liveness decided)."""
        decided = self.n - self.too_close
        wrong = self.errors - self.too_close if bona_fide else self.errors
        name = "bpcer" if bona_fide else "apcer"
        return {"samples": self.n, name: round(self.errors / self.n, 4) if self.n else None,
                ("refused" if bona_fide else "accepted"): self.errors,
                "too_close": self.too_close, "no_face": self.no_face,
                f"{name}_with_context": round(wrong / decided, 4) if decided else None}


def read_truth(folder: Path) -> list[dict]:
    path = folder / "ground_truth.csv"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        raise SystemExit(f"eval_liveness: {path}: ground truth not found") from None


def evaluate(detector: FaceDetector, live: LivenessModel, threshold: float, folder: Path,
             framings: bool = False) -> dict:
    """APCER / BPCER per attack kind over the folder's frames as they are, and with
    ``framings`` the same per aspect over the framings cut from every sample."""
    by_kind: dict[str, Tally] = {}
    by_aspect: dict[str, dict[str, Tally]] = {}
    by_band: dict[str, dict[str, Tally]] = {}
    total = {"bona fide": Tally(), "attack": Tally()}
    failures: list[str] = []
    for row in read_truth(folder):
        try:
            image = read_image(folder / row["file"])
        except MediaError as exc:
            failures.append(str(exc))
            continue
        kind = attack_kind(row)
        bona_fide = kind == "bona fide"
        outcome = judge(detector, live, threshold, image)
        by_kind.setdefault(kind, Tally()).add(bona_fide, outcome)
        if not framings:
            continue
        faces = detector.detect(image)
        if not faces:
            continue
        box = max(faces, key=lambda f: f.width * f.height).box
        for aspect, _, frame in camera_framings(image, box):
            o = judge(detector, live, threshold, frame)
            by_aspect.setdefault(aspect, {}).setdefault(kind, Tally()).add(bona_fide, o)
            if o is not None:
                band = by_band.setdefault(coverage_band(o.coverage), {})
                band.setdefault(kind, Tally()).add(bona_fide, o)
            total["bona fide" if bona_fide else "attack"].add(bona_fide, o)
    result: dict = {
        "liveness_threshold": threshold,
        "failed_to_read": failures,
        "per_attack_kind": {k: t.report(k == "bona fide") for k, t in sorted(by_kind.items())},
    }
    attacks = [t for k, t in by_kind.items() if k != "bona fide"]
    n_att = sum(t.n for t in attacks)
    bf = by_kind.get("bona fide", Tally())
    result["apcer"] = round(sum(t.errors for t in attacks) / n_att, 4) if n_att else None
    result["bpcer"] = round(bf.errors / bf.n, 4) if bf.n else None
    if framings:
        result["framings"] = {
            "per_aspect": {a: {k: t.report(k == "bona fide") for k, t in sorted(kinds.items())}
                           for a, kinds in by_aspect.items()},
            "per_coverage": {b: {k: t.report(k == "bona fide") for k, t in sorted(kinds.items())}
                             for b, kinds in sorted(by_band.items())},
            "bona_fide": total["bona fide"].report(True), "attacks": total["attack"].report(False),
        }
    return result


def face_app(prog: str, config: Path | None):
    """The config, its first face gate and an App on a scratch state folder, for an evaluation;
    a bad config is one line naming the script."""
    from gatectl.runtime.app import App

    try:
        cfg = load_config(config) if config else default_config()
    except ConfigError as exc:
        raise SystemExit(f"{prog}: {exc.lines[0]}") from None
    gate = next(g for g in cfg.gates if isinstance(g, FaceGateConfig))
    return cfg, gate, App(cfg, Path(tempfile.mkdtemp(prefix="gatectl-eval-")))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--liveness", type=Path, required=True)
    ap.add_argument("--framings", action="store_true", help="add camera framings of every sample")
    ap.add_argument("--config", type=Path, help="device config; default: built-in defaults")
    args = ap.parse_args()
    _, gate, app = face_app("eval_liveness", args.config)
    detector = app.analyzer(gate.quality, gate.thresholds.detect, gate.detect_long_side, False, 0.0).detector
    print(json.dumps(evaluate(detector, app.liveness, gate.thresholds.liveness, args.liveness, args.framings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
