"""`gatectl plates` and `vehicles`: the plate lists and who is inside."""

from __future__ import annotations

import argparse
import json
import sys

from gatectl.cli.common import (
    AppFactory,
    fmt_time,
    matches,
    parse_since,
    parse_time,
    print_list,
    print_table,
    unit_matches,
)
from gatectl.cli.people import one_resident
from gatectl.config.gates import PlateGateConfig
from gatectl.core.errors import UsageError
from gatectl.core.safe_text import shown
from gatectl.domain import plate_format
from gatectl.people.enroll import (
    REASON_MAX,
    UNIT_MAX,
    checked_text,
)


def cmd_plates(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """Vehicle lists. Plates are stored exactly as validated: no fuzzy matching, ever."""
    app = app_factory()
    store = app.store
    if args.action == "list":
        records = [
            {
                k: p[k]
                for k in (
                    "plate",
                    "list",
                    "resident_id",
                    "resident",
                    "unit",
                    "note",
                    "valid_from",
                    "valid_to",
                )
            }
            for p in store.plates()
            if (args.list is None or p["list"] == args.list)
            and matches(p["resident"], args.name)
            and unit_matches(p["unit"], args.unit)
        ]
        print_list(
            args,
            records,
            ["plate", "list", "resident", "unit", "note", "from", "to"],
            lambda p: [
                p["plate"],
                p["list"],
                p["resident"] or "-",
                p["unit"] or "-",
                p["note"] or "-",
                fmt_time(p["valid_from"]),
                fmt_time(p["valid_to"]),
            ],
        )
        return 0
    if not args.plate:
        raise UsageError(f"plates {args.action}: give the plate, e.g. 粤B12345")
    plate = plate_format.normalise(args.plate)
    if args.action == "remove":
        n = store.remove_plate(plate, args.list)
        if not n:
            raise UsageError(f"plates remove: {shown(plate, 20)} is on no list")
        print(f"{plate} removed from {n} list(s)")
        return 0
    if not plate_format.is_plate(plate):
        raise UsageError(
            f"plate: '{shown(args.plate, 20)}' is not a valid Chinese plate (e.g. "
            "粤B12345, 沪AD12345, 鄂F8888警)"
        )
    list_ = args.list or "resident"
    unit = checked_text("--unit", args.unit, UNIT_MAX, required=False)
    note = checked_text("--note", args.note, REASON_MAX, required=False)
    resident_id = one_resident(app, args.resident).id if args.resident else None
    if list_ == "visitor" and not args.to:
        raise UsageError("plates add --list visitor: give --to (end of the visit window)")
    valid_from = parse_time(args.from_, "--from") if args.from_ else None
    valid_to = parse_time(args.to, "--to") if args.to else None
    if valid_to is not None and valid_from is not None and valid_to <= valid_from:
        raise UsageError(f"--to: {fmt_time(valid_to)} is not after --from {fmt_time(valid_from)}")
    if valid_to is not None and valid_to <= app.clock():
        raise UsageError(
            f"--to: {fmt_time(valid_to)} is already past: the pass would never open the barrier"
        )
    others = {p["list"] for p in store.plates(plate)} - {list_}
    store.add_plate(plate, list_, resident_id=resident_id, unit=unit, note=note,
                    valid_from=valid_from, valid_to=valid_to)
    print(f"{plate} on the {list_} list")
    if list_ == "blacklist" and others:
        print(f"gatectl: warning: {plate} is also on the {' and '.join(sorted(others))} list: "
              "the blacklist wins, the lanes raise an alert for it", file=sys.stderr)
    elif "blacklist" in others:
        print(
            f"gatectl: warning: {plate} is also on the blacklist, which wins: "
            "the lanes will not open for it "
            f"(`plates remove {plate} --list blacklist` lifts it)",
            file=sys.stderr,
        )
    return 0


def cmd_vehicles(args: argparse.Namespace, app_factory: AppFactory) -> int:
    app = app_factory()
    now = app.clock()
    if args.action == "inside":
        days = (
            args.days
            if args.days is not None
            else max(
                (g.inside_days_alert for g in app.cfg.gates if isinstance(g, PlateGateConfig)),
                default=30.0,
            )
        )
        rows = [
            [
                v["plate"],
                v["lane"],
                fmt_time(v["entered_at"]),
                f"{(now - v['entered_at']) / 86400:.1f}",
                "LONG STAY" if now - v["entered_at"] > days * 86400 else "",
            ]
            for v in app.store.vehicles_inside()
        ]
        print_table(rows, ["plate", "lane", "entered", "days", f"> {days:g} d"])
        return 0
    since = parse_since(args.since, now) if args.since else None
    passes = app.store.vehicle_passes(
        plate_format.normalise(args.plate) if args.plate else None, since
    )
    if args.json:
        for p in passes:
            print(json.dumps(p, ensure_ascii=False))
        return 0
    rows = [
        [
            fmt_time(p["ts"]),
            p["plate"],
            p["lane"],
            p["direction"],
            p["decision"],
            "-" if p["inside_s"] is None else f"{p['inside_s'] / 3600:.1f} h",
            p["event_id"] or "-",
        ]
        for p in passes
    ]
    print_table(rows, ["time", "plate", "lane", "direction", "decision", "inside", "event"])
    return 0
