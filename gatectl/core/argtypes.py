"""Command-line numbers with their sensible range, shared by the CLI and the bench tools.

argparse's ``type=float`` takes ``nan``, ``inf`` and ``-1`` happily, and ``choices=range(...)``
prints every allowed value; these say the range in one line instead."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number_in(lo: float, hi: float, kind: type = float, unit: str = "") -> Callable[[str], float]:
    """An argparse ``type`` accepting a finite ``kind`` number in [lo, hi]."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number in {lo:g}..{hi:g}{unit}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
