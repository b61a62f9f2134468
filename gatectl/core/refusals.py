"""What refused outside input costs: a counter, and a log line within a budget.

Every edge that takes input from outside - MQTT topics, a camera's HTTP push, a card reader, a
serial port - refuses what fails validation; an attacker who sends a flood of bad input must not
turn it into a flood of log lines (the journal fills, the SD card wears) or unbounded work. One
bucket per source bounds the lines; the counters say how many were refused and why.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from gatectl.core.safe_text import shown

log = logging.getLogger("gatectl.refusals")


class TokenBucket:
    """At most ``rate`` per second on average and ``burst`` at once (monotonic clock)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Refusals:
    """What refused input costs: one counter increment, and within a budget per source (the
    topic kind: ``cmd``, ``enroll``) one warning line saying how many went unlogged before it.
    Called from paho's thread (size) and the sync thread (everything else)."""

    def __init__(
        self, per_s: float = 2.0, burst: int = 10, clock: Callable[[], float] = time.monotonic
    ):
        self.per_s = per_s
        self.burst = burst
        self.clock = clock
        self.counters: collections.Counter[str] = collections.Counter()
        self._buckets: dict[str, TokenBucket] = {}
        self._unlogged: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def refuse(self, source: str, reason: str, detail: str = "") -> bool:
        """Count one refusal; True if it may be logged (and answered, and recorded) now."""
        with self._lock:
            self.counters[f"refused_{source}_{reason}"] += 1
            bucket = self._buckets.get(source)
            if bucket is None:
                bucket = self._buckets[source] = TokenBucket(self.per_s, self.burst, self.clock)
            if not bucket.take():
                self._unlogged[source] += 1
                return False
            unlogged, self._unlogged[source] = self._unlogged[source], 0
        more = f" ({unlogged} more refused since the last line)" if unlogged else ""
        log.warning(
            "%s message refused (%s)%s%s",
            source,
            reason,
            f": {shown(detail)}" if detail else "",
            more,
        )
        return True

    def counts(self) -> dict[str, int]:
        """Refusals so far by source and reason (for the status message)."""
        with self._lock:
            return dict(self.counters)
