"""`gatectl backup FILE` and `gatectl restore FILE`: the store, its spool, the snapshots and
the site's models in one file, taken while the daemon runs; restored only while it is stopped,
the current data moved aside (`gatectl.store.backup`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gatectl.cli.common import AppFactory
from gatectl.runtime.app import App
from gatectl.store.backup import MODELS, SNAPSHOTS, make_backup, restore_backup


def folders(app: App) -> dict[str, Path]:
    """What a backup carries besides the database: the snapshots (event pictures, kept
    enrollment photos) and the site's installed models (a detector trained on its cameras)."""
    return {SNAPSHOTS: app.snapshot_dir, MODELS: app.site_models}


def cmd_backup(args: argparse.Namespace, app_factory: AppFactory) -> int:
    app = app_factory()
    s = make_backup(app.store_path, folders(app), args.file, app.cfg.device.id, app.clock)
    print(f"backup {s.file}: {s.residents} resident(s), {s.events} event(s), {s.snapshots} "
          f"snapshot file(s), schema {len(s.schema)} migration(s), {s.bytes / 2**20:.1f} MB")
    return 0


def cmd_restore(args: argparse.Namespace, app_factory: AppFactory) -> int:
    app = app_factory()
    app.store_hold.acquire("restore")  # refuses while `gatectl run` holds the store
    try:
        s, aside = restore_backup(args.file, app.store_path, folders(app), app.clock)
    finally:
        app.store_hold.release()
    print(f"restored {s.file}: {s.residents} resident(s), {s.events} event(s), {s.snapshots} "
          f"snapshot file(s); the previous data are in {aside}")
    if app.cfg.sync.enabled:
        print("central sync is on: `gatectl sync resync` asks the centre for what changed since")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("backup", help="copy the store and snapshots to FILE (the daemon may run)")
    b.add_argument("file", type=Path, metavar="FILE", help="the backup to write (a tar file)")
    b.set_defaults(func=cmd_backup)
    r = sub.add_parser(
        "restore", help="replace the store and snapshots by a backup (stop the daemon first)"
    )
    r.add_argument("file", type=Path, metavar="FILE", help="a file `gatectl backup` wrote")
    r.set_defaults(func=cmd_restore)
