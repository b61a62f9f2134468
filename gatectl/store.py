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


@migrations()
def m002_sync(db: Database) -> None:
    """Central sync: the durable outbox (rows reference what to publish; payloads are built when
    sent, so the outbox stays small), tombstones that make deletions win over late upserts,
    the nonces of signed commands already executed, and door-display announcements."""
    db.executescript(
        """
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('event', 'snapshot', 'enroll', 'resync')),
            ref TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE tombstones (
            uid TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('resident', 'watchlist')),
            version INTEGER NOT NULL,
            deleted_at REAL NOT NULL
        );
        CREATE TABLE nonces (nonce TEXT PRIMARY KEY, exp REAL NOT NULL);
        CREATE INDEX nonces_exp ON nonces(exp);
        CREATE TABLE announcements (
            id INTEGER PRIMARY KEY,
            text TEXT NOT NULL,
            door TEXT,
            until_ts REAL,
            created_at REAL NOT NULL
        );
        ALTER TABLE watchlist ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
        INSERT INTO meta VALUES ('outbox_dropped_events', 0), ('outbox_dropped_snapshots', 0);
        """
    )


@migrations()
def m003_vehicles(db: Database) -> None:
    """Plate lists and vehicle entry/exit records."""
    db.executescript(
        """
        CREATE TABLE plates (
            id INTEGER PRIMARY KEY,
            plate TEXT NOT NULL,
            list TEXT NOT NULL CHECK (list IN ('resident', 'visitor', 'blacklist')),
            resident_id INTEGER REFERENCES residents(id) ON DELETE CASCADE,
            unit TEXT NOT NULL DEFAULT '',
            note TEXT NOT NULL DEFAULT '',
            valid_from REAL,
            valid_to REAL,
            created_at REAL NOT NULL,
            UNIQUE (plate, list)
        );
        CREATE INDEX plates_plate ON plates(plate);
        CREATE TABLE vehicle_passes (
            id INTEGER PRIMARY KEY,
            plate TEXT NOT NULL,
            lane TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('entry', 'exit')),
            ts REAL NOT NULL,
            decision TEXT NOT NULL,
            event_id TEXT,
            inside_s REAL
        );
        CREATE INDEX vehicle_passes_plate ON vehicle_passes(plate, ts);
        CREATE INDEX vehicle_passes_ts ON vehicle_passes(ts);
        CREATE TABLE vehicles_inside (plate TEXT PRIMARY KEY, entered_at REAL NOT NULL, lane TEXT NOT NULL);
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
    def __init__(self, path: Path, clock: Callable[[], float] = now_wall, *, publish: bool = False,
                 publish_snapshots: bool = True, outbox_max: int = 100_000):
        """``publish``: central sync is configured, so events and local enrollment changes also
        go to the outbox, in the same transaction (nothing is recorded that is not also queued).
        ``outbox_max`` bounds the outbox; beyond it the oldest snapshots, then the oldest events
        are dropped and counted (`outbox_dropped_*` in meta)."""
        self.path = Path(path)
        self.clock = clock
        self.publish = publish
        self.publish_snapshots = publish_snapshots
        self.outbox_max = outbox_max
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
        """One transaction under the writer lock; a disk error becomes a one-line StoreError.

        BEGIN IMMEDIATE takes SQLite's write lock up front, so a writer on another connection
        (the sync thread, the CLI) makes this one wait out the busy timeout. A deferred BEGIN
        that reads first and writes later fails at once with "database is locked" when another
        connection wrote in between - the busy handler cannot help it."""
        with self._lock:
            nested = self.db.conn.in_transaction
            try:
                self.db.execute("SAVEPOINT nested" if nested else "BEGIN IMMEDIATE")
                try:
                    yield self.db
                except BaseException:
                    if nested:
                        self.db.execute("ROLLBACK TO nested")
                        self.db.execute("RELEASE nested")
                    else:
                        self.db.execute("ROLLBACK")
                    raise
                self.db.execute("RELEASE nested" if nested else "COMMIT")
            except sqlite3.OperationalError as exc:
                if not nested and self.db.conn.in_transaction:
                    self.db.conn.rollback()
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
            self._enqueue_enroll(db, rid)
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
            self._enqueue_enroll(db, rid)

    def reactivate(self, rid: int) -> None:
        """Technician vouches for the person: active again, inactivity clock restarts now."""
        with self.write() as db:
            db.execute(
                "UPDATE residents SET status='active', reactivated_at=?, version=version+1 WHERE id=?",
                [self.clock(), rid],
            )
            self._bump_directory(db)
            self._enqueue_enroll(db, rid)

    def update_resident(self, rid: int, *, name: str | None = None, unit: str | None = None) -> Resident:
        """Rename or move a resident (another unit); templates and history stay theirs."""
        with self.write() as db:
            db.execute("UPDATE residents SET name = coalesce(?, name), unit = coalesce(?, unit), "
                       "version = version + 1 WHERE id = ?", [name, unit, rid])
            self._bump_directory(db)
            self._enqueue_enroll(db, rid)
        return self.resident(rid)

    def add_templates(self, rid: int, templates: list[tuple[np.ndarray, float]], model_id: str, *,
                      replace: bool = False) -> list[Path]:
        """More templates for a resident, or (``replace``) these instead of all the old ones and
        their enrollment photos. Restarts the inactivity clock: a technician has just seen the
        person, which is what "re-enrollment required" asks for. Returns the photo files the
        caller deletes after the commit."""
        now = self.clock()
        with self.write() as db:
            files: list[Path] = []
            if replace:
                files = [Path(r["path"]) for r in db.query(
                    "SELECT path FROM enrollment_photos WHERE resident_id = ?", [rid])]
                db.execute("DELETE FROM enrollment_photos WHERE resident_id = ?", [rid])
                db.execute("DELETE FROM templates WHERE owner_kind = 'resident' AND owner_id = ?", [rid])
            self._insert_templates(db, ("resident", rid), templates, model_id, now)
            db.execute("UPDATE residents SET reactivated_at = ?, version = version + 1 WHERE id = ?", [now, rid])
            self._enqueue_enroll(db, rid)
        return files

    def remove_resident(self, rid: int, publish: bool = True) -> list[Path]:
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
            row = db.execute("SELECT uid, version FROM residents WHERE id = ?", [rid]).fetchone()
            db.execute("DELETE FROM residents WHERE id = ?", [rid])
            if row is not None:
                uid, version = row
                db.execute("INSERT OR REPLACE INTO tombstones VALUES (?, 'resident', ?, ?)",
                           [uid, version + 1, self.clock()])
                if publish:  # not when the deletion came from the centre
                    self._enqueue(db, "enroll", uid)
            self._bump_directory(db)
        return files

    # --- replication (central sync) ---------------------------------------------------------

    def version_of(self, uid: str) -> tuple[str | None, int]:
        """('resident' | 'watchlist' | 'tombstone' | None, version) of a uid: what an incoming
        change must beat."""
        for kind, table in (("resident", "residents"), ("watchlist", "watchlist"), ("tombstone", "tombstones")):
            row = self.db.execute(f"SELECT version FROM {table} WHERE uid = ?", [uid]).fetchone()
            if row is not None:
                return kind, int(row[0])
        return None, 0

    def templates_of(self, owner: OwnerKey) -> list[tuple[np.ndarray, float, str]]:
        return [(np.frombuffer(r["embedding"], "<f4"), r["quality"], r["model_id"]) for r in self.db.query(
            "SELECT embedding, quality, model_id FROM templates WHERE owner_kind = ? AND owner_id = ? ORDER BY id",
            list(owner))]

    def replicate_resident(self, uid: str, version: int, name: str, unit: str, status: str,
                           templates: list[tuple[np.ndarray, float]] | None, model_id: str) -> None:
        """Apply a resident as the centre sent it (no outbox entry: it came from there).
        ``templates`` None keeps the current ones (a status or name change)."""
        now = self.clock()
        with self.write() as db:
            db.execute("DELETE FROM tombstones WHERE uid = ?", [uid])
            row = db.execute("SELECT id FROM residents WHERE uid = ?", [uid]).fetchone()
            if row is None:
                cur = db.execute(
                    "INSERT INTO residents (uid, name, unit, status, created_at, version) VALUES (?, ?, ?, ?, ?, ?)",
                    [uid, name, unit, status, now, version])
                rid = int(cur.lastrowid)
            else:
                rid = int(row[0])
                db.execute("UPDATE residents SET name = ?, unit = ?, status = ?, version = ? WHERE id = ?",
                           [name, unit, status, version, rid])
            if templates is not None:
                db.execute("DELETE FROM templates WHERE owner_kind = 'resident' AND owner_id = ?", [rid])
                self._insert_templates(db, ("resident", rid), templates, model_id, now)
            self._bump_directory(db)

    def replicate_watch(self, uid: str, version: int, name: str, reason: str,
                        templates: list[tuple[np.ndarray, float]], model_id: str) -> None:
        now = self.clock()
        with self.write() as db:
            db.execute("DELETE FROM tombstones WHERE uid = ?", [uid])
            row = db.execute("SELECT id FROM watchlist WHERE uid = ?", [uid]).fetchone()
            if row is None:
                cur = db.execute("INSERT INTO watchlist (uid, name, reason, created_at, version) VALUES (?, ?, ?, ?, ?)",
                                 [uid, name, reason, now, version])
                wid = int(cur.lastrowid)
            else:
                wid = int(row[0])
                db.execute("UPDATE watchlist SET name = ?, reason = ?, version = ? WHERE id = ?",
                           [name, reason, version, wid])
                db.execute("DELETE FROM templates WHERE owner_kind = 'watchlist' AND owner_id = ?", [wid])
            self._insert_templates(db, ("watchlist", wid), templates, model_id, now)

    def tombstone(self, uid: str, kind: str, version: int) -> None:
        """Remember a deletion, so an older upsert arriving late cannot bring the person back."""
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO tombstones VALUES (?, ?, ?, ?)", [uid, kind, version, self.clock()])

    def tombstone_version(self, uid: str) -> int | None:
        row = self.db.execute("SELECT version FROM tombstones WHERE uid = ?", [uid]).fetchone()
        return None if row is None else int(row[0])

    def watch_by_uid(self, uid: str) -> WatchEntry | None:
        rows = list(self.db.query("SELECT id, uid, name, reason, resident_id, created_at FROM watchlist "
                                  "WHERE uid = ?", [uid]))
        return WatchEntry(**rows[0]) if rows else None

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
            row = db.execute("SELECT uid, version FROM watchlist WHERE id = ?", [wid]).fetchone()
            if row is not None:
                db.execute("INSERT OR REPLACE INTO tombstones VALUES (?, 'watchlist', ?, ?)",
                           [row[0], row[1] + 1, self.clock()])
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
        """The event row, the resident's last-seen time on a grant and the outbox entries, in
        one transaction."""
        with self.write() as db:
            db["events"].insert(row)
            if seen_resident is not None:
                db.execute("UPDATE residents SET last_seen_at = ? WHERE id = ?", [row["ts"], seen_resident])
            self._enqueue(db, "event", row["id"])
            if row.get("snapshot") and self.publish_snapshots:
                self._enqueue(db, "snapshot", row["id"])

    # --- vehicles ---------------------------------------------------------------------------

    def add_plate(self, plate: str, list_: str, *, resident_id: int | None = None, unit: str = "",
                  note: str = "", valid_from: float | None = None, valid_to: float | None = None) -> int:
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO plates (plate, list, resident_id, unit, note, valid_from, valid_to, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (plate, list) DO UPDATE SET resident_id = excluded.resident_id, "
                "unit = excluded.unit, note = excluded.note, valid_from = excluded.valid_from, "
                "valid_to = excluded.valid_to",
                [plate, list_, resident_id, unit, note, valid_from, valid_to, self.clock()])
        return int(cur.lastrowid)

    def remove_plate(self, plate: str, list_: str | None = None) -> int:
        with self.write() as db:
            cur = db.execute("DELETE FROM plates WHERE plate = ?" + (" AND list = ?" if list_ else ""),
                             [plate, list_] if list_ else [plate])
        return cur.rowcount

    def plates(self, plate: str | None = None) -> list[dict[str, Any]]:
        """List entries (exact plate only: no tolerance for a wrong character)."""
        sql = ("SELECT p.*, r.name AS resident, r.status AS resident_status FROM plates p "
               "LEFT JOIN residents r ON r.id = p.resident_id")
        if plate is not None:
            return list(self.db.query(sql + " WHERE p.plate = ?", [plate]))
        return list(self.db.query(sql + " ORDER BY p.list, p.plate"))

    def record_pass(self, plate: str, lane: str, direction: str, ts: float, decision: str,
                    event_id: str | None) -> float | None:
        """An entry or exit; returns the time inside for an exit of a vehicle seen entering."""
        inside = None
        with self.write() as db:
            if direction == "entry" and decision == "granted":
                db.execute("INSERT OR REPLACE INTO vehicles_inside VALUES (?, ?, ?)", [plate, ts, lane])
            elif direction == "exit" and decision == "granted":
                row = db.execute("SELECT entered_at FROM vehicles_inside WHERE plate = ?", [plate]).fetchone()
                if row is not None:
                    inside = ts - row[0]
                    db.execute("DELETE FROM vehicles_inside WHERE plate = ?", [plate])
            db.execute("INSERT INTO vehicle_passes (plate, lane, direction, ts, decision, event_id, inside_s) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", [plate, lane, direction, ts, decision, event_id, inside])
        return inside

    def vehicle_passes(self, plate: str | None = None, since: float | None = None,
                       limit: int = 1000) -> list[dict[str, Any]]:
        where, args = [], []
        for cond, val in (("plate = ?", plate), ("ts >= ?", since)):
            if val is not None:
                where.append(cond)
                args.append(val)
        sql = "SELECT * FROM vehicle_passes" + (" WHERE " + " AND ".join(where) if where else "")
        return list(self.db.query(sql + " ORDER BY ts DESC, id DESC LIMIT ?", args + [limit]))[::-1]

    def vehicles_inside(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM vehicles_inside ORDER BY entered_at"))

    # --- outbox ----------------------------------------------------------------------------

    def _enqueue(self, db: Database, kind: str, ref: str) -> None:
        if not self.publish:
            return
        cur = db.execute("INSERT INTO outbox (kind, ref, created_at) VALUES (?, ?, ?)", [kind, ref, self.clock()])
        first = db.execute("SELECT min(seq) FROM outbox").fetchone()[0]
        if cur.lastrowid - first >= self.outbox_max:  # cheap bound; exact count only when near
            self._shed(db)

    def _enqueue_enroll(self, db: Database, rid: int) -> None:
        if self.publish:
            self._enqueue(db, "enroll", db.execute("SELECT uid FROM residents WHERE id = ?", [rid]).fetchone()[0])

    def _shed(self, db: Database) -> None:
        """Over the bound: drop the oldest snapshots first (bulky, and the event still says what
        happened), then the oldest events; counted, and logged by the sync client's status."""
        excess = db.execute("SELECT count(*) FROM outbox").fetchone()[0] - self.outbox_max
        for kind, counter in (("snapshot", "outbox_dropped_snapshots"), ("event", "outbox_dropped_events")):
            if excess <= 0:
                return
            cur = db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE kind = ? ORDER BY seq LIMIT ?)",
                [kind, excess])
            db.execute("UPDATE meta SET value = value + ? WHERE key = ?", [cur.rowcount, counter])
            excess -= cur.rowcount

    def enqueue(self, kind: str, ref: str) -> None:
        """An outbox entry of its own (a resync request from the CLI)."""
        with self.write() as db:
            self._enqueue(db, kind, ref)

    def outbox_after(self, seq: int, limit: int) -> list[dict[str, Any]]:
        """The next entries to publish, oldest first, with the event row when there is one."""
        return list(self.db.query(
            "SELECT o.seq, o.kind, o.ref, e.ts, e.gate, e.kind AS event_kind, e.decision, e.reason, e.score, "
            "e.snapshot, r.uid AS resident_uid, w.uid AS watchlist_uid FROM outbox o "
            "LEFT JOIN events e ON o.kind IN ('event', 'snapshot') AND e.id = o.ref "
            "LEFT JOIN residents r ON r.id = e.resident_id LEFT JOIN watchlist w ON w.id = e.watchlist_id "
            "WHERE o.seq > ? ORDER BY o.seq LIMIT ?", [seq, limit]))

    def outbox_done(self, seqs: list[int]) -> None:
        """Entries the broker has acknowledged (PUBACK): gone for good."""
        if not seqs:
            return
        with self.write() as db:
            for i in range(0, len(seqs), 500):
                chunk = seqs[i:i + 500]
                db.execute(f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(chunk))})", chunk)

    def outbox_stats(self) -> dict[str, Any]:
        n, oldest = self.db.execute("SELECT count(*), min(created_at) FROM outbox").fetchone()
        meta = dict(self.db.execute(
            "SELECT key, value FROM meta WHERE key LIKE 'outbox_dropped_%'").fetchall())
        return {"pending": int(n), "oldest_age_s": None if oldest is None else round(self.clock() - oldest, 1),
                "dropped_events": int(meta.get("outbox_dropped_events", 0)),
                "dropped_snapshots": int(meta.get("outbox_dropped_snapshots", 0))}

    # --- signed-command nonces ---------------------------------------------------------------

    def claim(self, nonce: str, exp: float, iat: float, forget_before: float) -> bool:
        """Remember a command's nonce (with its ``exp``) and raise the high-water mark of accepted
        issue times to ``iat``; False if the nonce was seen before (a replay). Nonces are
        forgotten by command time (``exp`` before ``forget_before``, which the verifier derives
        from that mark), never by the wall clock, which can be set back. Committed before the
        command runs: a crash after it costs the command, never a repeat."""
        with self.write() as db:
            db.execute("DELETE FROM nonces WHERE exp < ?", [forget_before])
            cur = db.execute("INSERT OR IGNORE INTO nonces VALUES (?, ?)", [nonce, exp])
            if cur.rowcount == 1:
                db.execute("INSERT INTO meta VALUES ('command_iat_max_ms', ?) ON CONFLICT(key) "
                           "DO UPDATE SET value = max(value, excluded.value)", [int(iat * 1000)])
        return cur.rowcount == 1

    def newest_iat(self) -> float | None:
        """The issue time of the newest command ever accepted here (survives restarts)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'command_iat_max_ms'").fetchone()
        return None if row is None else row[0] / 1000

    # --- announcements -----------------------------------------------------------------------

    def announce(self, text: str, door: str | None, until_ts: float | None) -> int:
        with self.write() as db:
            cur = db.execute("INSERT INTO announcements (text, door, until_ts, created_at) VALUES (?, ?, ?, ?)",
                             [text, door, until_ts, self.clock()])
        return int(cur.lastrowid)

    def announcements(self, now: float | None = None) -> list[dict[str, Any]]:
        """Current announcements, newest first (expired ones are not shown)."""
        now = self.clock() if now is None else now
        return list(self.db.query(
            "SELECT id, text, door, until_ts, created_at FROM announcements "
            "WHERE until_ts IS NULL OR until_ts > ? ORDER BY id DESC", [now]))

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
