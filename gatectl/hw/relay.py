"""The relay-board interface every actuator uses, and an in-memory board for demos and tests.

Outputs are driven with *pulses* whose end the board enforces (hardware-timed "flash on"), or,
on latch-only boards, a deadline the driver's own thread enforces: no crash between "on" and
"off" in the caller can leave a door unlocked. The serial drivers (`gatectl.hw.serial`: one port
thread, a dialect per board family) implement the same interface; only the driver's thread
touches its port, callers' commands are queued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("gatectl.relay")


class BoardError(Exception):
    """A relay board cannot be reached or refuses a command; one line naming the port."""


class Relay(Protocol):
    """One relay board. ``pulse``, ``set`` and ``all_off`` return at once (queued to the port's
    thread); ``inputs`` returns the last polled snapshot."""

    hw_pulse: bool  # True when the board itself times pulses (survives a crash of gatectl)

    def pulse(self, channel: int, seconds: float) -> None:
        """Energise ``channel`` for ``seconds``; it drops by itself afterwards."""

    def set(self, channel: int, on: bool) -> None:
        """Latch a channel. Only for states that must persist (a fail-safe door released by the
        fire alarm); everything else uses pulse()."""

    def all_off(self) -> None:
        """Every output to its safe, de-energised state (start-up, shutdown, reconnect)."""

    def is_on(self, channel: int) -> bool:
        """Last known state of a channel."""

    def inputs(self) -> list[bool] | None:
        """Raw discrete inputs from the last poll; None while the board is unreachable."""

    def status(self) -> dict:
        """Health for `doctor` and the status topic: state, port, counters."""

    def close(self) -> None:
        """All off, then release the port."""


@dataclass(frozen=True)
class PulseRecord:
    channel: int
    seconds: float
    at: float


class SimulatedRelay:
    """A relay board in memory with hardware-style timed pulses: an output is on while
    ``clock() < deadline``, so it turns itself off even if nobody calls it again."""

    hw_pulse = True

    def __init__(self, channels: int = 8, inputs: int = 8,
                 clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.channels = channels
        self._deadline = [0.0] * channels
        self._inputs = [False] * inputs
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

    def set(self, channel: int, on: bool) -> None:
        self._check(channel)
        with self._lock:
            self._deadline[channel] = float("inf") if on else 0.0

    def all_off(self) -> None:
        with self._lock:
            self._deadline = [0.0] * self.channels

    def is_on(self, channel: int) -> bool:
        self._check(channel)
        return self.clock() < self._deadline[channel]

    def set_input(self, index: int, active: bool) -> None:
        """Test and demo hook: what a wired contact would report."""
        with self._lock:
            self._inputs[index] = active

    def inputs(self) -> list[bool] | None:
        with self._lock:
            return list(self._inputs)

    def status(self) -> dict:
        return {
            "driver": "simulated",
            "state": "online",
            "on": [self.is_on(c) for c in range(self.channels)],
        }

    def close(self) -> None:
        self.all_off()
