"""The pedestrian face gate: tracks, votes, fusion, liveness per track, rules, then the door."""

from __future__ import annotations

from gatectl.config.analysis import MIN_FACE_THRESHOLD
from gatectl.config.gates import FaceGateConfig
from gatectl.gates.base import GateKind, GateParts
from gatectl.gates.face.gate import FaceGate
from gatectl.gates.face.replay import FaceReplay
from gatectl.vision.qr import QrReader


def build(parts: GateParts, gate: FaceGateConfig) -> FaceGate:
    cfg = parts.cfg
    watched = any(t.camera == gate.camera and t.faces for t in cfg.analysis.tailgate)
    analyzer = parts.analyzer(
        gate.quality,
        gate.thresholds.detect,
        gate.detect_long_side,
        gate.liveness,
        gate.thresholds.liveness,
        MIN_FACE_THRESHOLD if watched else None,  # a tailgate watch takes this gate's faces
    )
    fg = FaceGate(
        gate,
        cfg.door(gate.door),
        analyzer,
        parts.directory,
        parts.recorder,
        parts.access_point(gate.door),
        QrReader() if gate.qr else None,
        cfg.access.qr.every_n_frames,
        cfg.access.qr.repeat_s,
    )
    parts.controls.set_door_camera(gate.door, fg.recent_frame)
    fg.on_unknown = parts.strangers.add
    return fg


KIND = GateKind(build=build, replay=FaceReplay)
