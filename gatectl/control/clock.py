"""Clock watch: is the wall clock fit for time-based rules right now?

A gate without a real-time clock boots with a stale time and is set by NTP later; a bad NTP
server can move it by weeks. Retention (delete what is older than N days) and the re-enrollment
rule (no pass for N days) act on differences of wall times, so a jump of 31 days deleted every
snapshot and one of 16 days locked every resident out. The monotonic clock cannot jump, so
the difference ``wall - monotonic`` (the offset) is constant while the wall clock only ticks
(NTP slewing moves it by at most 0.5 ms/s); a change of the offset by more than ``jump_s``
between two readings is a jump.

"Trusted" (what the rules wait for):

- at start the clock is trusted: nothing seen in this process contradicts it;
- after a jump it is untrusted, and time-based rules use the *trusted time base* instead: the
  last trusted wall time advanced by the monotonic clock (so they keep working as if the jump
  had not happened), and destructive ones (retention) do not run at all;
- it is trusted again when its offset returns to the trusted one (the jump was undone, e.g.
  NTP corrected a bad step), when it has agreed with the monotonic clock - no further jump -
  for ``settle_s``, or when an operator or the centre confirms the new time (``confirm``:
  `gatectl clock trust`, or the centre's signed ``clock.trust``, whose issue time must agree
  with the device clock to be accepted at all).
- an NTP sync reported by systemd-timesyncd does *not* restore trust by itself: plain NTP is
  unauthenticated and a bad server is one way the clock jumps. `gatectl clock status` shows it
  (``ntp_synced``) so the operator can decide.

The component is pure: it is fed (wall, monotonic) readings, so tests inject both clocks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gatectl.core.errors import InvariantError

# `gatectl clock trust` and the centre's signed `clock.trust` add one to this counter in the
# store's meta table; the daemon's supervisor confirms the clock when it rises (one path for both)
CLOCK_TRUST_REQUESTS = "clock_trust_requests"
# touched by systemd-timesyncd at each successful synchronisation (systemd >= 239)
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")



@dataclass(frozen=True)
class ClockJump:
    """One detected jump: ``seconds`` > 0 forward, < 0 backward; ``wall`` after the jump."""

    seconds: float
    wall: float

    def describe(self) -> str:
        size = abs(self.seconds)
        amount = f"{size / 86400:.1f} days" if size >= 86400 else f"{size:.0f} s"
        return f"clock jumped {'forward' if self.seconds > 0 else 'back'} by {amount}"


class ClockWatch:
    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        jump_s: float = 60.0,
        settle_s: float = 3600.0,
        on_change: Callable[[ClockJump | None], None] | None = None,
    ):
        """``on_change(jump)`` is called (outside the lock) on every jump, and with None when the
        clock becomes trusted again."""
        self.wall = wall
        self.mono = mono
        self.jump_s = jump_s
        self.settle_s = settle_s
        self.on_change = on_change
        self.jumps = 0
        self.last_jump: ClockJump | None = None
        self._lock = threading.Lock()
        self._offset: float | None = None  # wall - mono at the last reading
        self._trusted_offset: float | None = None  # the time base rules use
        self._stable_since: float | None = None  # mono of the last jump while untrusted

    @property
    def trusted(self) -> bool:
        return self._stable_since is None

    def observe(self, wall: float | None = None, mono: float | None = None) -> ClockJump | None:
        """Take one reading (now, unless given); returns the jump it revealed, if any."""
        jump, regained = self._observe(self.wall() if wall is None else wall,
                                       self.mono() if mono is None else mono)
        if self.on_change is not None and (jump is not None or regained):
            self.on_change(jump)
        return jump

    def _observe(self, wall: float, mono: float) -> tuple[ClockJump | None, bool]:
        offset = wall - mono
        with self._lock:
            if self._offset is None:
                self._offset = self._trusted_offset = offset
                return None, False
            if self._trusted_offset is None:  # set with the first offset, above
                raise InvariantError("clock watch: an offset without a trusted base")
            delta, self._offset = offset - self._offset, offset
            if abs(delta) > self.jump_s:
                self.jumps += 1
                self.last_jump = ClockJump(delta, wall)
                if abs(offset - self._trusted_offset) <= self.jump_s:  # back on the trusted base
                    regained = self._stable_since is not None
                    self._stable_since = None
                    self._trusted_offset = offset
                    return self.last_jump, regained
                self._stable_since = mono
                return self.last_jump, False
            if self._stable_since is None:
                self._trusted_offset = offset  # follow NTP's slewing
                return None, False
            if mono - self._stable_since >= self.settle_s:
                self._stable_since = None
                self._trusted_offset = offset
                return None, True
            return None, False

    def resume(self, offset: float, trusted_offset: float, untrusted_since: float | None) -> None:
        """Continue where a previous process of the same boot stopped (the monotonic clock did
        not restart, so its offsets still compare): its last offset, its trusted time base and
        since when (monotonic) it distrusted the clock. A restart then neither forgets a jump -
        retention would run at once on the jumped clock - nor misses one made while no process
        watched (the next reading differs from ``offset``). Call before the first ``observe``."""
        with self._lock:
            self._offset, self._trusted_offset, self._stable_since = (
                offset,
                trusted_offset,
                untrusted_since,
            )

    def saved(self) -> dict[str, int] | None:
        """What ``resume`` needs, in integers (ms) for the store; None before the first reading."""
        with self._lock:
            if self._offset is None or self._trusted_offset is None:
                return None
            since = self._stable_since
            return {
                "offset_ms": round(self._offset * 1000),
                "trusted_offset_ms": round(self._trusted_offset * 1000),
                "untrusted_since_ms": -1 if since is None else round(since * 1000),
            }

    def rule_time(self) -> float:
        """The wall time time-based rules should use: the wall clock while it is trusted, else
        the trusted time base (the last trusted wall time advanced by the monotonic clock)."""
        wall, mono = self.wall(), self.mono()
        self.observe(wall, mono)
        with self._lock:
            if self._stable_since is None or self._trusted_offset is None:
                return wall
            return mono + self._trusted_offset

    def confirm(self) -> None:
        """An operator or the centre vouches for the current wall time: trust it now."""
        self.observe()
        with self._lock:
            was_untrusted = self._stable_since is not None
            self._stable_since = None
            self._trusted_offset = self._offset
        if was_untrusted and self.on_change is not None:
            self.on_change(None)

    def health(self) -> dict:
        """For the health/status line: trusted, jumps seen, the last jump, how long untrusted."""
        with self._lock:
            since = self._stable_since
        return {"trusted": since is None, "jumps": self.jumps,
                "last_jump_s": None if self.last_jump is None else round(self.last_jump.seconds, 1),
                "since_jump_s": None if since is None else round(self.mono() - since, 1)}


def ntp_synced(flag: Path = TIMESYNCD_FLAG) -> float | None:
    """When systemd-timesyncd last reported a sync (the flag file's time), None if it never did
    since boot (or does not run here)."""
    try:
        return flag.stat().st_mtime
    except OSError:
        return None


def boot_id() -> int | None:
    """This boot's identity as an integer (the kernel's random boot_id): monotonic readings of
    a previous process compare with ours only within one boot. None where it is unknown."""
    try:
        return (
            int(Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", ""), 16)
            >> 66
        )
    except (OSError, ValueError):
        return None
