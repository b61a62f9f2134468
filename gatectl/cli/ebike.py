"""`gatectl ebike collect`: a site's own training frames from an e-bike gate's camera.

The frames worth labelling are the ones the detector is unsure about or acts on: every frame
with an e-bike at or above the gate's threshold (an alert candidate), every frame with one
between ``--low`` and the threshold (the hard cases), and one empty frame every
``--empty-every`` seconds (negatives). They go into DIR in the layout
``scripts/train_detector.py --data DIR`` reads: ``images/`` beside ``labels/`` (one YOLO
``class cx cy w h`` line per box, pre-labelled with the detections for the labeller to correct),
plus ``metadata.jsonl`` (one line per image) and ``classes.txt`` (the class index map).

The frames are personal data (people ride in the car): nothing is written outside DIR (the
scratch store the gate needs lives in DIR and is removed), every file is 0600 and every folder
0700, and the command says so. Collecting never holds the car: only the gate's detector runs,
never its confirmation or hold.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Generator
from pathlib import Path

import cv2
import numpy as np

from gatectl.cli.common import AppFactory
from gatectl.config.gates import EbikeGateConfig
from gatectl.config.hardware import CameraConfig
from gatectl.core.errors import InvariantError, UsageError
from gatectl.core.safe_text import shown
from gatectl.gates.ebike.gate import EbikeGate
from gatectl.runtime.app import App
from gatectl.runtime.replay import replay_gate
from gatectl.sources.camera import SourceError, open_source
from gatectl.sources.media import STILL_FPS, MediaError, iter_media
from gatectl.store.recorder import free_disk_mb
from gatectl.vision.models import file_sha256
from gatectl.vision.objects import Detection

MARKER = "collect.json"  # what makes a folder a collect folder (refused otherwise)
SCRATCH = ".scratch"  # the gate's throw-away store, inside DIR, removed at the end
MIN_FREE_MB = 200.0  # stop before the disk the frames share with the event store fills
#: YOLO class index of the pre-labels: e-bikes are 0, which `train_detector.py --ebike-ids`
#: takes by default; a bicycle the gate counts (bicycles not allowed) is 1.
CLASS_NAMES = ("ebike", "bicycle")
PRIVACY = ("gatectl: the saved frames show people: they are personal data; keep DIR private "
           "(0700) and delete it once the model is trained")


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=False, exist_ok=True)
    path.chmod(0o700)


def _write_private(path: Path, data: bytes, append: bool = False) -> None:
    """Write ``data`` to a file only the service user can read, whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _open_folder(out: Path, gate: str) -> int:
    """Create or reopen the collect folder; returns the images already in it. A folder that
    exists and is not one (no marker, not empty) is refused: collect never mixes its files into
    someone else's."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {shown(str(out), 200)}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise UsageError(f"--out {shown(str(out), 200)}: exists and is not a collect folder "
                         f"(no {MARKER}); give a new or empty folder")
    if not out.parent.is_dir():
        raise UsageError(f"--out {shown(str(out), 200)}: no folder {shown(str(out.parent), 200)}")
    _private_dir(out)
    for sub in ("images", "labels"):
        _private_dir(out / sub)
    _write_private(out / MARKER, json.dumps({"format": 1, "gate": gate}).encode() + b"\n")
    _write_private(out / "classes.txt", "".join(f"{c}\n" for c in CLASS_NAMES).encode())
    return sum(1 for _ in (out / "images").glob("*.jpg"))


def _yolo_lines(dets: list[Detection], w: int, h: int) -> str:
    rows = []
    for d in dets:
        x1, y1, x2, y2 = (float(v) for v in np.clip(d.box, 0, [w, h, w, h]))
        cls = 1 if d.label == "bicycle" else 0
        rows.append(f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                    f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n")
    return "".join(rows)


def cmd_ebike(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """The gate and its source are checked before DIR is touched, so a typo writes nothing."""
    out: Path = args.out
    print(PRIVACY, file=sys.stderr)
    existing: int | None = None
    app: App | None = None
    frames: Generator[tuple[float, np.ndarray] | None] | None = None
    try:
        base = app_factory(simulated=True)
        gate_cfg = replay_gate(base.cfg, args.gate)
        if not isinstance(gate_cfg, EbikeGateConfig):
            raise UsageError(f"--gate {shown(args.gate, 40)}: a {gate_cfg.kind} gate, not an "
                             "e-bike gate")
        if args.low >= gate_cfg.detector.threshold:
            raise UsageError(f"--low {args.low:g}: not below the gate's threshold "
                             f"{gate_cfg.detector.threshold:g}")
        camera = next(c for c in base.cfg.cameras if c.name == gate_cfg.camera)
        frames = _frames(camera if args.source is None
                         else type(camera)(name=camera.name, source=args.source))
        next(frames)  # opened: a missing file/folder/URL is one line here, before DIR is touched
        existing = _open_folder(out, gate_cfg.name)
        base.close()
        _private_dir(out / SCRATCH)
        app = app_factory(simulated=True, scratch=out / SCRATCH)
        gate = app.gate(gate_cfg)
        if not isinstance(gate, EbikeGate):  # the registry builds an EbikeGate for this kind
            raise InvariantError(f"gate {gate_cfg.name}: built a {type(gate).__name__}")
        return _collect(args, app, gate, frames, existing)
    except SourceError as exc:
        raise UsageError(f"--source: {exc}") from None
    finally:
        if frames is not None:
            frames.close()
        if app is not None:
            app.close()
        if existing is not None:
            shutil.rmtree(out / SCRATCH, ignore_errors=True)


def _frames(camera: CameraConfig) -> Generator[tuple[float, np.ndarray] | None]:
    """``None`` once the source is open, then (seconds into the source, frame) until its end.

    A file or folder is decoded as fast as the detector goes, timed by the media itself
    (`sources.media.iter_media`: a video's timestamps, stills ``1 / STILL_FPS`` apart), so an hour
    of video is not an hour of waiting; a corrupt file in a folder is one line on stderr and is
    skipped. A camera or URL is read as `run` reads it (`sources.camera`), timed by the clock.
    """
    if camera.kind in ("video", "images"):
        if not Path(camera.source).exists():
            raise UsageError(f"--source {shown(camera.source, 200)}: no such file or folder")
        yield None
        base, last_t, current = 0.0, -1.0 / STILL_FPS, None
        for item in iter_media([camera.source]):
            if isinstance(item, MediaError):
                print(f"gatectl: {item}", file=sys.stderr)
                continue
            if item.source != current:
                current, base = item.source, last_t + 1.0 / STILL_FPS
            last_t = base + item.t
            yield last_t, item.image
        return
    source = open_source(camera)
    source.open()
    start = time.monotonic()
    try:
        yield None
        while (image := source.read()) is not None:
            yield time.monotonic() - start, image
    finally:
        source.close()


def _collect(args: argparse.Namespace, app: App, gate: EbikeGate,
             frames: Generator[tuple[float, np.ndarray] | None], existing: int) -> int:
    """Read frames until the source ends or DIR holds ``--max``; save the candidates."""
    out: Path = args.out
    d = gate.cfg.detector
    sha = file_sha256(d.file) if d.file else app.models.registry[d.model].sha256
    model = {"name": str(d.file.name) if d.file else d.model, "sha256": sha[:12]}
    gate.detector.threshold = args.low  # see the hard cases too; the gate never decides here
    counts = {"alert": 0, "low": 0, "empty": 0}
    saved, last_empty = existing, -float("inf")
    try:
        for item in frames:
            if saved >= args.max:
                break
            if item is None:
                continue
            t, image = item
            dets = gate.find(image)
            if any(x.score >= d.threshold for x in dets):
                reason = "alert"
            elif dets:
                reason = "low"
            elif t - last_empty >= args.empty_every:
                reason, last_empty = "empty", t
            else:
                continue
            if free_disk_mb(out) < MIN_FREE_MB:
                raise UsageError(f"--out {shown(str(out), 200)}: less than {MIN_FREE_MB:g} MB "
                                 f"free; stopped after {saved} frames")
            ok, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                continue
            stem = f"{gate.cfg.name}_{int(time.time() * 1000)}_{saved:06d}"
            h, w = image.shape[:2]
            _write_private(out / "images" / f"{stem}.jpg", jpg.tobytes())
            _write_private(out / "labels" / f"{stem}.txt", _yolo_lines(dets, w, h).encode())
            row = {
                "file": f"images/{stem}.jpg",
                "time": round(app.clock(), 3),
                "gate": gate.cfg.name,
                "reason": reason,
                "boxes": [{"class": x.label, "score": round(x.score, 4),
                           "box": [round(float(v)) for v in x.box]} for x in dets],
                "model": model,
            }
            _write_private(out / "metadata.jsonl",
                           json.dumps(row, ensure_ascii=False).encode() + b"\n", append=True)
            saved += 1
            counts[reason] += 1
    finally:
        frames.close()  # the camera is released as soon as collecting ends
    print(f"saved {sum(counts.values())} frames in {out} ({counts['alert']} alert, "
          f"{counts['low']} low, {counts['empty']} empty; {saved} in all, --max {args.max}); "
          "label them (YOLO), then scripts/train_detector.py --data " + str(out))
    return 0
