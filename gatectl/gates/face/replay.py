"""How `gatectl replay` reports a face gate: a row per decision, and one `no_face` row for an
input where nothing was decided, saying why (no face found, or the first quality problem)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gatectl.gates.base import Decision
from gatectl.gates.face.gate import FaceGate
from gatectl.sources.media import MediaFrame


class FaceReplay:
    def __init__(self, gate: FaceGate):
        self.gate = gate
        self.source: str | None = None
        self.decided = self.seen = False
        self.problem: str | None = None

    def begin(self, source: str) -> None:
        self.source, self.decided, self.seen, self.problem = source, False, False, None

    def frame(
        self, frame: MediaFrame | None, decisions: Sequence[Decision]
    ) -> list[dict[str, Any]]:
        rows = [
            {"source": self.source, "frame": None if frame is None else frame.index, **d.as_json()}
            for d in decisions
        ]
        self.decided = self.decided or bool(decisions)
        if frame is not None:
            observed = self.gate.last_observations
            self.seen = self.seen or bool(observed)
            poor = [o.quality.problem for o in observed if not o.quality.ok]
            if poor and len(poor) == len(observed):
                self.problem = poor[0]
        return rows

    def end(self) -> list[dict[str, Any]]:
        if self.decided:
            return []
        return [
            {
                "source": self.source,
                "decision": "no_face",
                "resident": None,
                "reason": self.problem or ("no face found" if not self.seen else "no decision"),
                "score": None,
            }
        ]
