"""What the commands share: how they get their App, local times with their offset,
tables with escaped cells, paging and filters of the list commands."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from gatectl.core.argtypes import number_in
from gatectl.core.errors import UsageError
from gatectl.core.safe_text import shown
from gatectl.runtime.app import App


class AppFactory(Protocol):
    """Opens the App a command works on, when (and if) it needs one: replay asks for simulated
    boards and a scratch copy of the store."""

    def __call__(self, simulated: bool = False, scratch: Path | None = None) -> App: ...


def fmt_time(ts: float | None) -> str:
    """Local time with its UTC offset (2026-11-01 08:00:00+08:00): a log read from another
    zone, or copied into a report, still says when."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().isoformat(sep=" ", timespec="seconds")


_REL = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_since(text: str, now: float) -> float:
    """'30m', '2h', '7d' back from now, or an ISO date/time (local time unless it has a zone)."""
    m = _REL.fullmatch(text)
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since: cannot read '{shown(text, 40)}' (use 30m, 2h, 7d or 2026-11-01T08:00)"
        ) from None
    return dt.timestamp() if dt.tzinfo else dt.replace(tzinfo=None).timestamp()


def print_table(rows: list[list], header: list[str]) -> None:
    """Columns padded to width; every cell escaped (names, units, reasons come from outside)."""
    cells = [[shown(x) for x in r] for r in [header, *rows]]
    widths = [max(len(x) for x in col) for col in zip(*cells)]
    for r in cells:
        print("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())


def page(items: list, args: argparse.Namespace) -> list:
    """The --offset/--limit window of a list; says on stderr how many were left out."""
    window = items[args.offset:args.offset + args.limit]
    left = len(items) - args.offset - len(window)
    if left > 0:
        print(
            f"gatectl: {left} more not shown (--offset "
            f"{args.offset + len(window)} for the next page)",
            file=sys.stderr,
        )
    return window


def print_list(args: argparse.Namespace, records: list[dict], header: list[str],
               row: Callable[[dict], list]) -> None:
    """One JSON object per line with --json, else a table; --offset/--limit either way."""
    records = page(records, args)
    if args.json:
        for rec in records:
            print(json.dumps(rec, ensure_ascii=False))
    else:
        print_table([row(rec) for rec in records], header)


def matches(text: str | None, needle: str | None) -> bool:
    """--name filters: case-insensitive part of the name."""
    return needle is None or needle.casefold() in (text or "").casefold()


def unit_matches(unit: str | None, wanted: str | None) -> bool:
    """--unit filters: the unit, or every unit under it ('3-2' finds '3-2-1501')."""
    return wanted is None or unit == wanted or (unit or "").startswith(wanted.rstrip("-/ ") + "-")


def parse_time(text: str, key: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(
            f"{key}: cannot read '{shown(text, 40)}' (use 2026-11-01 or 2026-11-01T08:00)"
        ) from None


def add_list_options(p: argparse.ArgumentParser) -> None:
    """`list` output: JSON lines, and a window of a long list (the rest is counted on stderr)."""
    p.add_argument(
        "--json",
        action="store_true",
        help="list: one JSON object per line (times in epoch seconds)",
    )
    p.add_argument(
        "--limit",
        type=number_in(1, 100_000, int),
        default=100,
        metavar="N",
        help="list: at most N rows (default 100)",
    )
    p.add_argument(
        "--offset",
        type=number_in(0, 10**9, int),
        default=0,
        metavar="N",
        help="list: skip the first N rows",
    )
