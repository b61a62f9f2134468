"""One door: lock, contact and exit button as a state machine (no I/O, no clock of its own).

Semantics follow access-control practice (BACnet Access Door, 2N, Rosslare manuals):

- A grant or an exit request unlocks the door for ``unlock_seconds`` as a relay pulse the board
  times itself; the door relocks when it closes again (the passage is over, so a second person
  cannot follow on the same unlock) or when the time runs out, whichever is first.
- The door opening while locked, with no grant or exit request, is ``door_forced``.
- Open longer than ``held_open_s`` raises ``door_held_open`` once per opening.
- ``fail_mode = "safe"`` (a maglock on the relay's NC contact): an active fire alarm releases
  the door, latched, until the alarm clears. A fail-secure strike stays locked: its mechanical
  lever gives free egress, and power must not be what holds anyone in.
- Optional timed anti-passback: the same resident is refused again at this door within
  ``anti_passback_s`` (a face held to the camera twice, a photo passed back through the gate).
  The passes are also stored (`control.controls`), so a restart does not forget them.
"""

from __future__ import annotations

from gatectl.config.hardware import DoorConfig
from gatectl.control.actions import Action, Alarm, Latch, Notice, Pulse


class DoorController:
    def __init__(self, cfg: DoorConfig):
        self.cfg = cfg
        self._unlocked_until: float | None = None
        self._open_since: float | None = None
        self._held_reported = False
        self._fire = False
        self._last_pass: dict[int, float] = {}  # resident id -> time of their last grant here

    def _unlock(self, now: float) -> list[Action]:
        self._unlocked_until = now + self.cfg.unlock_seconds
        if self._fire and self.cfg.fail_mode == "safe":
            return []  # already released, latched; a pulse would not add anything
        return [Pulse(self.cfg.output, self.cfg.unlock_seconds)]

    def anti_passback_ok(self, resident_id: int | None, now: float) -> bool:
        """False when this resident was let through here less than ``anti_passback_s`` ago."""
        window = self.cfg.anti_passback_s
        if resident_id is None or window <= 0:
            return True
        last = self._last_pass.get(resident_id)
        return last is None or now - last >= window

    def restore_passes(self, passes: dict[int, float]) -> None:
        """Passes remembered from before a restart (resident id -> time on this controller's
        clock), so anti-passback does not start from a clean slate."""
        self._last_pass.update(passes)

    def grant(self, now: float, resident_id: int | None = None) -> list[Action]:
        if resident_id is not None and self.cfg.anti_passback_s > 0:
            horizon = now - self.cfg.anti_passback_s  # forget the expired ones: bounded memory
            self._last_pass = {r: t for r, t in self._last_pass.items() if t > horizon}
            self._last_pass[resident_id] = now
        return self._unlock(now)

    def exit_request(self, now: float) -> list[Action]:
        """Request-to-exit button: opens without a face, and says so in the log."""
        return [*self._unlock(now), Notice("exit_request")]

    def contact(self, now: float, is_open: bool) -> list[Action]:
        """The door contact changed: ``is_open`` True when the door leaf left its frame."""
        if is_open:
            if self._open_since is not None:
                return []
            self._open_since = now
            self._held_reported = False
            if self.unlocked(now) or (self._fire and self.cfg.fail_mode == "safe"):
                return []
            return [Alarm("door_forced", "opened while locked, without a grant or exit request")]
        if self._open_since is None:
            return []
        opened_for = now - self._open_since
        self._open_since = None
        actions: list[Action] = []
        if self._held_reported:
            actions.append(Notice("door_closed", f"after being held open {opened_for:.0f} s"))
        if self.unlocked(now):
            self._unlocked_until = None
            if not self._fire or self.cfg.fail_mode != "safe":
                actions.append(Latch(self.cfg.output, False))  # relock now: the passage is over
        return actions

    def tick(self, now: float) -> list[Action]:
        """The passing of time: unlock expiry and the held-open alarm."""
        if self._unlocked_until is not None and now >= self._unlocked_until:
            self._unlocked_until = None  # the board ended the pulse by itself
        if (self._open_since is not None and not self._held_reported
                and now - self._open_since >= self.cfg.held_open_s):
            self._held_reported = True
            return [Alarm("door_held_open", f"open longer than {self.cfg.held_open_s:g} s")]
        return []

    def fire_alarm(self, now: float, active: bool) -> list[Action]:
        if active == self._fire:
            return []
        self._fire = active
        if self.cfg.fail_mode != "safe":
            return [
                Notice(
                    "fire_alarm", "active; fail-secure door stays locked" if active else "cleared"
                )
            ]
        if active:
            return [
                Latch(self.cfg.output, True),
                Notice("fire_alarm", "active; fail-safe door released"),
            ]
        self._unlocked_until = None
        return [Latch(self.cfg.output, False), Notice("fire_alarm", "cleared; door locked again")]

    def restore(self, now: float) -> list[Action]:
        """What the outputs must be after a board came back from an outage (it starts all off):
        a fail-safe door released by an active fire alarm is released again. A pulse that was
        running is not resumed: a door never opens later than its grant."""
        if self._fire and self.cfg.fail_mode == "safe":
            return [Latch(self.cfg.output, True)]
        return []

    def unlocked(self, now: float) -> bool:
        return self._unlocked_until is not None and now < self._unlocked_until

    def state(self, now: float) -> str:
        """For status and `gatectl relay inputs`: released, open, held_open, unlocked, locked."""
        if self._fire and self.cfg.fail_mode == "safe":
            return "released"
        if self._open_since is not None:
            return "held_open" if self._held_reported else "open"
        return "unlocked" if self.unlocked(now) else "locked"
