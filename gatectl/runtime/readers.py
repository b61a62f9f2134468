"""The OSDP readers of a running device: one control panel thread per RS-485 port.

`gatectl run` starts them after the doors are in their safe state and stops them first on the
way out. Each reader hands its credentials to ``sink_for(reader.door)`` - the access decision,
which records the event and drives the door through the same controller as every other
credential - and reports its bus and reader states as ``system`` events through the recorder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gatectl.config.readers import ReaderConfig
from gatectl.domain.credentials import Outcome, Presented
from gatectl.hw.osdp.panel import ReaderPanel, Sink
from gatectl.store.recorder import EventRecorder

log = logging.getLogger("gatectl.readers")

UNWIRED = "card and PIN readers are not wired to an access decision in this build"


def unwired_sink(door: str) -> Sink:
    """The sink of a build without the access decision: every card and PIN is refused (red,
    long beep) and says why; never a grant."""

    def refuse(p: Presented) -> Outcome:
        return Outcome(False, UNWIRED)

    return refuse


class Readers:
    """Every ``[[readers]]`` entry, grouped by port into one `ReaderPanel` per bus."""

    def __init__(self, readers: list[ReaderConfig], sink_for: Callable[[str], Sink],
                 recorder: Callable[[], EventRecorder]):
        """``recorder``: gives the event recorder when the first event is recorded - not
        before `gatectl run` has checked (and maybe replaced) a corrupt store."""
        self.recorder = recorder
        buses: dict[str, list[ReaderConfig]] = {}
        for r in readers:
            buses.setdefault(r.port, []).append(r)
        self.panels = [ReaderPanel(port, rs[0].baud, rs, sink_for, self._report)
                       for port, rs in buses.items()]

    def _report(self, source: str, reason: str) -> None:
        self.recorder().record(source, "system", None, reason)

    def start(self) -> None:
        for p in self.panels:
            p.start()
        if self.panels:
            log.info("%d reader bus(es): %s", len(self.panels),
                     ", ".join(p.port for p in self.panels))

    def stop(self) -> None:
        for p in self.panels:
            p.stop()

    def dead(self) -> list[str]:
        """Ports whose panel or decision thread died (a bug): the supervisor withholds the
        watchdog, as for a dead gate worker."""
        return [p.port for p in self.panels if not p.alive()]

    def health(self) -> dict[str, Any]:
        return {p.port: p.health() for p in self.panels}
