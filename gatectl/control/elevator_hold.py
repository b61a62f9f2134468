"""Elevator "hold doors open" while an e-bike is in the car, as a renewable hardware lease.

The hold contact is wired in parallel with the car's door-open button. It is never latched:
while an e-bike is reported, the controller renews a short board-timed pulse (``pulse_s``, every
``renew_s``), so if gatectl hangs or dies the hold lapses within one pulse and the lift goes
back into service. The alarm output (buzzer, voice module) is driven the same way.

- An *episode* is one object's stay in the car: it starts with the first report of a
  (pipeline-confirmed) e-bike, raises ``ebike_in_car`` (an alert, with the frame), and ends only
  when nothing has been reported for ``episode_gap_s``. A detector misses an object that stays
  in the car now and then; before episodes, each miss of ``release_after_s`` ended the hold and
  the next sighting started a fresh one, so a moped left in the car held it most of an hour
  (92.6% in the field report; `scripts/sim_elevator_hold.py` measures it).
- Within an episode the doors are held while the e-bike is reported; a hold pauses when it has
  not been reported for ``release_after_s`` and resumes when it is seen again.
- The holds of an episode together never last longer than ``cap_s``: then the doors are
  released and ``hold_cap_reached`` is raised for staff to act on (lift controllers "nudge"
  doors held too long anyway); the alarm keeps sounding while the e-bike is seen, and no new
  hold starts within the episode, nor for ``cooldown_s`` after the cap (a detection gap longer
  than ``episode_gap_s`` must not start the same object's hold all over again).
- An active fire alarm releases the hold at once and blocks any new one: in fire service the
  lift belongs to the fire brigade.
- Staff can release a hold remotely (a false alarm: a pram taken for a moped); like a capped hold,
  it does not come back within the episode nor within the cool-down.
"""

from __future__ import annotations

import math

from gatectl.control.actions import Action, Alarm, Latch, Notice, Pulse

IDLE, HOLDING, PAUSED, CAPPED, RELEASED = "idle", "holding", "paused", "capped", "released"


class ElevatorHold:
    def __init__(self, hold_output: str, alarm_output: str | None = None, *, pulse_s: float = 3.0,
                 renew_s: float = 1.0, release_after_s: float = 5.0, cap_s: float = 120.0,
                 episode_gap_s: float = 60.0, cooldown_s: float = 300.0):
        if renew_s >= pulse_s:
            raise ValueError("renew_s must be shorter than pulse_s, or the hold would flicker")
        if episode_gap_s < release_after_s:
            raise ValueError("episode_gap_s must not be shorter than release_after_s")
        self.hold_output = hold_output
        self.alarm_output = alarm_output
        self.pulse_s = pulse_s
        self.renew_s = renew_s
        self.release_after_s = release_after_s
        self.cap_s = cap_s
        self.episode_gap_s = episode_gap_s
        self.cooldown_s = cooldown_s
        self.state = IDLE
        self.fire = False
        self._started = 0.0  # start of the running hold
        self._held = 0.0  # hold time of the episode's finished holds
        self._last_seen: float | None = None
        self._last_pulse = 0.0
        self._cooldown_until = -math.inf

    @property
    def holding(self) -> bool:
        return self.state == HOLDING

    def held_in_episode(self, now: float) -> float:
        """Seconds the doors were held in the current episode, the running hold included."""
        return self._held + (now - self._started if self.state == HOLDING else 0.0)

    def _pulses(self, now: float) -> list[Action]:
        self._last_pulse = now
        out: list[Action] = []
        if self.state == HOLDING:
            out.append(Pulse(self.hold_output, self.pulse_s))
        if self.alarm_output:
            out.append(Pulse(self.alarm_output, self.pulse_s))
        return out

    def _off(self) -> list[Action]:
        """Hold contact (when holding) and alarm off now."""
        out: list[Action] = []
        if self.state == HOLDING:
            out.append(Latch(self.hold_output, False))
        if self.alarm_output:
            out.append(Latch(self.alarm_output, False))
        return out

    def _stop(self) -> list[Action]:
        """End the episode."""
        out = self._off()
        self.state = IDLE
        self._last_seen = None
        self._held = 0.0
        return out

    def ebike(self, now: float, detail: str = "e-bike in the car") -> list[Action]:
        """The pipeline confirms an e-bike in the car on this frame."""
        if self.fire:
            return []
        self._last_seen = now
        if self.state == IDLE:
            self._held = 0.0
            alert = Alarm("ebike_in_car", detail)
            if now < self._cooldown_until:
                self.state = CAPPED
                return [alert, *self._pulses(now),
                        Notice("hold_refused", f"cool-down after a capped or released hold, "
                                               f"{self._cooldown_until - now:.0f} s left")]
            self.state = HOLDING
            self._started = now
            return [alert, *self._pulses(now), Notice("hold_started", detail)]
        if self.state == PAUSED and self._held >= self.cap_s:
            self.state = CAPPED  # paused exactly as the cap ran out
            self._cooldown_until = now + self.cooldown_s
            return [
                *self._pulses(now),
                Alarm(
                    "hold_cap_reached",
                    f"e-bike still in the car after {self.cap_s:g} s of holds; no new hold",
                ),
            ]
        if self.state == PAUSED:
            self.state = HOLDING
            self._started = now
            return [
                *self._pulses(now),
                Notice("hold_resumed", f"seen again; {self._held:.0f} of {self.cap_s:g} s used"),
            ]
        return []

    def tick(self, now: float) -> list[Action]:
        if self.state == IDLE or self._last_seen is None:
            return []
        unseen = now - self._last_seen
        if self.state == HOLDING:
            if unseen >= self.release_after_s:
                held = now - self._started
                out = self._off()
                self._held += held
                self.state = PAUSED
                return [*out, Notice("hold_ended", f"e-bike gone; hold lasted {held:.0f} s")]
            if self.held_in_episode(now) >= self.cap_s:
                self._held = self.cap_s
                self.state = CAPPED
                self._cooldown_until = now + self.cooldown_s
                return [
                    Latch(self.hold_output, False),
                    Alarm(
                        "hold_cap_reached",
                        f"e-bike still in the car after {self.cap_s:g} s of holds; "
                        f"doors released, no new hold for {self.cooldown_s:g} s",
                    ),
                ]
        elif unseen >= self.episode_gap_s:
            held = self._held
            return [
                *self._stop(),
                Notice(
                    "ebike_gone",
                    f"not seen for {self.episode_gap_s:g} s; doors held {held:.0f} s in all",
                ),
            ]
        if (
            self.state in (HOLDING, CAPPED)
            and unseen < self.release_after_s
            and now - self._last_pulse >= self.renew_s
        ):
            return self._pulses(now)
        return []

    def restore(self, now: float) -> list[Action]:
        """After a board outage (it starts all off): renew the running hold and alarm now."""
        return self._pulses(now) if self.state in (HOLDING, CAPPED) else []

    def release(self, now: float, who: str = "remote") -> list[Action]:
        """Let the car go now; the alarm stops too. No new hold within the episode or the
        cool-down."""
        if self.state in (IDLE, RELEASED):
            return []
        held = self.held_in_episode(now)
        out = self._off()
        self._held = held
        self.state = RELEASED
        self._cooldown_until = now + self.cooldown_s
        return [*out, Notice("hold_released", f"by {who} after {held:.0f} s")]

    def fire_alarm(self, now: float, active: bool) -> list[Action]:
        if active == self.fire:
            return []
        self.fire = active
        if not active:
            return [Notice("fire_alarm", "cleared")]
        if self.state == IDLE:
            return [Notice("fire_alarm", "active; no hold")]
        return [*self._stop(), Notice("fire_alarm", "active; hold released")]


class ContactConfirm:
    """An AI camera's ``ebike_detected`` alarm contact -> the reports `ElevatorHold.ebike` takes.

    The contact confirms once it has read active on every poll for ``confirm_s``. A time, not
    N of M polls: polls are not frames - their period is the board's ``poll_ms`` and the
    supervisor's load, so a count would mean a different duration on every site - and what must
    be rejected (contact bounce, a camera's momentary trigger, interference on a long cable) is
    told by how long it lasts; the camera has already confirmed over its own frames. Once
    confirmed, every poll with the contact still active is a report; an opening ends the
    confirmation (a re-closure confirms again, and the hold bridges the gap for
    ``release_after_s``, as it does for a camera gate's missed frames).
    """

    def __init__(self, confirm_s: float):
        self.confirm_s = confirm_s
        self._since: float | None = None  # first poll of the current closure

    def update(self, now: float, active: bool) -> bool:
        """The contact's reading at ``now`` (its board unreachable reads as not active: an
        elevator's safe state is not held); True when it reports an e-bike."""
        if not active:
            self._since = None
            return False
        if self._since is None:
            self._since = now
        return now - self._since >= self.confirm_s


class ReportConfirm:
    """A camera's pushed reports (`web.push`) -> the reports `ElevatorHold.ebike` takes.

    Reports are events, not a level: each one means "seen now" and counts for ``active_s``.
    A run of reports, each within ``active_s`` of the last, confirms once it has lasted
    ``confirm_s`` (first to latest report) - one report alone never holds a car unless
    ``confirm_s`` is 0 - and then every poll within ``active_s`` of the latest report is a
    report. "Gone" ends the run at once."""

    def __init__(self, confirm_s: float, active_s: float):
        self.confirm_s = confirm_s
        self.active_s = active_s
        self._first: float | None = None
        self._last: float | None = None

    def report(self, now: float, seen: bool) -> None:
        if not seen:
            self._first = self._last = None
            return
        if self._last is None or now - self._last > self.active_s:
            self._first = now
        self._last = now

    def update(self, now: float) -> bool:
        """True when the run of reports confirms an e-bike at ``now``."""
        if self._first is None or self._last is None or now - self._last > self.active_s:
            return False
        return self._last - self._first >= self.confirm_s

