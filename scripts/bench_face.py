#!/usr/bin/env python3
"""Face pipeline benchmark: per-stage and end-to-end latency on a 1280x720 frame with one face.

Runs the very objects `gatectl run` uses (App -> FaceGate) and, in the same process and run, the
bare onnxruntime calls on the same inputs, so `overhead_ratio` shows what gatectl adds around
the models. Prints progress to stderr and, last, one JSON line on stdout.

    python scripts/bench_face.py [--iterations 200] [--photo tests/data/faces/rose_leslie_01.jpg]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchlib import stats, timed  # noqa: E402

from gatectl.config import default_config  # noqa: E402
from gatectl.hw.relay import SimulatedRelay  # noqa: E402
from gatectl.people.enroll import Sample  # noqa: E402
from gatectl.runtime.app import App  # noqa: E402
from gatectl.sources.media import read_image  # noqa: E402
from gatectl.vision.face.align import align_face  # noqa: E402
from gatectl.vision.face.gallery import Gallery  # noqa: E402


def frame_720p(photo: Path) -> np.ndarray:
    """A real photo cropped/resized to exactly 1280x720 (a gate camera's frame)."""
    img = read_image(photo)
    h, w = img.shape[:2]
    target = 1280 / 720
    if w / h > target:
        nw = int(h * target)
        img = img[:, (w - nw) // 2:(w - nw) // 2 + nw]
    else:
        nh = int(w / target)
        img = img[:nh]
    return cv2.resize(img, (1280, 720), interpolation=cv2.INTER_AREA)


def random_gallery(n: int, dim: int, rng: np.random.Generator, extra: list) -> Gallery:
    """n random templates (streamed in chunks, as rows stream from the store) plus ``extra``."""

    def rows():
        for start in range(0, n, 4096):
            chunk = rng.standard_normal((min(4096, n - start), dim), dtype=np.float32)
            for i, v in enumerate(chunk):
                yield ("resident", 10_000_000 + start + i), v
        yield from extra

    g = Gallery(dim)
    g.replace_all(rows())
    return g


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--photo", type=Path, default=REPO / "tests/data/faces/rose_leslie_01.jpg")
    ap.add_argument("--e2e-gallery", type=int, default=10_000, help="templates in the gallery for end to end")
    args = ap.parse_args()
    n = args.iterations
    rng = np.random.default_rng(0)

    frame = frame_720p(args.photo)
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    jpeg = jpeg.tobytes()
    data = Path(tempfile.mkdtemp(prefix="gatectl-bench-"))
    app = App(default_config(), data, boards={"main": SimulatedRelay()})
    gate_cfg = app.cfg.gates[0]
    app.enroller().enroll_resident("bench person", "1-1-101", [Sample(args.photo.name, read_image(args.photo))])
    gate = app.gate(gate_cfg)
    an = gate.analyzer
    faces = an.detector.detect(frame)
    if len(faces) != 1:
        print(f"bench_face: {args.photo}: expected one face in the 1280x720 frame, found {len(faces)}",
              file=sys.stderr)
        return 2
    face = faces[0]
    person = list(app.store.iter_templates(app.embedder.model_id))
    app.directory.gallery = random_gallery(args.e2e_gallery - len(person), app.embedder.dim, rng, person)

    # --- stages, as the gate runs them ----------------------------------------------------
    decode = lambda: cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)  # noqa: E731
    aligned = align_face(frame, face.landmarks)
    query = an.embedder.embed(aligned)
    for fn in (decode, lambda: an.detector.detect(frame), lambda: an.liveness.p_real(frame, face.box),
               lambda: an.embedder.embed(align_face(frame, face.landmarks))):
        timed(fn, 10)  # warm-up
    t_decode = timed(decode, n)
    t_detect = timed(lambda: an.detector.detect(frame), n)
    t_live = timed(lambda: an.liveness.p_real(frame, face.box), n)
    t_embed = timed(lambda: an.embedder.embed(align_face(frame, face.landmarks)), n)
    t_match = timed(lambda: app.directory.gallery.match(query), n)

    # --- end to end (JPEG bytes -> decision, through FaceGate.process) and the bare
    # onnxruntime calls on the same inputs, interleaved in one loop: this VM's speed drifts by
    # tens of percent over a minute, and the ratio must compare like with like
    clock = [0.0]

    def e2e() -> None:
        img = decode()
        clock[0] += 0.066
        gate.process(img, clock[0])

    det_blob, _ = an.detector.prepare(frame)
    live_blobs = an.liveness.crops(frame, face.box)
    emb_blob = an.embedder.prepare(aligned)
    det_s, live_runs, emb_s = an.detector.session, an.liveness.runs, an.embedder.session

    def bare() -> None:
        det_s.run(None, {an.detector.input_name: det_blob})
        for (s, name, _, _), b in zip(live_runs, live_blobs):
            s.run(None, {name: b})
        emb_s.run(None, {an.embedder.input_name: emb_blob})

    for fn in (e2e, bare):
        timed(fn, 10)
    t_e2e, t_bare, t_dec = [], [], []
    for _ in range(n):
        t_e2e += timed(e2e, 1)
        t_bare += timed(bare, 1)
        t_dec += timed(decode, 1)
    decided = [e.decision for e in app.store.events()]

    # --- 1:N match time by gallery size ---------------------------------------------------------
    match_by_size = {}
    for size in (1_000, 10_000, 100_000):
        g = random_gallery(size, app.embedder.dim, rng, [])
        timed(lambda: g.match(query), 20)
        match_by_size[str(size)] = stats(timed(lambda: g.match(query), n))

    e2e_ms = float(np.percentile(t_e2e, 50))
    overhead = (float(np.median(t_e2e)) - float(np.median(t_dec))) / float(np.median(t_bare))
    result = {
        "frame": "1280x720, one face", "photo": args.photo.name, "iterations": n,
        "threads": app.cfg.models.intra_op_threads, "e2e_gallery_templates": len(app.directory.gallery),
        "stages_ms": {"decode": stats(t_decode), "detect": stats(t_detect), "liveness": stats(t_live),
                      "embed": stats(t_embed), "match": stats(t_match)},
        "end_to_end_ms": stats(t_e2e),
        "bare_models_ms": stats(t_bare),
        "overhead_ratio": round(overhead, 3),
        "throughput_fps": round(1000.0 / e2e_ms, 1),
        "match_ms_by_gallery": match_by_size,
        "decisions_during_e2e": decided,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
