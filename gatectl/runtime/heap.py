"""Giving the C heap's free pages back, so a years-long run's RSS follows what is in use.

glibc's allocator keeps freed memory in per-thread arenas for reuse; a daemon whose threads
(grabbers, gates, onnxruntime's pool, the store) allocate and free frame-sized buffers all day
shows an RSS that drifts up and down by tens of MB with no leak behind it (`scripts/soak.py
--trim-heap-s 0` shows the drift). ``malloc_trim(0)`` returns those pages; on a C library without
it (musl, macOS) trimming is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable
from typing import Any


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


class HeapTrimmer:
    """``maybe_trim(now)`` from the supervisor's loop: a trim every ``every_s`` (0: never)."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._trim = _malloc_trim() if every_s > 0 else None
        self._next = 0.0
        self.trims = 0
        self.last_ms = 0.0

    def trim(self) -> None:
        if self._trim is None:
            return
        t0 = time.perf_counter()
        self._trim(0)
        self.last_ms = (time.perf_counter() - t0) * 1000
        self.trims += 1

    def maybe_trim(self, now: float) -> None:
        if now >= self._next:
            self._next = now + self.every_s
            self.trim()

    def health(self) -> dict[str, Any]:
        return {"trims": self.trims, "last_trim_ms": round(self.last_ms, 1)}
