"""How `gatectl replay` reports an e-bike gate: a row when an e-bike is confirmed (the hold
starts) or gone, with the frame's boxes, and a `clear` row for an input where none was confirmed
(with the best detection seen, to tune the threshold)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gatectl.gates.base import Decision
from gatectl.gates.ebike.gate import EbikeGate
from gatectl.sources.media import MediaFrame
from gatectl.vision.objects import Detection


class EbikeReplay:
    def __init__(self, gate: EbikeGate):
        self.gate = gate
        self.source: str | None = None
        self.confirmed = False
        self.best: Detection | None = None

    def begin(self, source: str) -> None:
        self.source, self.confirmed, self.best = source, False, None

    def frame(
        self, frame: MediaFrame | None, decisions: Sequence[Decision]
    ) -> list[dict[str, Any]]:
        if frame is None:
            return []
        rows = []
        for d in decisions:
            self.confirmed = self.confirmed or d.decision == "ebike"
            rows.append(
                {
                    "source": frame.source,
                    "frame": frame.index,
                    **d.as_json(),
                    "boxes": [[round(float(v)) for v in x.box] for x in self.gate.last_detections],
                }
            )
        for det in self.gate.last_detections:
            if self.best is None or det.score > self.best.score:
                self.best = det
        return rows

    def end(self) -> list[dict[str, Any]]:
        if self.confirmed:
            return []
        best = self.best
        return [
            {
                "source": self.source,
                "frame": None,
                "gate": self.gate.cfg.name,
                "decision": "clear",
                "reason": "no e-bike confirmed",
                "score": None if best is None else round(best.score, 4),
                "label": None if best is None else best.label,
            }
        ]
