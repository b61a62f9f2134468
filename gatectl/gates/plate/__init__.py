"""The vehicle lane: plates across frames with a per-character vote, vehicle rules, the barrier."""

from __future__ import annotations

from gatectl.config.gates import PlateGateConfig
from gatectl.gates.base import GateKind, GateParts
from gatectl.gates.plate.lane import PlateLane
from gatectl.gates.plate.replay import PlateReplay
from gatectl.vision.plate.analyzer import PlateAnalyzer


def build(parts: GateParts, gate: PlateGateConfig) -> PlateLane:
    analyzer = PlateAnalyzer(parts.models, gate.detector_size, min(0.5, gate.thresholds.detect))
    return PlateLane(gate, analyzer, parts.store, parts.recorder, parts.controls, parts.clock)


KIND = GateKind(build=build, replay=PlateReplay)
