"""`gatectl analyse`: the behaviour rules over the stored events, printed, never recorded - to
tune `[analysis]` thresholds on a site's own history before the daemon acts on them."""

from __future__ import annotations

import argparse
import json

from gatectl.cli.common import AppFactory, fmt_time, parse_since, print_table


def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser(
        "analyse", help="run the behaviour rules over the stored events; print what they raise"
    )
    a.add_argument("--since", metavar="TIME",
                   help="history from 30m, 2h, 30d ago or an ISO date/time (default: the "
                   "longest window of the rules)")
    a.add_argument("--json", action="store_true", help="one JSON object per alert")
    a.set_defaults(func=cmd_analyse)


def cmd_analyse(args: argparse.Namespace, app_factory: AppFactory) -> int:
    app = app_factory()
    since = parse_since(args.since, app.clock()) if args.since else None
    found = app.analyst.findings(since)
    if args.json:
        for a in found:
            print(json.dumps(a.as_json(), ensure_ascii=False))
        return 0
    print_table([[fmt_time(a.ts), a.rule, a.subject, a.detail, len(a.snapshots)] for a in found],
                ["time", "rule", "subject", "detail", "snapshots"])
    return 0
