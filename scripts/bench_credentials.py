#!/usr/bin/env python3
"""QR codes on the face gate's camera: what they cost.

Measures (1) the QR decode (`gatectl.vision.qr.QrReader`, zxing-cpp) on a 1280x720 frame with
and without a visitor pass in it, and (2) the face gate's whole frame (`FaceGate.process`, the
object `gatectl run` uses, real models) with QR reading off, on at the configured rate (one
frame in ``access.qr.every_n_frames``) and on every frame - so the added p50/p95 is what a site
pays. Prints progress to stderr and, last, one JSON line on stdout.

    python scripts/bench_credentials.py [--iterations 200] [--photo FACE.jpg]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_face import frame_720p
from benchlib import stats, timed

from gatectl.access.passes import issue_pass
from gatectl.config import default_config
from gatectl.hw.relay import SimulatedRelay
from gatectl.runtime.app import App
from gatectl.sync.signing import generate_private_key
from gatectl.vision.qr import QrReader, qr_image


def with_code(frame: np.ndarray, text: str, side: int = 260) -> np.ndarray:
    """``frame`` with a phone screen showing the QR code of ``text`` in its right third."""
    out = frame.copy()
    code = cv2.resize(qr_image(text, scale=4), (side, side), interpolation=cv2.INTER_AREA)
    y, x = (720 - side) // 2, 1280 - side - 80
    out[y:y + side, x:x + side] = code[:, :, None]
    return out


def interleaved(runs: dict[str, tuple[object, np.ndarray]], n: int) -> tuple[dict, dict]:
    """Wall and CPU milliseconds of ``n`` frames through each gate, the gates taking turns frame
    by frame (so a load spike on a shared machine hits every variant alike), 10 fps of frame
    time. CPU time is the process's (onnxruntime's pool threads included)."""
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(n):
        for name, (gate, frame) in runs.items():
            w, c = time.perf_counter(), time.process_time()
            gate.process(frame, 0.1 * (i + 1))  # type: ignore[attr-defined]
            wall[name].append((time.perf_counter() - w) * 1000)
            cpu[name].append((time.process_time() - c) * 1000)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--photo", type=Path, default=REPO / "tests/data/faces/rose_leslie_01.jpg")
    args = ap.parse_args()
    n = args.iterations
    frame = frame_720p(args.photo)
    token = issue_pass(generate_private_key(), "central-1", pass_id="bench-0001",
                       site="default-site", doors=["door"], valid_from=0, valid_to=4e9, uses=1)
    coded = with_code(frame, token)
    reader = QrReader()
    if reader.read(coded) != [token] or reader.read(frame):
        raise SystemExit("bench_credentials: the code frame does not decode as expected")
    print(f"decode: {n} frames each", file=sys.stderr)
    decode = {"no_code": stats(timed(lambda: reader.read(frame), n)),
              "with_code": stats(timed(lambda: reader.read(coded), n))}

    with tempfile.TemporaryDirectory() as tmp:
        cfg = default_config()
        app = App(cfg, Path(tmp) / "state", boards={"main": SimulatedRelay()})
        try:
            gate_cfg = cfg.gates[0]
            off = app.gate(gate_cfg.model_copy(update={"qr": False}))
            on = app.gate(gate_cfg)
            every = app.gate(gate_cfg)
            every.qr_every = 1  # type: ignore[attr-defined]  # the worst case, for reference
            coded_gate = app.gate(gate_cfg)
            variants = {"qr_off": (off, frame), "qr_on": (on, frame),
                        "qr_every_frame": (every, frame), "qr_on_code_in_view": (coded_gate, coded)}
            interleaved(variants, 5)  # warm-up: sessions, caches
            print(f"face gate: {n} frames each, qr off / 1 in {cfg.access.qr.every_n_frames} / "
                  "every frame / code in view, interleaved", file=sys.stderr)
            wall, cpu = interleaved(variants, n)
        finally:
            app.close()
    gate = {k: stats(v) for k, v in wall.items()}
    gate_cpu = {k: stats(v) for k, v in cpu.items()}

    def added(table: dict) -> dict:
        base = table["qr_off"]
        return {k: {q: round(v[q] - base[q], 3) for q in ("p50", "p95")}
                for k, v in table.items() if k != "qr_off"}

    print(json.dumps({
        "frame": "1280x720",
        "qr_decode_ms": decode,
        "every_n_frames": cfg.access.qr.every_n_frames,
        "face_gate_frame_ms": gate,
        "added_ms": added(gate),
        "face_gate_frame_cpu_ms": gate_cpu,
        "added_cpu_ms": added(gate_cpu),
        "iterations": n,
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
