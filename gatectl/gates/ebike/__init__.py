"""The elevator e-bike gate: detections in the car region, N-of-M confirmation, the hold."""

from __future__ import annotations

from gatectl.config.gates import EbikeGateConfig
from gatectl.gates.base import GateKind, GateParts
from gatectl.gates.ebike.gate import EbikeGate
from gatectl.gates.ebike.replay import EbikeReplay
from gatectl.vision.objects import open_detector


def build(parts: GateParts, gate: EbikeGateConfig) -> EbikeGate:
    cfg = parts.cfg
    d = gate.detector
    session = parts.models.session_for_file(d.file) if d.file else parts.models.session(d.model)
    index = [g.name for g in cfg.gates].index(gate.name)
    lowest = min(d.threshold, gate.track_threshold or d.threshold)  # the gate sorts weak/strong
    detector = open_detector(
        session, d.family, d.input_size, d.classes, lowest, d.tiles, f"gates[{index}].detector"
    )
    elevator = next(e for e in cfg.elevators if e.name == gate.elevator)
    return EbikeGate(
        gate,
        detector,
        parts.controls,
        parts.store,
        elevator.cap_s,
        parts.clock,
        display=parts.display,
    )


KIND = GateKind(build=build, replay=EbikeReplay)
