"""The centre's schema: one list of migrations for both engines, applied in order, once each.

A migration is a name and statements in the shared SQL, with the few types the engines spell
differently as ``{placeholders}`` (`TYPES`). Applied names are kept in
``central_migrations``; each migration runs in one transaction with its record, and on
PostgreSQL under an advisory lock, so worker processes starting together migrate once.
Append new migrations at the end; never edit one that shipped.
"""

from __future__ import annotations

import time
from pathlib import Path

from gatectl.central.storage import Database, PostgresDatabase, SqliteDatabase

TYPES = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL", "blob": "BLOB"},
    "postgresql": {"serial": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION", "blob": "BYTEA"},
}

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("c001_registry", [
        # where each device is: resyncs and building-scoped changes go by these
        """CREATE TABLE devices (site TEXT NOT NULL, device TEXT NOT NULL, building TEXT,
            doors TEXT NOT NULL DEFAULT '[]', state TEXT NOT NULL DEFAULT 'unknown',
            state_at {real}, last_seen {real}, pending BIGINT NOT NULL DEFAULT 0,
            lag_s {real}, added_at {real} NOT NULL, PRIMARY KEY (site, device))""",
        # consent: none (never replicated: no templates held here), device (its home device
        # only), building, site
        """CREATE TABLE residents (uid TEXT PRIMARY KEY, site TEXT NOT NULL, building TEXT,
            home_device TEXT, name TEXT NOT NULL DEFAULT '', unit TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'active', consent TEXT NOT NULL DEFAULT 'device',
            owner TEXT NOT NULL, version BIGINT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0)""",
        """CREATE TABLE templates (uid TEXT NOT NULL, idx INTEGER NOT NULL, model TEXT NOT NULL,
            dim INTEGER NOT NULL, quality {real} NOT NULL, emb TEXT NOT NULL,
            PRIMARY KEY (uid, idx))""",
        """CREATE TABLE credentials (uid TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL,
            PRIMARY KEY (uid, kind, ref))""",
        """CREATE TABLE plates (site TEXT NOT NULL, plate TEXT NOT NULL, list TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '', version BIGINT NOT NULL, deleted INTEGER NOT NULL
            DEFAULT 0, PRIMARY KEY (site, plate))""",
        """CREATE TABLE passes (id TEXT PRIMARY KEY, site TEXT NOT NULL, building TEXT,
            holder TEXT NOT NULL, host_uid TEXT, valid_from {real} NOT NULL,
            valid_until {real} NOT NULL, doors TEXT NOT NULL DEFAULT '[]',
            status TEXT NOT NULL DEFAULT 'active', version BIGINT NOT NULL)""",
        """CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, public_key TEXT NOT NULL,
            added_at {real} NOT NULL, retired_at {real})""",
        # every signed change, in order: what was published and to whom (target: '*' for the
        # site, a device id, or 'building:<b>'); a resync replays the newest per uid
        """CREATE TABLE changes (seq {serial}, site TEXT NOT NULL, kind TEXT NOT NULL,
            ref TEXT NOT NULL, target TEXT NOT NULL, version BIGINT NOT NULL,
            body TEXT NOT NULL, at {real} NOT NULL)""",
        "CREATE INDEX changes_ref ON changes (site, ref)",
    ]),
    ("c002_ingest", [
        """CREATE TABLE events (id TEXT PRIMARY KEY, site TEXT NOT NULL, device TEXT NOT NULL,
            seq BIGINT NOT NULL, ts {real} NOT NULL, gate TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL DEFAULT '', decision TEXT NOT NULL DEFAULT '',
            body TEXT NOT NULL, received_at {real} NOT NULL, snapshot TEXT)""",
        "CREATE INDEX events_device ON events (site, device, ts)",
        """CREATE TABLE snapshots (event_id TEXT PRIMARY KEY, site TEXT NOT NULL,
            device TEXT NOT NULL, ref TEXT NOT NULL, size BIGINT NOT NULL,
            received_at {real} NOT NULL)""",
        """CREATE TABLE alerts (seq {serial}, site TEXT NOT NULL, device TEXT NOT NULL,
            kind TEXT NOT NULL, at {real} NOT NULL, detail TEXT NOT NULL DEFAULT '')""",
        # each worker's counters (malformed per topic, duplicates, ...), for the metrics
        """CREATE TABLE counters (worker TEXT NOT NULL, name TEXT NOT NULL,
            value BIGINT NOT NULL, at {real} NOT NULL, PRIMARY KEY (worker, name))""",
    ]),
    # plate entries as the devices hold them (`gatectl.sync.lists`: their lists, the resident,
    # unit and window) and where each plate and pass goes: a building's devices or one device
    # (neither: the site); the old allow/deny lists become the devices' resident/blacklist
    ("c003_device_lists", [
        "ALTER TABLE plates ADD COLUMN building TEXT",
        "ALTER TABLE plates ADD COLUMN device TEXT",
        "ALTER TABLE plates ADD COLUMN resident_uid TEXT",
        "ALTER TABLE plates ADD COLUMN unit TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE plates ADD COLUMN valid_from {real}",
        "ALTER TABLE plates ADD COLUMN valid_to {real}",
        "UPDATE plates SET list = 'resident' WHERE list = 'allow'",
        "UPDATE plates SET list = 'blacklist' WHERE list = 'deny'",
        "ALTER TABLE passes ADD COLUMN device TEXT",
    ]),
    ("c004_resident_credentials", [
        # a resident's cards ('card', NUMBER/BITS), PIN hash ('pin') and TOTP secret ('totp'),
        # replicated site-wide: a card belongs to one resident of a site, which the index
        # holds even against two workers deciding at once (a copy kept before is dropped)
        "ALTER TABLE credentials ADD COLUMN site TEXT NOT NULL DEFAULT ''",
        """UPDATE credentials SET site = coalesce((SELECT r.site FROM residents r
            WHERE r.uid = credentials.uid), '')""",
        """DELETE FROM credentials WHERE EXISTS (SELECT 1 FROM credentials c
            WHERE c.site = credentials.site AND c.kind = credentials.kind
            AND c.ref = credentials.ref AND c.uid < credentials.uid)""",
        "CREATE UNIQUE INDEX credentials_site_ref ON credentials (site, kind, ref)",
    ]),
    # an event's snapshot is its row in snapshots (joined when listed): a copy on the event's
    # row could not be written when the two arrived at two workers at once
    ("c005_snapshot_by_join", ["ALTER TABLE events DROP COLUMN snapshot"]),
    # when the event a device's lag_s comes from arrived: a status moves last_seen on, so the
    # lag of an event flushed after it needs its own time to tell newer from older
    ("c006_lag_at", ["ALTER TABLE devices ADD COLUMN lag_at {real}"]),
]


def migrate(db: Database) -> list[str]:
    """Apply what is missing; the names applied now."""
    types = TYPES[db.dialect]
    with db.write() as tx:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS central_migrations (name TEXT PRIMARY KEY, "
            f"applied_at {types['real']} NOT NULL)"
        )
    done: list[str] = []
    for name, statements in MIGRATIONS:
        with db.write() as tx:
            if db.dialect == "postgresql":
                tx.execute("SELECT pg_advisory_xact_lock(7319)")  # gatectl's, any number
            if tx.execute("SELECT 1 FROM central_migrations WHERE name = ?", [name]):
                continue
            for sql in statements:
                tx.execute(sql.format(**types))
            tx.execute("INSERT INTO central_migrations VALUES (?, ?)", [name, time.time()])
            done.append(name)
    return done


def open_database(url: str, base: Path | None = None) -> Database:
    """``sqlite:///path`` (relative to ``base``), a bare path, or ``postgresql://...``; the
    schema brought up to date (`migrations.migrate`) before it is returned."""
    db: Database
    if url.startswith(("postgresql://", "postgres://")):
        db = PostgresDatabase(url)
    else:
        path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
        if base is not None and not path.is_absolute():
            path = base / path
        db = SqliteDatabase(path)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db
