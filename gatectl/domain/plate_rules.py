"""Access rules for vehicles (pure): the plate's list entries, the lane's direction, the time.

Matching is exact - the caller looks the plate up by equality, with no tolerance for a wrong
character (a system that tolerated a few let a stranger's car in under an employee's name).
"""

from __future__ import annotations

from typing import Any

from gatectl.domain.access import Verdict


def _window(entry: dict[str, Any], now: float) -> str | None:
    if entry.get("valid_from") is not None and now < entry["valid_from"]:
        return "not yet valid"
    if entry.get("valid_to") is not None and now > entry["valid_to"]:
        return "expired"
    return None


def decide_plate(entries: list[dict[str, Any]], direction: str, now: float,
                 open_unknown_on_exit: bool = True) -> Verdict:
    """``entries``: the plate's rows in the plates table (resident / visitor / blacklist)."""
    by_list = {e["list"]: e for e in entries}
    black = by_list.get("blacklist")
    if black is not None:
        return Verdict(
            "alert", f"blacklist: {black['note']}" if black["note"] else "blacklist", "alert"
        )
    for name in ("resident", "visitor"):
        e = by_list.get(name)
        if e is None:
            continue
        closed = _window(e, now)
        if closed is not None:
            if direction == "exit" and open_unknown_on_exit:
                return Verdict("granted", f"exit ({name} pass {closed})", "access")
            return Verdict("denied", f"{name} pass {closed}", "access")
        if name == "resident" and e.get("resident_status") == "suspended":
            return Verdict("denied", "account suspended", "access")
        unit = f" {e['unit']}" if e.get("unit") else ""
        return Verdict("granted", f"{name}{unit}", "access")
    if direction == "exit" and open_unknown_on_exit:
        return Verdict("granted", "exit", "access")
    return Verdict("denied", "unknown plate", "access")
