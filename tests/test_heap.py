"""The daemon's heap trims: freed C-heap pages go back to the system on the supervisor's clock."""

from __future__ import annotations

import platform

import pytest

from gatectl.config import ConfigError, parse_config
from gatectl.runtime.heap import HeapTrimmer


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_a_trim_returns_the_holes_that_freed_buffers_left():
    """Buffers of 100 kB come from the heap (under glibc's mmap threshold); freeing nine in ten
    leaves holes the allocator keeps, touched and resident, until a trim gives them back."""
    trimmer = HeapTrimmer(every_s=60)
    trimmer.trim()
    held = [bytearray(b"\x01" * 100_000) for _ in range(2000)]  # ~200 MB, every page touched
    del held[:: 10]  # free one in ten first: no run of free pages at the top of the heap
    keep = held[::9]
    del held
    before = rss_mb()
    trimmer.trim()
    after = rss_mb()
    assert before - after > 50, (before, after)
    assert trimmer.trims == 2 and trimmer.health()["trims"] == 2
    del keep


def test_trims_follow_the_configured_period_and_zero_turns_them_off():
    t = HeapTrimmer(every_s=60)
    for now in (0.0, 30.0, 59.9, 60.0, 100.0, 120.0):
        t.maybe_trim(now)
    assert t.trims == (3 if platform.libc_ver()[0] == "glibc" else 0)
    off = HeapTrimmer(every_s=0)
    off.maybe_trim(0.0)
    off.maybe_trim(1e9)
    assert off.trims == 0


@pytest.mark.parametrize("value", [-1, 3601])
def test_the_trim_period_is_bounded(value):
    with pytest.raises(ConfigError, match="run.trim_heap_s"):
        parse_config({"run": {"trim_heap_s": value}})
