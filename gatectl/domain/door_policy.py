"""Which credentials open a door, and when: pure rules over a policy text, factors and a time.

A policy is a small expression over credential kinds: ``|`` separates alternatives, ``+`` joins
factors that must all be shown (by the same resident, within the door's window), so
``face|card+pin|qr`` admits a face, a card followed by its PIN, or a visitor pass. A resident who
refused face recognition is never asked for a face: alternatives that need one are dropped for
them and the door's ``face_refused`` alternatives are offered instead (`for_resident`).

Schedules are weekly windows in the site's local time (a fixed UTC offset: China has no daylight
saving time); a window whose end is before its start runs over midnight.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

FACTORS = ("face", "card", "pin", "qr", "totp")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Rule:
    """A parsed policy: each alternative is the set of factors it needs."""

    alternatives: tuple[frozenset[str], ...]

    def __str__(self) -> str:
        return "|".join("+".join(f for f in FACTORS if f in alt) for alt in self.alternatives)

    def satisfied(self, shown: frozenset[str]) -> bool:
        """Some alternative is wholly among the factors ``shown``."""
        return any(alt <= shown for alt in self.alternatives)

    def partial(self, shown: frozenset[str]) -> bool:
        """``shown`` is a proper start of some alternative: wait for its other factors."""
        return any(shown < alt for alt in self.alternatives)

    def admits(self, factor: str) -> bool:
        return any(factor in alt for alt in self.alternatives)


def parse_rule(text: str) -> Rule:
    """``face|card+pin`` -> Rule; ValueError naming the first bad part."""
    alternatives: list[frozenset[str]] = []
    for part in text.replace(" ", "").split("|"):
        factors = part.split("+")
        unknown = [f for f in factors if f not in FACTORS]
        if not part or unknown:
            raise ValueError(
                f"policy {text!r}: unknown credential {unknown[0] if unknown else '(empty)'!r} "
                f"(known: {', '.join(FACTORS)}; '|' any of, '+' all of)"
            )
        if len(set(factors)) != len(factors):
            raise ValueError(f"policy {text!r}: a factor repeated in {part!r}")
        alt = frozenset(factors)
        if alt not in alternatives:
            alternatives.append(alt)
    return Rule(tuple(alternatives))


def for_resident(rule: Rule, face_refused: bool, alternative: Rule) -> Rule:
    """The rule as it applies to one resident: unchanged, or - for someone who refused face
    recognition - without every alternative that needs a face, plus the door's alternatives
    for them (the law requires another reasonable way in)."""
    if not face_refused:
        return rule
    kept = [a for a in rule.alternatives if "face" not in a]
    kept += [a for a in alternative.alternatives if "face" not in a and a not in kept]
    return Rule(tuple(kept))


@dataclass(frozen=True)
class Window:
    """One weekly opening: ``days`` (0 = Monday), minutes after local midnight ``start`` to
    ``end`` (an ``end`` at or before ``start`` runs past midnight into the next day)."""

    days: frozenset[int]
    start: int
    end: int


def parse_days(text: str) -> frozenset[int]:
    """``mon-fri``, ``sat,sun``, ``mon-sun`` -> day numbers; ValueError otherwise."""
    out: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        lo, _, hi = part.partition("-")
        if lo not in DAYS or (hi and hi not in DAYS):
            raise ValueError(f"days {text!r}: use mon..sun, ranges (mon-fri) and commas")
        a, b = DAYS.index(lo), DAYS.index(hi or lo)
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
    return frozenset(out)


def parse_clock(text: str) -> int:
    """``HH:MM`` (00:00-24:00) -> minutes after midnight; ValueError otherwise."""
    hh, sep, mm = text.partition(":")
    if not (sep and hh.isdigit() and mm.isdigit() and len(mm) == 2):
        raise ValueError(f"time {text!r}: expected HH:MM")
    minutes = int(hh) * 60 + int(mm)
    if int(mm) >= 60 or minutes > 24 * 60:
        raise ValueError(f"time {text!r}: expected HH:MM between 00:00 and 24:00")
    return minutes


def is_open(windows: Iterable[Window], wall: float, utc_offset_min: int) -> bool:
    """Whether wall time ``wall`` (epoch seconds) falls in one of the ``windows``."""
    t = time.gmtime(wall + utc_offset_min * 60)
    day, minute = t.tm_wday, t.tm_hour * 60 + t.tm_min
    for w in windows:
        if w.start < w.end:
            if day in w.days and w.start <= minute < w.end:
                return True
        elif (day in w.days and minute >= w.start) or ((day - 1) % 7 in w.days and minute < w.end):
            return True
    return False
