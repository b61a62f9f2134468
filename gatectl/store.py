"""SQLite store: schema, migrations and queries for residents, templates, watchlist and events.

Power cuts on SD cards are the normal case, so the connection runs WAL with synchronous=FULL
(a committed audit row survives), a busy timeout (the CLI and the daemon share the file) and
foreign keys on. Face templates live in their own table holding no name or unit (GB/T 35273:
biometric data kept apart from identity data). Every write takes one lock, so the daemon's
threads share a single writer connection.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlite_utils import Database, Migrations
from ulid import ULID

from gatectl.vision.gallery import OwnerKey


class StoreError(Exception):
    """The database cannot be opened or written; one line naming the file."""


migrations = Migrations("gatectl")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE residents (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            unit TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
            created_at REAL NOT NULL,
            last_seen_at REAL,
            reactivated_at REAL,
            version INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE watchlist (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            resident_id INTEGER REFERENCES residents(id) ON DELETE CASCADE,
            created_at REAL NOT NULL
        );
        CREATE TABLE templates (
            id INTEGER PRIMARY KEY,
            owner_kind TEXT NOT NULL CHECK (owner_kind IN ('resident', 'watchlist')),
            owner_id INTEGER NOT NULL,
            model_id TEXT NOT NULL,
            quality REAL NOT NULL,
            embedding BLOB NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX templates_owner ON templates(owner_kind, owner_id);
        CREATE TABLE enrollment_photos (
            id INTEGER PRIMARY KEY,
            resident_id INTEGER NOT NULL REFERENCES residents(id) ON DELETE CASCADE,
            path TEXT NOT NULL
        );
        CREATE TABLE events (
            id TEXT PRIMARY KEY,
            ts REAL NOT NULL,
            gate TEXT NOT NULL,
            kind TEXT NOT NULL,
            decision TEXT,
            reason TEXT NOT NULL DEFAULT '',
            resident_id INTEGER REFERENCES residents(id) ON DELETE SET NULL,
            watchlist_id INTEGER REFERENCES watchlist(id) ON DELETE SET NULL,
            score REAL,
            snapshot TEXT,
            snapshot_bytes INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX events_ts ON events(ts);
        CREATE INDEX events_resident ON events(resident_id);
        CREATE INDEX events_snapshot ON events(ts) WHERE snapshot IS NOT NULL;
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('directory_rev', 0);
        """
    )


DAY_SECONDS = 86400.0


def now_wall() -> float:
    return time.time()


@dataclass(frozen=True)
class Resident:
    id: int
    uid: str
    name: str
    unit: str
    status: str
    created_at: float
    last_seen_at: float | None
    reactivated_at: float | None

    @property
    def activity_anchor(self) -> float:
        """Start of the current inactivity period: the last pass, enrollment or reactivation."""
        return max(t for t in (self.created_at, self.last_seen_at, self.reactivated_at) if t is not None)


@dataclass(frozen=True)
class WatchEntry:
    id: int
    uid: str
    name: str
    reason: str
    resident_id: int | None
    created_at: float


@dataclass(frozen=True)
class EventRow:
    id: str
    ts: float
    gate: str
    kind: str
    decision: str | None
    reason: str
    resident_id: int | None
    watchlist_id: int | None
    score: float | None
    snapshot: str | None


def _resident(row: dict[str, Any]) -> Resident:
    return Resident(**{k: row[k] for k in Resident.__dataclass_fields__})


class Store:
    def __init__(self, path: Path, clock: Callable[[], float] = now_wall):
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=5, check_same_thread=False,
                                   isolation_level=None)
            conn.execute("PRAGMA busy_timeout=5000")
            fresh = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
            if fresh:
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only effective before any table
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA journal_size_limit=67108864")
            self.db = Database(conn)
            migrations.apply(self.db)
            conn.execute(f"PRAGMA user_version={self.schema_version}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open database ({exc})") from None
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create database folder ({exc.strerror})") from None

    @property
    def schema_version(self) -> int:
        return len(migrations.applied(self.db))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self) -> Iterator[Database]:
        """One transaction under the writer lock; a disk error becomes a one-line StoreError."""
        with self._lock:
            try:
                with self.db.atomic():
                    yield self.db
            except sqlite3.OperationalError as exc:
                raise StoreError(f"{self.path}: write failed ({exc})") from None

    def _bump_directory(self, db: Database) -> None:
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'directory_rev'")

    def directory_rev(self) -> int:
        """Bumped by every change to residents, templates or the watchlist, from any process,
        so a running daemon notices a CLI enrollment without a restart."""
        return int(self.db.execute("SELECT value FROM meta WHERE key='directory_rev'").fetchone()[0])

    # --- residents -------------------------------------------------------------------------

    def add_resident(self, name: str, unit: str, templates: list[tuple[np.ndarray, float]],
                     model_id: str) -> Resident:
        """Resident row and its templates in one transaction: never a person without a face."""
        now = self.clock()
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO residents (uid, name, unit, created_at) VALUES (?, ?, ?, ?)",
                [str(ULID()), name, unit, now],
            )
            rid = int(cur.lastrowid)
            self._insert_templates(db, ("resident", rid), templates, model_id, now)
        return self.resident(rid)

    def _insert_templates(self, db: Database, owner: OwnerKey, templates: list[tuple[np.ndarray, float]],
                          model_id: str, now: float) -> None:
        db["templates"].insert_all(
            {"owner_kind": owner[0], "owner_id": owner[1], "model_id": model_id, "quality": q,
             "embedding": np.asarray(v, "<f4").tobytes(), "created_at": now}
            for v, q in templates
        )
        self._bump_directory(db)

    def resident(self, rid: int) -> Resident:
        rows = list(self.db.query("SELECT * FROM residents WHERE id = ?", [rid]))
        if not rows:
            raise KeyError(rid)
        return _resident(rows[0])

    def find_residents(self, key: str) -> list[Resident]:
        """By id, uid or exact name: what a technician types."""
        if key.isdigit():
            sql, args = "SELECT * FROM residents WHERE id = ?", [int(key)]
        else:
            sql, args = "SELECT * FROM residents WHERE uid = ? OR name = ?", [key, key]
        return [_resident(r) for r in self.db.query(sql, args)]

    def residents(self) -> list[Resident]:
        return [_resident(r) for r in self.db.query("SELECT * FROM residents ORDER BY id")]

    def template_count(self, owner: OwnerKey) -> int:
        return int(self.db.execute(
            "SELECT count(*) FROM templates WHERE owner_kind=? AND owner_id=?", list(owner)).fetchone()[0])

    def set_status(self, rid: int, status: str) -> None:
        with self.write() as db:
            db.execute("UPDATE residents SET status = ?, version = version + 1 WHERE id = ?", [status, rid])
            self._bump_directory(db)

    def reactivate(self, rid: int) -> None:
        """Technician vouches for the person: active again, inactivity clock restarts now."""
        with self.write() as db:
            db.execute(
                "UPDATE residents SET status='active', reactivated_at=?, version=version+1 WHERE id=?",
                [self.clock(), rid],
            )
            self._bump_directory(db)

    def remove_resident(self, rid: int) -> list[Path]:
        """Erase a resident and everything derived from them: templates, enrollment photos and
        event snapshots (event rows stay, anonymised, as the gate's audit trail). Returns the
        files to delete; the caller deletes them after the commit, so a crash leaves orphan
        files (swept by retention) rather than rows pointing at nothing."""
        with self.write() as db:
            files = [Path(r["path"]) for r in db.query(
                "SELECT path FROM enrollment_photos WHERE resident_id = ?", [rid])]
            files += [Path(r["snapshot"]) for r in db.query(
                "SELECT snapshot FROM events WHERE resident_id = ? AND snapshot IS NOT NULL", [rid])]
            db.execute("UPDATE events SET snapshot = NULL, snapshot_bytes = 0 WHERE resident_id = ?", [rid])
            db.execute("DELETE FROM templates WHERE owner_kind = 'resident' AND owner_id = ?", [rid])
            wl = [r["id"] for r in db.query("SELECT id FROM watchlist WHERE resident_id = ?", [rid])]
            for wid in wl:
                db.execute("DELETE FROM templates WHERE owner_kind = 'watchlist' AND owner_id = ?", [wid])
            db.execute("DELETE FROM residents WHERE id = ?", [rid])
            self._bump_directory(db)
        return files

    def add_enrollment_photo(self, rid: int, path: Path) -> None:
        with self.write() as db:
            db.execute("INSERT INTO enrollment_photos (resident_id, path) VALUES (?, ?)", [rid, str(path)])

    # --- watchlist -------------------------------------------------------------------------

    def add_watch(self, name: str, reason: str, resident_id: int | None,
                  templates: list[tuple[np.ndarray, float]], model_id: str) -> WatchEntry:
        now = self.clock()
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO watchlist (uid, name, reason, resident_id, created_at) VALUES (?,?,?,?,?)",
                [str(ULID()), name, reason, resident_id, now],
            )
            wid = int(cur.lastrowid)
            if templates:
                self._insert_templates(db, ("watchlist", wid), templates, model_id, now)
            else:
                self._bump_directory(db)
        return self.watch_entries(wid)[0]

    def watch_entries(self, wid: int | None = None) -> list[WatchEntry]:
        sql = "SELECT id, uid, name, reason, resident_id, created_at FROM watchlist"
        rows = self.db.query(sql + (" WHERE id = ?" if wid is not None else " ORDER BY id"),
                             [wid] if wid is not None else [])
        return [WatchEntry(**r) for r in rows]

    def remove_watch(self, wid: int) -> bool:
        with self.write() as db:
            db.execute("DELETE FROM templates WHERE owner_kind='watchlist' AND owner_id=?", [wid])
            cur = db.execute("DELETE FROM watchlist WHERE id = ?", [wid])
            self._bump_directory(db)
        return cur.rowcount > 0

    def watched_residents(self) -> dict[int, WatchEntry]:
        return {w.resident_id: w for w in self.watch_entries() if w.resident_id is not None}

    # --- templates -------------------------------------------------------------------------

    def iter_templates(self, model_id: str) -> Iterator[tuple[OwnerKey, np.ndarray]]:
        for r in self.db.query(
            "SELECT owner_kind, owner_id, embedding FROM templates WHERE model_id = ? "
            "ORDER BY owner_kind, owner_id", [model_id]
        ):
            yield (r["owner_kind"], r["owner_id"]), np.frombuffer(r["embedding"], "<f4")

    def foreign_model_templates(self, model_id: str) -> int:
        """Templates made by another embedding model: unusable until those people re-enroll."""
        return int(self.db.execute("SELECT count(*) FROM templates WHERE model_id != ?",
                                   [model_id]).fetchone()[0])

    # --- events ----------------------------------------------------------------------------

    def insert_event(self, row: dict[str, Any], seen_resident: int | None = None) -> None:
        """The event row, and the resident's last-seen time on a grant, in one transaction."""
        with self.write() as db:
            db["events"].insert(row)
            if seen_resident is not None:
                db.execute("UPDATE residents SET last_seen_at = ? WHERE id = ?", [row["ts"], seen_resident])

    def events(self, since: float | None = None, kind: str | None = None, gate: str | None = None,
               limit: int = 1000) -> list[EventRow]:
        where, args = [], []
        for cond, val in (("ts >= ?", since), ("kind = ?", kind), ("gate = ?", gate)):
            if val is not None:
                where.append(cond)
                args.append(val)
        sql = ("SELECT id, ts, gate, kind, decision, reason, resident_id, watchlist_id, score, snapshot "
               "FROM events" + (" WHERE " + " AND ".join(where) if where else "") +
               " ORDER BY id DESC LIMIT ?")
        return [EventRow(**r) for r in self.db.query(sql, args + [limit])][::-1]

    def snapshot_usage(self) -> tuple[int, int]:
        """(number of snapshot files, total bytes) referenced by events."""
        n, total = self.db.execute(
            "SELECT count(*), coalesce(sum(snapshot_bytes), 0) FROM events WHERE snapshot IS NOT NULL"
        ).fetchone()
        return int(n), int(total)

    def expire_snapshots(self, older_than: float, max_bytes: int) -> list[Path]:
        """Detach the snapshots older than the cut-off, then the oldest until the total fits the
        byte budget. Returns the files to delete (after the commit, as for removals)."""
        with self.write() as db:
            doomed = [(r["id"], r["snapshot"]) for r in db.query(
                "SELECT id, snapshot FROM events WHERE snapshot IS NOT NULL AND ts < ?", [older_than])]
            _, total = self.snapshot_usage()
            total -= sum(r["snapshot_bytes"] for r in db.query(
                "SELECT snapshot_bytes FROM events WHERE snapshot IS NOT NULL AND ts < ?", [older_than]))
            if total > max_bytes:
                for r in db.query(
                    "SELECT id, snapshot, snapshot_bytes FROM events WHERE snapshot IS NOT NULL "
                    "AND ts >= ? ORDER BY ts", [older_than]
                ):
                    if total <= max_bytes:
                        break
                    doomed.append((r["id"], r["snapshot"]))
                    total -= r["snapshot_bytes"]
            for eid, _ in doomed:
                db.execute("UPDATE events SET snapshot = NULL, snapshot_bytes = 0 WHERE id = ?", [eid])
        return [Path(p) for _, p in doomed]
