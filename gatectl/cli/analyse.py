"""`gatectl analyse`: the behaviour rules over the stored events, printed, never recorded - to
tune `[analysis]` thresholds on a site's own history before the daemon acts on them."""

from __future__ import annotations

import argparse
import json
import re

from gatectl.cli.common import AppFactory, fmt_time, parse_since, print_table
from gatectl.core.errors import UsageError
from gatectl.core.safe_text import shown

_STEP = re.compile(r"(\d+(?:\.\d+)?)([mhd])")


def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser(
        "analyse",
        help="the behaviour rules over the stored events: what they would have raised",
    )
    a.add_argument("--since", metavar="TIME",
                   help="replay from 30m, 2h, 30d ago or an ISO date/time to now, as the daemon "
                   "would have run them (without it: what the rules find now)")
    a.add_argument("--step", default="1h", metavar="STEP",
                   help="with --since: run the rules every STEP (10m, 1h, 1d; default 1h)")
    a.add_argument("--json", action="store_true", help="one JSON object per alert")
    a.set_defaults(func=cmd_analyse)


def step_seconds(text: str) -> float:
    m = _STEP.fullmatch(text)
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--step: cannot read '{shown(text, 40)}' (use 10m, 1h or 1d)")
    return float(m.group(1)) * {"m": 60, "h": 3600, "d": 86400}[m.group(2)]


def cmd_analyse(args: argparse.Namespace, app_factory: AppFactory) -> int:
    step = step_seconds(args.step)
    app = app_factory()
    if args.since:
        since = parse_since(args.since, app.clock())
        try:
            found = app.analyst.replay(since, step)
        except ValueError as exc:
            raise UsageError(f"--since/--step: {exc}") from None
    else:
        found = app.analyst.findings()
    if args.json:
        for a in found:
            print(json.dumps(a.as_json(), ensure_ascii=False))
        return 0
    print_table([[fmt_time(a.ts), a.rule, a.subject, a.detail, len(a.snapshots)] for a in found],
                ["time", "rule", "subject", "detail", "snapshots"])
    return 0
