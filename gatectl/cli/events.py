"""`gatectl events`: the audit trail, filtered and paged."""

from __future__ import annotations

import argparse
import json
import sys

from gatectl.cli.common import (
    AppFactory,
    fmt_time,
    parse_since,
    print_table,
)


def cmd_events(args: argparse.Namespace, app_factory: AppFactory) -> int:
    app = app_factory()
    since = parse_since(args.since, app.clock()) if args.since else None
    evs = app.store.events(since=since, kind=args.kind, gate=args.gate, limit=args.limit + 1)
    if len(evs) > args.limit:  # the newest --limit are shown; say that older ones exist
        evs = evs[1:]
        print(
            f"gatectl: older events not shown (the newest {args.limit}; "
            "--limit N or --since to see them)",
            file=sys.stderr,
        )
    names = {r.id: r.name for r in app.store.residents()}
    if args.json:
        for e in evs:
            print(
                json.dumps({**e.__dict__, "resident": names.get(e.resident_id)}, ensure_ascii=False)
            )
        return 0
    rows = [
        [
            fmt_time(e.ts),
            e.gate,
            e.kind,
            e.credential or "-",
            e.decision or "-",
            names.get(e.resident_id, "-"),
            e.reason,
            "-" if e.score is None else f"{e.score:.3f}",
            e.snapshot or "-",
        ]
        for e in evs
    ]
    print_table(
        rows, ["time", "gate", "kind", "via", "decision", "resident", "reason", "score", "snapshot"]
    )
    return 0
