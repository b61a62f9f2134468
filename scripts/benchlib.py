"""Shared measuring helpers of the benchmark scripts (imported from the scripts' own folder)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def stats(samples_ms: list[float]) -> dict:
    """p50 / p95 / max of millisecond samples, rounded to microseconds."""
    a = np.asarray(samples_ms)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "max": round(float(a.max()), 3)}


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Milliseconds of ``n`` back-to-back calls of ``fn``."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out
