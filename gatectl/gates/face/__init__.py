"""The pedestrian face gate: tracks, votes, fusion, liveness per track, rules, then the door."""

from __future__ import annotations

from gatectl.config.gates import FaceGateConfig
from gatectl.domain.access import make_entry_checks
from gatectl.gates.base import GateKind, GateParts
from gatectl.gates.face.gate import FaceGate
from gatectl.gates.face.replay import FaceReplay


def build(parts: GateParts, gate: FaceGateConfig) -> FaceGate:
    analyzer = parts.analyzer(
        gate.quality,
        gate.thresholds.detect,
        gate.detect_long_side,
        gate.liveness,
        gate.thresholds.liveness,
    )
    cfg = parts.cfg
    fg = FaceGate(
        gate,
        cfg.door(gate.door),
        analyzer,
        parts.directory,
        parts.recorder,
        parts.controls,
        make_entry_checks(cfg.policy.entry_checks),
        cfg.policy.reenroll_after_days,
        parts.rule_time,
    )
    parts.controls.set_door_camera(gate.door, fg.recent_frame)
    fg.on_unknown = parts.strangers.add
    return fg


KIND = GateKind(build=build, replay=FaceReplay)
