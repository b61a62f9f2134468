"""`gatectl events`: the audit trail, filtered and paged; exported as CSV, or as a zip with
the snapshots (what is handed to the police: a CSV, the pictures and their SHA-256 sums)."""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import sys
import zipfile
from pathlib import Path, PurePosixPath

from gatectl.cli.common import (
    AppFactory,
    fmt_time,
    parse_since,
    print_table,
)
from gatectl.core.errors import UsageError
from gatectl.domain.records import EventRow
from gatectl.runtime.app import App

EXPORT_COLUMNS = ["event", "time", "ts", "gate", "kind", "decision", "resident_id", "resident",
                  "unit", "watchlist_id", "reason", "score", "snapshot"]


def cmd_events(args: argparse.Namespace, app_factory: AppFactory) -> int:
    if args.action == "export":
        return cmd_export(args, app_factory)
    if args.format or args.out:
        raise UsageError("events list: --format and --out are for `events export`")
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


def cmd_export(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """Every event matching the filters (no --limit: an export is the whole period), oldest
    first; zip: with each event's snapshot under ``snapshots/`` and ``SHA256SUMS``."""
    fmt = args.format or "csv"
    if fmt == "zip" and not args.out:
        raise UsageError("events export --format zip: give --out FILE.zip")
    app = app_factory()
    since = parse_since(args.since, app.clock()) if args.since else None
    evs = app.store.events(since=since, kind=args.kind, gate=args.gate,
                           limit=app.store.event_count() + 1)
    people = {r.id: r for r in app.store.residents()}
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(EXPORT_COLUMNS)
    for e in evs:
        r = people.get(e.resident_id) if e.resident_id is not None else None
        w.writerow([e.id, fmt_time(e.ts), f"{e.ts:.3f}", e.gate, e.kind, e.decision or "",
                    e.resident_id or "", r.name if r else "", r.unit if r else "",
                    e.watchlist_id or "", e.reason, "" if e.score is None else e.score,
                    e.snapshot or ""])
    if fmt == "csv":
        if args.out:
            _write_atomically(Path(args.out), text.getvalue().encode())
        else:
            sys.stdout.write(text.getvalue())
            return 0
        print(f"exported {len(evs)} event(s) to {args.out}")
        return 0
    missing = _write_zip(app, Path(args.out), text.getvalue().encode(), evs)
    print(f"exported {len(evs)} event(s) with {sum(1 for e in evs if e.snapshot) - missing} "
          f"snapshot(s) to {args.out}"
          + (f"; {missing} snapshot file(s) already deleted by retention" if missing else ""))
    return 0


def _write_zip(app: App, out: Path, table: bytes, evs: list[EventRow]) -> int:
    """The zip through ``out.tmp`` (renamed when complete); returns snapshots not found."""
    sums = [f"{hashlib.sha256(table).hexdigest()}  events.csv"]
    missing = 0
    tmp = out.with_name(out.name + ".tmp")
    root = app.snapshot_dir.resolve()
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:  # JPEGs do not compress
            z.writestr("events.csv", table)
            for e in evs:
                if not e.snapshot:
                    continue
                rel = PurePosixPath(e.snapshot)
                path = (root / rel).resolve()
                if rel.is_absolute() or ".." in rel.parts or root not in path.parents:
                    missing += 1  # a row pointing outside the folder is not followed
                    continue
                try:
                    data = path.read_bytes()
                except FileNotFoundError:
                    missing += 1
                    continue
                z.writestr(f"snapshots/{rel}", data)
                sums.append(f"{hashlib.sha256(data).hexdigest()}  snapshots/{rel}")
            z.writestr("SHA256SUMS", "\n".join(sums) + "\n")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
    return missing


def _write_atomically(out: Path, data: bytes) -> None:
    tmp = out.with_name(out.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
