#!/usr/bin/env python3
"""Face recognition (and optionally liveness) accuracy at the configured thresholds.

    python scripts/eval_face.py --faces DIR [--liveness DIR [--framings]] [--config FILE]

--faces DIR holds images and a ground_truth.csv with columns file, identities_left_to_right,
n_faces (the shared test set's shape). Every single-face image is embedded by the same analyzer
a gate uses; every pair of images is then a genuine pair (same identity) or an impostor pair.
FAR = impostor pairs scoring >= the match threshold; FRR = genuine pairs scoring below it.
--liveness DIR (ground_truth.csv: file, label real|spoof) adds APCER (attacks passed) and
BPCER (real faces refused) in ISO/IEC 30107-3 terms, per attack kind, and with --framings per
camera aspect over framings cut from every sample (scripts/eval_liveness.py); --framings
also frames the --faces photos (bona fide). Prints, last, one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gatectl.app import App  # noqa: E402
from gatectl.config import ConfigError, FaceGateConfig, default_config, load_config  # noqa: E402
from gatectl.media import MediaError, read_image  # noqa: E402
from scripts.eval_liveness import evaluate as evaluate_liveness  # noqa: E402


def read_truth(folder: Path) -> list[dict]:
    path = folder / "ground_truth.csv"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        raise SystemExit(f"eval_face: {path}: ground truth not found") from None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=Path, required=True)
    ap.add_argument("--liveness", type=Path)
    ap.add_argument("--framings", action="store_true", help="liveness also on camera framings of every sample")
    ap.add_argument("--config", type=Path, help="device config; default: built-in defaults")
    args = ap.parse_args()
    try:
        cfg = load_config(args.config) if args.config else default_config()
    except ConfigError as exc:
        raise SystemExit(f"eval_face: {exc.lines[0]}") from None
    gate = next(g for g in cfg.gates if isinstance(g, FaceGateConfig))
    app = App(cfg, Path(tempfile.mkdtemp(prefix="gatectl-eval-")))
    # recognition is measured on its own: liveness is reported separately below
    analyzer = app.analyzer(gate.quality, gate.thresholds.detect, gate.detect_long_side, False, 0.0)
    live_model = app.liveness

    embeddings: list[tuple[str, str, object]] = []
    failures: list[str] = []
    p_real_of_genuine_faces = []
    for row in read_truth(args.faces):
        if int(row["n_faces"]) != 1:
            continue
        try:
            img = read_image(args.faces / row["file"])
        except MediaError as exc:
            failures.append(str(exc))
            continue
        obs = [o for o in analyzer.analyze(img) if o.embedding is not None]
        if len(obs) != 1:
            failures.append(f"{row['file']}: {len(obs)} usable faces")
            continue
        embeddings.append((row["file"], row["identities_left_to_right"], obs[0].embedding))
        p_real_of_genuine_faces.append(live_model.p_real(img, obs[0].face.box))

    thr = gate.thresholds.match
    genuine, impostor = [], []
    for (fa, ia, ea), (fb, ib, eb) in itertools.combinations(embeddings, 2):
        (genuine if ia == ib else impostor).append(float(ea @ eb))
    fa_count = sum(s >= thr for s in impostor)
    fr_count = sum(s < thr for s in genuine)
    result = {
        "images": len(embeddings), "failed_to_acquire": failures, "threshold": thr,
        "genuine_pairs": len(genuine), "impostor_pairs": len(impostor),
        "false_accepts": fa_count, "false_rejects": fr_count,
        "far": round(fa_count / len(impostor), 4) if impostor else None,
        "frr": round(fr_count / len(genuine), 4) if genuine else None,
        "genuine_min": round(min(genuine), 4) if genuine else None,
        "impostor_max": round(max(impostor), 4) if impostor else None,
        "face_photos_below_liveness_threshold": sum(p < gate.thresholds.liveness for p in p_real_of_genuine_faces),
    }
    if args.liveness:
        result.update(evaluate_liveness(analyzer.detector, live_model, gate.thresholds.liveness,
                                        args.liveness, args.framings))
    if args.framings:  # the face photos are bona fide: every one of their framings should pass
        result["face_photos_liveness"] = evaluate_liveness(
            analyzer.detector, live_model, gate.thresholds.liveness, args.faces, True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
