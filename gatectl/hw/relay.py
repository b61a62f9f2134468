"""The relay interface every actuator uses, and a simulated board for demos, replay and tests.

Doors are opened with *pulses* (the board, or the simulation, switches the output off by itself
after the given time) rather than on/off pairs, so no crash between "on" and "off" can leave a
door unlocked. Real serial drivers (Modbus RTU, LCUS) implement the same interface.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("gatectl.relay")


class Relay(Protocol):
    def pulse(self, channel: int, seconds: float) -> None:
        """Energise ``channel`` for ``seconds``; the output drops by itself afterwards."""

    def all_off(self) -> None:
        """Drive every output to its safe (de-energised) state: at start-up and shutdown."""

    def is_on(self, channel: int) -> bool: ...


@dataclass(frozen=True)
class PulseRecord:
    channel: int
    seconds: float
    at: float


class SimulatedRelay:
    """A relay board in memory with hardware-style timed pulses: an output is on while
    ``clock() < deadline``, so it turns itself off even if nobody calls it again."""

    def __init__(self, channels: int = 8, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.channels = channels
        self._deadline = [0.0] * channels
        self._lock = threading.Lock()
        self.history: list[PulseRecord] = []

    def _check(self, channel: int) -> None:
        if not 0 <= channel < self.channels:
            raise ValueError(f"relay channel {channel} out of range 0..{self.channels - 1}")

    def pulse(self, channel: int, seconds: float) -> None:
        self._check(channel)
        now = self.clock()
        with self._lock:
            self._deadline[channel] = max(self._deadline[channel], now + seconds)
            self.history.append(PulseRecord(channel, seconds, now))
        log.info("simulated relay: channel %d on for %.1f s", channel, seconds)

    def all_off(self) -> None:
        with self._lock:
            self._deadline = [0.0] * self.channels

    def is_on(self, channel: int) -> bool:
        self._check(channel)
        return self.clock() < self._deadline[channel]


def make_relay(driver: str) -> Relay:
    if driver == "simulated":
        return SimulatedRelay()
    raise ValueError(f"relay.driver: unknown driver '{driver}'")
