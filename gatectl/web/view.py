"""What the status page reads from the running daemon: one small protocol, implemented by
`gatectl.runtime.status_view` (and by a stand-in in tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from gatectl.domain.records import EventRow
from gatectl.gates.base import GateView


class StatusView(Protocol):
    def health(self) -> dict[str, Any]:
        """The health collector's dict (what the status topic carries), with ``sync`` when
        central sync runs. Safe to call from the server's thread."""
        ...

    def cameras(self) -> list[str]:
        """The cameras with a live view, in config order."""
        ...

    def frame(self, camera: str) -> GateView | None:
        """The newest analysed frame of ``camera`` with what its gate(s) found; None before the
        first frame or for an unknown camera."""
        ...

    def states(self) -> dict[str, str]:
        """One word per door, barrier and elevator (``door:lobby`` -> ``locked``)."""
        ...

    def events(self, limit: int) -> list[EventRow]:
        """The most recent events, newest first."""
        ...

    def snapshot(self, event_id: str) -> Path | None:
        """The snapshot file of a recent event, None when it has none (or is not recent)."""
        ...

    def announcement(self) -> str | None:
        """The announcement shown right now, if any."""
        ...
