"""One way for every I/O owner to say how it is doing: a ``health()`` method returning a small
JSON-ready dict of state words and counters, cheap and safe to call from any thread.

Cameras, relay boards, the sync client, the event recorder, the controls, the clock watch and
every gate implement it; `gatectl.runtime.health.HealthCollector` is the one place that reads
them all, for the status topic and the doctor (and, later, metrics).
"""

from __future__ import annotations

from typing import Any, Protocol


class HealthSource(Protocol):
    def health(self) -> dict[str, Any]:
        """State and counters, JSON-ready."""
        ...


def pick(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The fields of ``d`` the status topic carries (None where the source has no such field),
    so every board or camera reads the same whatever its driver."""
    return {k: d.get(k) for k in keys}
