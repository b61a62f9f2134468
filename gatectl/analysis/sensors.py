"""Sensor inputs: any board input with role ``sensor`` (hydrant pressure, manhole tilt, cabinet
tamper, water leak) becomes one alert event per debounced change, named after the sensor.

Debounce: a new level counts once it has held for the input's ``debounce_s`` on every poll, so
a bouncing contact raises nothing extra. Supervision: an end-of-line-resistor loop module turns
a cut or unplugged sensor cable into a second contact on the board (``fault_index``); while
that reads active (debounced the same way) the sensor is ``silent`` - one alert when it goes
silent, one when it comes back - and its own level is not believed. A sensor that is active at
start is reported (a leak found at boot is still a leak); a normal one is just the start state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from gatectl.config.hardware import InputConfig
from gatectl.hw.relay import Relay
from gatectl.store.recorder import EventRecorder

log = logging.getLogger("gatectl.sensors")


class Debounce:
    """A level that changes only after holding ``hold_s``: pure, fed readings and a time."""

    def __init__(self, hold_s: float):
        self.hold_s = hold_s
        self.level: bool | None = None  # the debounced level (None: not settled yet)
        self._pending: tuple[bool, float] | None = None  # (candidate level, since)

    def update(self, now: float, raw: bool) -> bool | None:
        """Feed one reading; the new debounced level when it changed (or first settled)."""
        if raw == self.level:
            self._pending = None
            return None
        if self._pending is None or self._pending[0] != raw:
            self._pending = (raw, now)
        if now - self._pending[1] < self.hold_s:
            return None
        self.level, self._pending = raw, None
        return raw


@dataclass
class _Sensor:
    cfg: InputConfig
    level: Debounce
    fault: Debounce | None


class SensorWatch:
    """Reads the boards' last input snapshots on the supervisor's poll and records the sensors'
    debounced changes (`EventRecorder`: the alert rows sync like every event)."""

    def __init__(self, inputs: list[InputConfig], boards: dict[str, Relay],
                 recorder: EventRecorder, clock: Callable[[], float]):
        self.boards = boards
        self.recorder = recorder
        self.clock = clock
        self.sensors = [
            _Sensor(i, Debounce(i.debounce_s),
                    None if i.fault_index is None else Debounce(i.debounce_s))
            for i in inputs if i.role == "sensor"
        ]
        self.alerts = 0

    def poll(self) -> None:
        if not self.sensors:
            return
        now = self.clock()
        raw = {name: board.inputs() for name, board in self.boards.items()}
        for s in self.sensors:
            snap = raw.get(s.cfg.board)
            if snap is None or s.cfg.index >= len(snap):
                continue  # board unreachable: its outage is a system event of its own
            silent = s.fault.level if s.fault is not None else False
            if s.fault is not None and s.cfg.fault_index is not None \
                    and s.cfg.fault_index < len(snap):
                changed = s.fault.update(now, snap[s.cfg.fault_index])
                if changed is not None and (changed or silent is not None):
                    self._alert(s, "silent" if changed else "sensor",
                                f"{s.cfg.name} ({s.cfg.severity}) "
                                + ("reads open-circuit: no longer supervised" if changed
                                   else "loop restored"))
                silent = s.fault.level
            if silent or (s.fault is not None and silent is None):
                continue  # its level means nothing while the loop is open (or not settled)
            first = s.level.level is None
            changed = s.level.update(now, snap[s.cfg.index] != s.cfg.active_low)
            if changed is not None and (changed or not first):
                self._alert(s, "sensor", f"{s.cfg.name} ({s.cfg.severity}) "
                            + ("active" + (" at start" if first else "") if changed else "cleared"))

    def _alert(self, s: _Sensor, kind: str, detail: str) -> None:
        self.alerts += 1
        reason = f"{kind}: {detail}"
        level = logging.CRITICAL if s.cfg.severity == "critical" else logging.WARNING
        log.log(level, "%s", reason)
        self.recorder.record(s.cfg.name, "alert", "alert", reason)

    def health(self) -> dict[str, object]:
        return {"sensors": len(self.sensors), "alerts": self.alerts,
                "silent": [s.cfg.name for s in self.sensors if s.fault and s.fault.level]}
