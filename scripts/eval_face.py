#!/usr/bin/env python3
"""Face recognition (and optionally liveness) accuracy at the configured thresholds.

    python scripts/eval_face.py --faces DIR [--liveness DIR [--framings]] [--config FILE]
                                [--enroll-k 3] [--folds 4] [--gallery-sizes 10,30,100]

--faces DIR holds images and a ground_truth.csv with columns file, identities_left_to_right,
n_faces (the shared test set's shape). Every single-face image is embedded by the same analyzer
a gate uses; every pair of images is then a genuine pair (same identity) or an impostor pair.
FAR = impostor pairs scoring >= the match threshold; FRR = genuine pairs scoring below it.
--liveness DIR (ground_truth.csv: file, label real|spoof) adds APCER (attacks passed) and
BPCER (real faces refused) in ISO/IEC 30107-3 terms, per attack kind, and with --framings per
camera aspect over framings cut from every sample (scripts/eval_liveness.py); --framings
also frames the --faces photos (bona fide).

`identification` answers the gate's own question, open-set 1:N (see identification() below):
per single frame and per pass, residents recognised / granted as someone else / refused, and
strangers granted as someone, at the largest gallery the set allows and at smaller ones; then
the stranger false-accept rate and the residents' recognition extrapolated to 1,000 and 10,000
enrolled from the measured per-identity impostor scores (a set of 200 people cannot fill a
gallery of 10,000 with real people; the extrapolation says how it was made).
Prints, last, one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gatectl.config.gates import FaceGateConfig, FaceQuality  # noqa: E402
from gatectl.domain.face_match import identify, size_aware_threshold  # noqa: E402
from gatectl.gates.face.tracker import Track, Vote, confirm, fuse  # noqa: E402
from gatectl.people.directory import select_templates  # noqa: E402
from gatectl.runtime.app import App  # noqa: E402
from gatectl.sources.media import MediaError, read_image  # noqa: E402
from gatectl.vision.face.gallery import Gallery  # noqa: E402
from gatectl.vision.face.quality import assess  # noqa: E402
from scripts.eval_liveness import evaluate as evaluate_liveness  # noqa: E402
from scripts.eval_liveness import face_app  # noqa: E402


def read_truth(folder: Path) -> list[dict]:
    path = folder / "ground_truth.csv"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        raise SystemExit(f"eval_face: {path}: ground truth not found") from None


# --- open-set 1:N identification, as the gate decides it ------------------------------------
#
# The gate's question is not "are these two photos the same person" but "is this face one of
# the N people enrolled here, and which": a stranger is a false accept if the gate lets them in
# as anyone, a resident is an error if let in as someone else. People are split into folds; in
# each fold one part stays out of the gallery and probes as strangers, the rest is enrolled from
# its first k frontal photos (through the enrollment's template selection) and probes with its
# other frontal photos. Every decision goes through the gate's own code: Gallery,
# decision.identify, the tracker's confirm/fuse, decision.size_aware_threshold.

PASS_VARIATIONS = ((0.96, 3, -2, 1.08), (1.04, -3, 2, 0.92))  # scale, dx, dy (px), exposure gain


def pass_frames(img: np.ndarray) -> list[np.ndarray]:
    """A pass as a gate camera sees it: the photo and two mildly different frames of it (a few
    pixels of movement, 4% scale, 8% exposure, JPEG again). Consecutive real frames are this
    close; fusing them does not average away a stranger's resemblance the way independent
    photos of the stranger would, so this simulation is the conservative one."""
    h, w = img.shape[:2]
    frames = [img]
    for scale, dx, dy, gain in PASS_VARIATIONS:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, scale)
        m[:, 2] += (dx, dy)
        moved = cv2.convertScaleAbs(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT), alpha=gain)
        _, jpg = cv2.imencode(".jpg", moved, [cv2.IMWRITE_JPEG_QUALITY, 85])
        frames.append(cv2.imdecode(jpg, cv2.IMREAD_COLOR))
    return frames


@dataclass(frozen=True)
class Shot:
    """One analysed frame: the largest face's embedding and whether each quality gate takes it."""

    embedding: np.ndarray | None  # None: no face found
    gate_ok: bool
    enroll_ok: bool
    quality: float  # the enrollment's quality score (template selection prefers the best)


def analyse(analyzer, gate_quality: FaceQuality, enroll_quality: FaceQuality, img: np.ndarray) -> Shot:
    """``analyzer`` embeds every face (its own quality gate is open); the gate's and the
    enrollment's quality gates are then applied to the same face, as each would."""
    obs = [o for o in analyzer.analyze(img) if o.embedding is not None]
    if not obs:
        return Shot(None, False, False, 0.0)
    o = max(obs, key=lambda x: x.face.width * x.face.height)
    e = assess(o.face, o.aligned, enroll_quality)
    return Shot(o.embedding, assess(o.face, o.aligned, gate_quality).ok, e.ok, e.score)


@dataclass
class Tally:
    """One operating point. Genuine: the probe's person is enrolled; stranger: not."""

    genuine: int = 0
    recognised: int = 0
    wrong_person: int = 0  # let in as somebody else
    refused: int = 0  # unknown, ambiguous, or no usable face
    strangers: int = 0
    stranger_granted: int = 0  # a false accept

    def count(self, truth: int | None, decided: int | None) -> None:
        """``truth``: the probe's identity in the gallery (None = a stranger); ``decided``: whom
        the gate let in (None = nobody)."""
        if truth is None:
            self.strangers += 1
            self.stranger_granted += decided is not None
        elif decided is None:
            self.genuine += 1
            self.refused += 1
        else:
            self.genuine += 1
            self.recognised += decided == truth
            self.wrong_person += decided != truth

    def report(self) -> dict:
        def rate(a: int, b: int) -> float | None:
            return round(a / b, 5) if b else None

        return {**vars(self), "recognition_rate": rate(self.recognised, self.genuine),
                "wrong_person_rate": rate(self.wrong_person, self.genuine),
                "stranger_far": rate(self.stranger_granted, self.strangers)}


def decide_probe(gallery: Gallery, frames: list[np.ndarray | None], gate: FaceGateConfig,
                 threshold: float) -> int | None:
    """Whom the gate lets in on these frames of one track (the gallery's resident id, or None),
    frame by frame as FaceGate._decide does: a frame without a usable face gives no vote, an
    'unknown' may still be upgraded by a later frame, a match ends the track."""
    track = Track(0, np.zeros(4, np.float32), 0.0, gate.confirm_window)
    need = min(gate.confirm_frames, len(frames))

    def ident(vec: np.ndarray) -> Vote:
        m = gallery.match(vec)
        kind, owner = identify(m, threshold, gate.thresholds.margin)
        return Vote(kind, owner, m.score)

    for vec in frames:
        if vec is not None:
            track.votes.append(ident(vec) if gate.fusion == "votes" else Vote("live"))
            track.embeddings.append(vec)
        c = confirm(track, need, gate.fusion, ident)
        if c is not None and c.kind == "match" and c.owner is not None:
            return c.owner[1]
    return None


def identification(people: dict[str, list[list[Shot]]], profiles: dict[str, list[Shot]],
                   gate: FaceGateConfig, enroll_k: int, keep: int, folds: int, sizes: list[int],
                   impostor_tail: tuple[float, float] | None, seed: int = 0) -> dict:
    """Open-set 1:N over ``people`` (name -> frontal photos -> the frames of its pass, frame 0
    being the photo itself). Returns the tallies at the largest gallery (per frame, per pass,
    profile photos per frame), strangers let in per pass by gallery size, and the per-identity
    scores (best template) of genuine and stranger probes, for the extrapolation (-inf for a
    genuine probe without a usable face)."""
    names = sorted(people)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    frame, per_pass, profile = Tally(), Tally(), Tally()
    by_size: dict[int, Tally] = {}
    scores: dict[str, list[float]] = {"genuine_frame": [], "genuine_pass": [], "impostor_frame": [],
                                      "impostor_pass": []}
    failed_to_enroll, largest, thresholds = 0, 0, []
    need = gate.confirm_frames
    for f in range(folds):
        strangers = {names[i] for i in order[f::folds]} if folds > 1 else set()
        templates: dict[str, list[np.ndarray]] = {}
        for n in names:
            if n in strangers:
                continue
            cand = [(p[0].embedding, p[0].quality) for p in people[n][:enroll_k]
                    if p[0].embedding is not None and p[0].enroll_ok]
            if cand:
                templates[n] = [v for v, _ in select_templates(cand, keep)]
            else:
                failed_to_enroll += 1
        enrolled = sorted(templates)
        if not enrolled:
            continue
        largest = max(largest, len(enrolled))
        probes = ([(n, p) for n in enrolled for p in people[n][enroll_k:]]
                  + [(None, p) for n in sorted(strangers) for p in people[n]])
        for size in sorted({s for s in sizes if s < len(enrolled)} | {len(enrolled)}):
            full = size == len(enrolled)
            chosen = enrolled if full else sorted(rng.choice(enrolled, size, replace=False))
            index = {n: k for k, n in enumerate(chosen)}
            g = Gallery(len(templates[chosen[0]][0]))
            g.replace_all((("resident", index[n]), v) for n in chosen for v in templates[n])
            thr = size_aware_threshold(gate.thresholds.match, g.owner_count, gate.thresholds.stranger_far,
                                       impostor_tail)
            tally = by_size.setdefault(-1 if full else size, Tally())
            if full:
                thresholds.append(thr)
                counts = np.array([len(templates[n]) for n in chosen])
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
                matrix = np.concatenate([templates[n] for n in chosen])
            for truth, shots in probes:
                if truth is not None and truth not in index:
                    continue
                t = index.get(truth) if truth is not None else None
                vecs = [s.embedding if s.gate_ok else None for s in shots]
                tally.count(t, decide_probe(g, vecs, gate, thr))
                if not full:
                    continue
                frame.count(t, decide_probe(g, vecs[:1], gate, thr))
                per_pass.count(t, decide_probe(g, vecs, gate, thr))
                usable = [v for v in vecs if v is not None]
                for mode, vec in (("frame", vecs[0]), ("pass", fuse(usable) if len(usable) >= need else None)):
                    if vec is None:
                        # a resident the quality gate refused is not recognised at any gallery
                        # size: -inf keeps them in the denominator of every extrapolated rate
                        if t is not None:
                            scores[f"genuine_{mode}"].append(-math.inf)
                        continue
                    per_identity = np.maximum.reduceat(matrix @ vec, starts)
                    if t is None:
                        scores[f"impostor_{mode}"] += per_identity.tolist()
                    else:
                        scores[f"genuine_{mode}"].append(float(per_identity[t]))
            if full:
                for n, shots in profiles.items():
                    if n in index or n in strangers:
                        vec = shots[0].embedding if shots and shots[0].gate_ok else None
                        profile.count(index.get(n), decide_probe(g, [vec], gate, thr))
    return {"frame": frame, "pass": per_pass, "profile": profile, "by_size": by_size, "scores": scores,
            "failed_to_enroll": failed_to_enroll, "largest_gallery": largest,
            "threshold": float(np.mean(thresholds)) if thresholds else None}


def tail_fit(scores: list[float]) -> tuple[float, float]:
    """A normal matched to the upper tail (99th and 99.9th percentiles) of per-identity stranger
    scores: the body of the distribution says nothing about the 1e-7 tail a 10,000 gallery
    needs, and a fit to the tail follows its real, heavier-than-normal shape more closely."""
    q99, q999 = np.percentile(scores, [99.0, 99.9])
    sigma = max(float(q999 - q99) / (3.0902 - 2.3263), 1e-6)
    return float(q99) - 2.3263 * sigma, sigma


def p_above(x: float, tail: tuple[float, float]) -> float:
    """P(one stranger-vs-identity score >= x) under the tail fit."""
    return 0.5 * math.erfc((x - tail[0]) / (tail[1] * math.sqrt(2)))


def at_least_one(p: float, n: int) -> float:
    """1 - (1 - p)^n without rounding p away."""
    return -math.expm1(n * math.log1p(-min(p, 1 - 1e-15)))


TAR_FMRS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7)


def tar_at_fmr(genuine: list[float], impostor: list[float], fmrs: tuple[float, ...] = TAR_FMRS) -> dict:
    """Residents accepted (own identity's best template) at the threshold that lets a stranger
    clear one identity with probability ``fmr``: the embedder's strength apart from any
    threshold setting, comparable across models (models/MANIFEST.md's candidate table). Where
    the stranger scores are too few to hold fmr (fewer than one above), the threshold comes
    from the tail fit instead and the key says so."""
    imp, gen = np.sort(np.asarray(impostor)), np.asarray(genuine)
    if not len(imp) or not len(gen):
        return {}
    fit = tail_fit(imp.tolist()) if len(imp) >= 1000 else None
    out: dict[str, float] = {}
    for fmr in fmrs:
        k = int(len(imp) * fmr)
        if k >= 1:  # the k-th highest stranger score: k / len(imp) of them reach it
            out[f"{fmr:g}"] = round(float(np.mean(gen > imp[len(imp) - k])), 4)
        elif fit is not None:  # the score a stranger reaches with probability fmr under the fit
            thr = fit[0] - fit[1] * NormalDist().inv_cdf(fmr)
            out[f"{fmr:g} (tail fit)"] = round(float(np.mean(gen >= thr)), 4)
    return out


def extrapolate(scores: dict[str, list[float]], gate: FaceGateConfig, impostor_tail: tuple[float, float] | None,
                sizes: list[int]) -> dict:
    """Stranger false accepts and residents recognised at gallery size N, from the measured
    per-identity scores: a stranger is let in if any of N identities clears the threshold,
    1 - (1 - p)^N; a resident is recognised if their own score clears it and no other of the
    N - 1 identities comes within the margin. Assumes identities independent and treats other
    residents like strangers; ignores the margin for strangers (which only refuses more)."""
    out: dict = {"method": "1-(1-p)^N, p from the per-identity stranger scores: measured (counts) and "
                           "from a normal fitted to their upper tail (p99, p99.9); identities independent"}
    for mode in ("frame", "pass"):
        imp, gen = scores[f"impostor_{mode}"], np.asarray(scores[f"genuine_{mode}"])
        if len(imp) < 1000 or not len(gen):
            continue
        fit = tail_fit(imp)
        arr = np.sort(np.asarray(imp))
        rows = {}
        for n in sizes:
            thr = size_aware_threshold(gate.thresholds.match, n, gate.thresholds.stranger_far, impostor_tail)
            p_meas = float(len(arr) - np.searchsorted(arr, thr)) / len(arr)
            rec = [at_least_one(p_above(s - gate.thresholds.margin, fit), n - 1) for s in gen]
            rows[str(n)] = {"threshold": round(thr, 4),
                            "stranger_far_measured_p": round(at_least_one(p_meas, n), 6),
                            "stranger_far_tail_fit": float(f"{at_least_one(p_above(thr, fit), n):.3g}"),
                            "resident_recognised_tail_fit": round(float(np.mean((gen >= thr) * (1 - np.asarray(rec)))), 5)}
        out[mode] = {"impostor_comparisons": len(imp), "genuine_probes": len(gen),
                     "tail_fit_mu_sigma": [round(fit[0], 4), round(fit[1], 4)],
                     "tar_at_per_identity_fmr": tar_at_fmr(gen.tolist(), imp), "by_gallery_size": rows}
    return out


def collect_shots(app: App, gate: FaceGateConfig, folder: Path, rows: list[dict]):
    """Analyse the set once: each frontal photo as a pass of 3 frames, each profile photo alone."""
    # no quality gate here (below the config bounds on purpose): the recogniser itself is measured
    off = FaceQuality.model_construct(min_face_px=16, min_sharpness=0.0, max_yaw=1.0, max_roll_deg=90.0)
    analyzer = app.analyzer(off,
                            gate.thresholds.detect, gate.detect_long_side, False, 0.0)
    enroll_q = app.cfg.enrollment.quality
    people: dict[str, list[list[Shot]]] = {}
    profiles: dict[str, list[Shot]] = {}
    unreadable = []
    for row in rows:
        if int(row["n_faces"]) != 1:
            continue
        try:
            img = read_image(folder / row["file"])
        except MediaError as exc:
            unreadable.append(str(exc))
            continue
        ident = row["identities_left_to_right"]
        if row.get("notes") == "profile":
            profiles.setdefault(ident, []).append(analyse(analyzer, gate.quality, enroll_q, img))
        else:
            people.setdefault(ident, []).append([analyse(analyzer, gate.quality, enroll_q, fr)
                                                 for fr in pass_frames(img)])
    return people, profiles, unreadable


def run_identification(app: App, gate: FaceGateConfig, folder: Path, rows: list[dict], args) -> dict:
    """1:N as the gate decides it, on ``folder`` (see identification())."""
    people, profiles, unreadable = collect_shots(app, gate, folder, rows)
    tail = app.embedder.impostor_tail
    keep = app.cfg.enrollment.keep_templates
    r = identification(people, profiles, gate, args.enroll_k, keep, args.folds, args.gallery_sizes, tail)
    n = r["largest_gallery"]
    return {
        "protocol": {"people": len(people), "folds": args.folds, "enroll_photos": args.enroll_k,
                     "templates_kept": keep, "fusion": gate.fusion, "confirm_frames": gate.confirm_frames,
                     "pass": "the probe photo + 2 mild variations of it (shift, scale, exposure, JPEG)",
                     "match": gate.thresholds.match, "margin": gate.thresholds.margin,
                     "stranger_far_target": gate.thresholds.stranger_far, "impostor_tail": tail,
                     "largest_gallery": n, "failed_to_enroll": r["failed_to_enroll"], "unreadable": unreadable},
        "threshold_at_largest_gallery": round(r["threshold"], 4) if r["threshold"] is not None else None,
        "per_frame": r["frame"].report(), "per_pass": r["pass"].report(),
        "profile_per_frame": r["profile"].report(),
        "per_pass_by_gallery_size": {("largest" if k < 0 else str(k)): v.report()
                                     for k, v in sorted(r["by_size"].items(), key=lambda kv: kv[0] % 10**9)},
        "extrapolated": extrapolate(r["scores"], gate, tail, sorted({n, 1000, 10_000}) if n else []),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=Path, required=True)
    ap.add_argument("--liveness", type=Path)
    ap.add_argument("--framings", action="store_true", help="liveness also on camera framings of every sample")
    ap.add_argument("--config", type=Path, help="device config; default: built-in defaults")
    ap.add_argument("--enroll-k", type=int, default=3, help="1:N: enrollment photos per person (default 3)")
    ap.add_argument("--folds", type=int, default=4, help="1:N: 1/folds of the people are strangers in turn")
    ap.add_argument("--gallery-sizes", type=lambda t: [int(x) for x in t.split(",")], default=[10, 30, 100],
                    help="1:N: smaller galleries to measure too, comma-separated")
    args = ap.parse_args()
    cfg, gate, app = face_app("eval_face", args.config)
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
    result["identification"] = run_identification(app, gate, args.faces, read_truth(args.faces), args)
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
