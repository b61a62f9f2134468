"""Elevator "hold doors open" while an e-bike is in the car, as a renewable hardware lease.

The hold contact is wired in parallel with the car's door-open button. It is never latched:
while an e-bike is reported, the controller renews a short board-timed pulse (``pulse_s``, every
``renew_s``), so if gatectl hangs or dies the hold lapses within one pulse and the lift goes
back into service. The alarm output (buzzer, voice module) is driven the same way.

- The hold starts on the first report of a (pipeline-confirmed) e-bike.
- It ends when no e-bike has been reported for ``release_after_s``.
- It never lasts longer than ``cap_s``: then the doors are released and ``hold_cap_reached``
  is raised for people to act on (lift controllers "nudge" doors held too long anyway); the
  alarm keeps sounding while the e-bike stays, and a new hold needs the e-bike to leave first.
- An active fire alarm releases the hold at once and blocks any new one: in fire service the
  lift belongs to the fire brigade.
- Staff can release a hold remotely (a false alarm: a pram taken for a moped); like a capped hold,
  it does not come back until the object has left the car.
"""

from __future__ import annotations

from gatectl.control.actions import Action, Alarm, Latch, Notice, Pulse

IDLE, HOLDING, CAPPED, RELEASED = "idle", "holding", "capped", "released"


class ElevatorHold:
    def __init__(self, hold_output: str, alarm_output: str | None = None, *, pulse_s: float = 3.0,
                 renew_s: float = 1.0, release_after_s: float = 5.0, cap_s: float = 120.0):
        if renew_s >= pulse_s:
            raise ValueError("renew_s must be shorter than pulse_s, or the hold would flicker")
        self.hold_output = hold_output
        self.alarm_output = alarm_output
        self.pulse_s = pulse_s
        self.renew_s = renew_s
        self.release_after_s = release_after_s
        self.cap_s = cap_s
        self.state = IDLE
        self.fire = False
        self._started = 0.0
        self._last_seen: float | None = None
        self._last_pulse = 0.0

    @property
    def holding(self) -> bool:
        return self.state == HOLDING

    def _pulses(self, now: float) -> list[Action]:
        self._last_pulse = now
        out: list[Action] = []
        if self.state == HOLDING:
            out.append(Pulse(self.hold_output, self.pulse_s))
        if self.alarm_output:
            out.append(Pulse(self.alarm_output, self.pulse_s))
        return out

    def _stop(self) -> list[Action]:
        out: list[Action] = []
        if self.state == HOLDING:
            out.append(Latch(self.hold_output, False))
        if self.alarm_output:
            out.append(Latch(self.alarm_output, False))
        self.state = IDLE
        self._last_seen = None
        return out

    def ebike(self, now: float) -> list[Action]:
        """The pipeline confirms an e-bike in the car on this frame."""
        self._last_seen = now
        if self.fire or self.state != IDLE:
            return []
        self.state = HOLDING
        self._started = now
        return [*self._pulses(now), Notice("hold_started", "e-bike in the car")]

    def tick(self, now: float) -> list[Action]:
        if self.state == IDLE or self._last_seen is None:
            return []
        if now - self._last_seen >= self.release_after_s:
            held = now - self._started
            what = "hold_ended" if self.state == HOLDING else "ebike_gone"
            return [*self._stop(), Notice(what, f"e-bike gone; hold lasted {held:.0f} s")]
        if self.state == HOLDING and now - self._started >= self.cap_s:
            self.state = CAPPED
            return [Latch(self.hold_output, False),
                    Alarm("hold_cap_reached", f"e-bike still in the car after {self.cap_s:g} s; doors released")]
        if self.state != RELEASED and now - self._last_pulse >= self.renew_s:
            return self._pulses(now)
        return []

    def restore(self, now: float) -> list[Action]:
        """After a board outage (it starts all off): renew the running hold and alarm now."""
        return self._pulses(now) if self.state in (HOLDING, CAPPED) else []

    def release(self, now: float, who: str = "remote") -> list[Action]:
        """Let the car go now; the alarm stops too. No new hold until the object has gone."""
        if self.state == IDLE:
            return []
        out: list[Action] = []
        if self.state == HOLDING:
            out.append(Latch(self.hold_output, False))
        if self.alarm_output:
            out.append(Latch(self.alarm_output, False))
        self.state = RELEASED
        return [*out, Notice("hold_released", f"by {who} after {now - self._started:.0f} s")]

    def fire_alarm(self, now: float, active: bool) -> list[Action]:
        if active == self.fire:
            return []
        self.fire = active
        if not active:
            return [Notice("fire_alarm", "cleared")]
        if self.state == IDLE:
            return [Notice("fire_alarm", "active; no hold")]
        return [*self._stop(), Notice("fire_alarm", "active; hold released")]
