"""A vehicle barrier arm: open pulse, and a guard input that keeps the arm off a vehicle.

Barrier controllers take momentary dry contacts ("open", optionally "close") and a loop detector
or photocell that reports a vehicle under the arm. gatectl never closes on a vehicle:

- ``open`` pulses the open contact.
- The arm is closed (close pulse, when the barrier has a close input) once a vehicle has
  passed: the guard went active and then clear; or after ``auto_close_s`` when no vehicle came.
- A close asked while the guard is active waits until it clears.
- The guard becoming active while the arm is closing re-opens it (the arm controller's own
  safety loop does the same; this covers arms wired without one).
"""

from __future__ import annotations

from gatectl.control.actions import Action, Notice, Pulse

CLOSED, OPEN, CLOSING = "closed", "open", "closing"


class BarrierController:
    def __init__(self, open_output: str, close_output: str | None = None, *, pulse_s: float = 0.5,
                 auto_close_s: float = 30.0, closing_s: float = 6.0):
        self.open_output = open_output
        self.close_output = close_output
        self.pulse_s = pulse_s
        self.auto_close_s = auto_close_s
        self.closing_s = closing_s
        self.state = CLOSED
        self.guard_active = False
        self._since = 0.0
        self._vehicle_seen = False
        self._close_wanted = False

    def open(self, now: float) -> list[Action]:
        self.state = OPEN
        self._since = now
        self._vehicle_seen = self.guard_active
        self._close_wanted = False
        return [Pulse(self.open_output, self.pulse_s)]

    def request_close(self, now: float) -> list[Action]:
        if self.state != OPEN:
            return []
        if self.guard_active:
            self._close_wanted = True
            return [Notice("close_deferred", "vehicle under the arm")]
        return self._close(now)

    def _close(self, now: float) -> list[Action]:
        self.state = CLOSING
        self._since = now
        self._close_wanted = False
        return [Pulse(self.close_output, self.pulse_s)] if self.close_output else []

    def guard(self, now: float, active: bool) -> list[Action]:
        if active == self.guard_active:
            return []
        self.guard_active = active
        if active:
            if self.state == CLOSING:
                return [*self.open(now), Notice("reopened", "vehicle under the closing arm")]
            self._vehicle_seen = True
            return []
        if self.state == OPEN and (self._vehicle_seen or self._close_wanted):
            return self._close(now)
        return []

    def tick(self, now: float) -> list[Action]:
        if self.state == CLOSING and now - self._since >= self.closing_s:
            self.state = CLOSED
        elif (self.state == OPEN and not self.guard_active and not self._vehicle_seen
              and now - self._since >= self.auto_close_s):
            return self._close(now)
        return []
