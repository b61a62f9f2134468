"""How `gatectl replay` reports a plate lane: a row per vehicle decided (those still in view at
the end of an input included), and one `no_plate` row for an input with no vehicle decided."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gatectl.gates.base import Decision
from gatectl.gates.plate.lane import PlateLane
from gatectl.sources.media import MediaFrame


class PlateReplay:
    def __init__(self, lane: PlateLane):
        self.lane = lane
        self.source: str | None = None
        self.decided = False

    def begin(self, source: str) -> None:
        self.source, self.decided = source, False

    def frame(
        self, frame: MediaFrame | None, decisions: Sequence[Decision]
    ) -> list[dict[str, Any]]:
        self.decided = self.decided or bool(decisions)
        return [
            {"source": self.source, "frame": None if frame is None else frame.index, **d.as_json()}
            for d in decisions
        ]

    def end(self) -> list[dict[str, Any]]:
        if self.decided:
            return []
        return [
            {
                "source": self.source,
                "frame": None,
                "gate": self.lane.cfg.name,
                "plate": None,
                "color": None,
                "decision": "no_plate",
                "reason": "no plate found",
                "score": None,
            }
        ]
