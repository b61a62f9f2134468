"""SQLite store: schema, migrations and queries for residents, templates, watchlist and events.

Power cuts on SD cards are the normal case, so the connection runs WAL with synchronous=FULL
(a committed audit row survives), a busy timeout (the CLI and the daemon share the file) and
foreign keys on. Face templates live in their own table holding no name or unit (GB/T 35273:
biometric data kept apart from identity data). Every write takes one lock, so the daemon's
threads share a single writer connection.
"""

from __future__ import annotations

import errno
import functools
import os
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
    """The database cannot be opened, read or written; one line naming the file."""


BUSY_TIMEOUT_MS = 5000  # CLI and maintenance writes wait this long for another writer


def _read_only(folder: Path) -> bool:
    """Whether the filesystem holding ``folder`` (or its nearest existing parent) is read-only."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _open_error(path: Path, exc: BaseException) -> str:
    """One line for a store that cannot be opened; a read-only filesystem (an SD card the kernel
    remounted read-only after I/O errors) says so plainly instead of SQLite's 'unable to open'."""
    if _read_only(path.parent) or getattr(exc, "errno", None) == errno.EROFS:
        return (
            f"{path}: the filesystem holding the state folder is read-only; remount it read-write "
            f"(a failing SD card is often remounted read-only) or set storage.database elsewhere"
        )
    if isinstance(exc, OSError):
        return f"{path}: cannot create database folder ({exc.strerror})"
    return f"{path}: cannot open database ({exc})"


def _row_id(cur: sqlite3.Cursor) -> int:
    """The id SQLite gave the row the INSERT on ``cur`` just made; sqlite3 leaves it None only
    when no row was inserted, which for these INSERTs means the database is not behaving."""
    if cur.lastrowid is None:
        raise StoreError("the database reported no id for a row just inserted")
    return cur.lastrowid


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
        CREATE TABLE vehicles_inside (
            plate TEXT PRIMARY KEY,
            entered_at REAL NOT NULL,
            lane TEXT NOT NULL
        );
        """
    )


_NEVER_REUSED = ("residents", "watchlist")


@migrations(transactional=False)
def m004_ids_never_reused(db: Database) -> None:
    """Resident and watchlist ids are never handed out again (AUTOINCREMENT): with a plain
    INTEGER PRIMARY KEY, removing the newest resident gave the next one the same id, and with it
    the cooldown and anti-passback state the gates keep by id.

    SQLite cannot add AUTOINCREMENT to a table, so each is rebuilt and renamed over the old one.
    That needs foreign keys off (dropping the old table would otherwise cascade into templates'
    owners, events and plates), and PRAGMA foreign_keys is ignored inside a transaction: hence
    a non-transactional migration with a transaction of its own, re-runnable if a crash comes
    between its COMMIT and the record of it being applied. The sequence starts at the highest id
    still referenced anywhere."""
    conn = db.conn
    if all("AUTOINCREMENT" in (db[t].schema or "").upper() for t in _NEVER_REUSED):
        return
    conn.execute("PRAGMA foreign_keys=OFF")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in _NEVER_REUSED:
                sql = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name=?",
                                   [table]).fetchone()[0]
                if "AUTOINCREMENT" in sql.upper():
                    continue
                head = f"CREATE TABLE {table} ("
                if not sql.startswith(head) or "id INTEGER PRIMARY KEY," not in sql:
                    raise sqlite3.DatabaseError(f"unexpected schema of table {table}")
                body = sql[len(head) :].replace(
                    "id INTEGER PRIMARY KEY,", "id INTEGER PRIMARY KEY AUTOINCREMENT,", 1
                )
                conn.execute(f"CREATE TABLE {table}_new ({body}")
                conn.execute(f"INSERT INTO {table}_new SELECT * FROM {table}")
                conn.execute(f"DROP TABLE {table}")
                conn.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
            highest = {
                "residents": "SELECT max(x) FROM (SELECT max(id) x FROM residents UNION ALL "
                             "SELECT max(resident_id) FROM events UNION ALL "
                             "SELECT max(owner_id) FROM templates WHERE owner_kind = 'resident')",
                "watchlist": "SELECT max(x) FROM (SELECT max(id) x FROM watchlist UNION ALL "
                             "SELECT max(watchlist_id) FROM events UNION ALL "
                             "SELECT max(owner_id) FROM templates WHERE owner_kind = 'watchlist')",
            }
            for table, query in highest.items():
                top = conn.execute(query).fetchone()[0] or 0
                conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", [table])
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [table, top])
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise sqlite3.DatabaseError(f"ids migration would break {len(broken)} reference(s)")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("PRAGMA foreign_keys=ON")


@migrations()
def m005_anti_passback(db: Database) -> None:
    """Timed anti-passback survives a restart: the last grant per door and resident, by wall
    time (the controllers' monotonic clock starts again with the process). Erasing the
    resident erases these rows."""
    db.executescript(
        """
        CREATE TABLE anti_passback (
            door TEXT NOT NULL,
            resident_id INTEGER NOT NULL REFERENCES residents(id) ON DELETE CASCADE,
            ts REAL NOT NULL,
            PRIMARY KEY (door, resident_id)
        );
        CREATE INDEX anti_passback_resident ON anti_passback(resident_id);
        """
    )


# Enrollment versions are the centre's issue time in milliseconds: a version beyond 2100-01-01
# cannot be genuine. Far below SQLite's int64, so `version + 1` never overflows either.
MAX_VERSION = 4_102_444_800_000


@migrations()
def m006_authority(db: Database) -> None:
    """Outbox rows are deleted when the centre acknowledges them by event id (an index on ref),
    and versions no signed change can carry - planted through the unsigned enrollment channel
    of earlier releases (2**62 blocked a re-add; 2**63-1 crashed `residents remove`) - are reset,
    so the centre's next change corrects those records."""
    db.executescript(f"""
        CREATE INDEX IF NOT EXISTS outbox_ref ON outbox(ref);
        UPDATE residents SET version = 0 WHERE version >= {MAX_VERSION} OR version < 0;
        UPDATE watchlist SET version = 0 WHERE version >= {MAX_VERSION} OR version < 0;
        UPDATE tombstones SET version = 0 WHERE version >= {MAX_VERSION} OR version < 0;
        """)


def _stored_version(version: int) -> int:
    """A version as it may be written: ValueError (never SQLite's OverflowError) otherwise."""
    if not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
        raise ValueError(f"version {version!r} outside 0..{MAX_VERSION}")
    return version


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
        return max(
            t for t in (self.created_at, self.last_seen_at, self.reactivated_at) if t is not None
        )


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


def _reads(method: Callable) -> Callable:
    """A query the daemon runs while serving (directory reload, plate lookup, outbox drain,
    status): a broken file raises the store's one-line StoreError, never a raw sqlite3 error.
    It runs under the writer lock: sqlite-utils wraps a query in a savepoint, and on the shared
    writer connection that savepoint interleaved with another thread's transaction fails
    ("no such savepoint") - found by the clock-jump test, a status read racing an alert event."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            with self._lock:
                return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: read failed ({exc})") from None

    return wrapper


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
            conn = sqlite3.connect(
                str(self.path),
                timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
                isolation_level=None,
            )
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
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
        except sqlite3.Error as exc:
            raise StoreError(_open_error(self.path, exc)) from None
        except OSError as exc:
            raise StoreError(_open_error(self.path, exc)) from None

    @property
    def schema_version(self) -> int:
        return len(migrations.applied(self.db))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self, wait_s: float | None = None) -> Iterator[Database]:
        """One transaction under the writer lock; any sqlite3 error (disk full, I/O error, a
        corrupt page, a read-only file) becomes a one-line StoreError.

        BEGIN IMMEDIATE takes SQLite's write lock up front, so a writer on another connection
        (the sync thread, the CLI) makes this one wait out the busy timeout. A deferred BEGIN
        that reads first and writes later fails at once with "database is locked" when another
        connection wrote in between - the busy handler cannot help it.

        ``wait_s`` bounds the wait for both locks (this store's thread lock and SQLite's write
        lock) on the decision path: a backup or a `sqlite3` shell holding the write lock then
        costs a door ``wait_s``, not the 5 s busy timeout; the caller takes the disk-full path."""
        t0 = time.monotonic()
        if not self._lock.acquire(timeout=-1 if wait_s is None else wait_s):
            raise StoreError(
                f"{self.path}: write failed (busy: another writer held the lock > {wait_s:.2f} s)"
            )
        try:
            nested = self.db.conn.in_transaction
            budget = None if nested else wait_s
            try:
                if budget is not None:  # what is left of the budget, for SQLite's lock
                    left_ms = max(1, round((budget - (time.monotonic() - t0)) * 1000))
                    self.db.execute(f"PRAGMA busy_timeout={left_ms}")
                try:
                    self.db.execute("SAVEPOINT nested" if nested else "BEGIN IMMEDIATE")
                finally:
                    if budget is not None:
                        self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            except sqlite3.Error as exc:
                raise StoreError(self._write_error(exc)) from None
            try:
                yield self.db
                self.db.execute("RELEASE nested" if nested else "COMMIT")
            except BaseException as exc:
                self._rollback(nested)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(self._write_error(exc)) from None
                raise
        finally:
            self._lock.release()

    def _write_error(self, exc: sqlite3.Error) -> str:
        if _read_only(self.path.parent):
            return f"{self.path}: write failed (the filesystem is read-only: {exc})"
        return f"{self.path}: write failed ({exc})"

    def _rollback(self, nested: bool) -> None:
        """Undo the open transaction; on a broken file the rollback may fail too, and then the
        connection is left without a transaction rather than raising a second error."""
        try:
            if nested:
                self.db.execute("ROLLBACK TO nested")
                self.db.execute("RELEASE nested")
            elif self.db.conn.in_transaction:
                self.db.execute("ROLLBACK")
        except sqlite3.Error:
            if not nested and self.db.conn.in_transaction:
                try:
                    self.db.conn.rollback()
                except sqlite3.Error:
                    pass

    def _bump_directory(self, db: Database) -> None:
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'directory_rev'")

    @_reads
    def directory_rev(self) -> int:
        """Bumped by every change to residents, templates or the watchlist, from any process,
        so a running daemon notices a CLI enrollment without a restart."""
        return int(
            self.db.execute("SELECT value FROM meta WHERE key='directory_rev'").fetchone()[0]
        )

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
            rid = _row_id(cur)
            self._insert_templates(db, ("resident", rid), templates, model_id, now)
            self._enqueue_enroll(db, rid)
        return self.resident(rid)

    def _insert_templates(
        self,
        db: Database,
        owner: OwnerKey,
        templates: list[tuple[np.ndarray, float]],
        model_id: str,
        now: float,
    ) -> None:
        db.table("templates").insert_all(
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

    def resident_by_uid(self, uid: str) -> Resident | None:
        """By uid only: what protocol code (sync, commands) must use - an id or a name coming
        from the network must never select somebody."""
        rows = list(self.db.query("SELECT * FROM residents WHERE uid = ?", [uid]))
        return _resident(rows[0]) if rows else None

    def find_residents(self, key: str) -> list[Resident]:
        """By id, uid or exact name: what a technician types (never protocol code)."""
        args: list[int | str]
        if key.isdigit():
            sql, args = "SELECT * FROM residents WHERE id = ?", [int(key)]
        else:
            sql, args = "SELECT * FROM residents WHERE uid = ? OR name = ?", [key, key]
        return [_resident(r) for r in self.db.query(sql, args)]

    @_reads
    def residents(self) -> list[Resident]:
        return [_resident(r) for r in self.db.query("SELECT * FROM residents ORDER BY id")]

    def template_count(self, owner: OwnerKey) -> int:
        return int(
            self.db.execute(
                "SELECT count(*) FROM templates WHERE owner_kind=? AND owner_id=?", list(owner)
            ).fetchone()[0]
        )

    def set_status(self, rid: int, status: str) -> None:
        with self.write() as db:
            db.execute(
                "UPDATE residents SET status = ?, version = min(version + 1, ?) WHERE id = ?",
                [status, MAX_VERSION, rid],
            )
            self._bump_directory(db)
            self._enqueue_enroll(db, rid)

    def reactivate(self, rid: int) -> None:
        """Technician vouches for the person: active again, inactivity clock restarts now."""
        with self.write() as db:
            db.execute(
                "UPDATE residents SET status='active', reactivated_at=?, "
                "version=min(version+1, ?) WHERE id=?",
                [self.clock(), MAX_VERSION, rid],
            )
            self._bump_directory(db)
            self._enqueue_enroll(db, rid)

    def update_resident(
        self, rid: int, *, name: str | None = None, unit: str | None = None
    ) -> Resident:
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
                db.execute(
                    "DELETE FROM templates WHERE owner_kind = 'resident' AND owner_id = ?", [rid]
                )
            self._insert_templates(db, ("resident", rid), templates, model_id, now)
            db.execute(
                "UPDATE residents SET reactivated_at = ?, version = version + 1 WHERE id = ?",
                [now, rid],
            )
            self._enqueue_enroll(db, rid)
        return files

    def remove_resident(self, rid: int, publish: bool = True) -> list[Path]:
        """Erase a resident and everything derived from them: templates, enrollment photos,
        event snapshots, and their name and unit wherever an event reason still carries them
        (rows written before reasons referenced ids only); event rows stay, anonymised, as the
        gate's audit trail. Returns the files to delete; the caller deletes them after the
        commit, so a crash leaves orphan files (swept by retention) rather than rows pointing
        at nothing.

        A watchlist entry made from this resident is kept, detached, with the resident's face
        templates moved to it: a guard expects someone on the watchlist to still raise the alert
        after they moved out (`gatectl watchlist remove` erases the entry and the face)."""
        with self.write() as db:
            files = [
                Path(r["path"])
                for r in db.query("SELECT path FROM enrollment_photos WHERE resident_id = ?", [rid])
            ]
            files += [
                Path(r["snapshot"])
                for r in db.query(
                    "SELECT snapshot FROM events WHERE resident_id = ? AND snapshot IS NOT NULL",
                    [rid],
                )
            ]
            db.execute(
                "UPDATE events SET snapshot = NULL, snapshot_bytes = 0 WHERE resident_id = ?", [rid]
            )
            person = db.execute("SELECT name, unit FROM residents WHERE id = ?", [rid]).fetchone()
            if person is not None:
                self._scrub_reasons(db, rid, *person)
            wl = [
                r["id"]
                for r in db.query(
                    "SELECT id FROM watchlist WHERE resident_id = ? ORDER BY id", [rid]
                )
            ]
            if wl:
                db.execute(
                    "UPDATE templates SET owner_kind = 'watchlist', owner_id = ? "
                    "WHERE owner_kind = 'resident' AND owner_id = ?",
                    [wl[0], rid],
                )
                db.execute(
                    "UPDATE watchlist SET resident_id = NULL, version = version + 1 "
                    "WHERE resident_id = ?",
                    [rid],
                )
            db.execute(
                "DELETE FROM templates WHERE owner_kind = 'resident' AND owner_id = ?", [rid]
            )
            row = db.execute("SELECT uid, version FROM residents WHERE id = ?", [rid]).fetchone()
            db.execute("DELETE FROM residents WHERE id = ?", [rid])
            if row is not None:
                uid, version = row
                db.execute("INSERT OR REPLACE INTO tombstones VALUES (?, 'resident', ?, ?)",
                           [uid, min(version + 1, MAX_VERSION), self.clock()])
                if publish:  # not when the deletion came from the centre
                    self._enqueue(db, "enroll", uid)
            self._bump_directory(db)
        return files

    @staticmethod
    def _scrub_reasons(db: Database, rid: int, name: str, unit: str) -> None:
        """The name out of every event reason (a command's text may name anyone), the unit out
        of the resident's own events (a unit alone, such as "1", is too common to replace
        everywhere)."""
        erased = f"[resident #{rid}]"
        if name.strip():
            db.execute(
                "UPDATE events SET reason = replace(reason, ?, ?) WHERE instr(reason, ?) > 0",
                [name, erased, name],
            )
        if unit.strip():
            db.execute("UPDATE events SET reason = replace(reason, ?, '[unit]') "
                       "WHERE resident_id = ? AND instr(reason, ?) > 0", [unit, rid, unit])
        # a plate decision names the unit of the plate's resident ("京A12345 entry: resident 3-1")
        for plate, plate_unit in db.execute(
            "SELECT plate, unit FROM plates WHERE resident_id = ?", [rid]
        ).fetchall():
            for u in {unit, plate_unit} - {""}:
                db.execute("UPDATE events SET reason = replace(reason, ?, '[unit]') "
                           "WHERE instr(reason, ?) > 0 AND instr(reason, ?) > 0", [u, plate, u])

    # --- replication (central sync) ---------------------------------------------------------

    def version_of(self, uid: str) -> tuple[str | None, int]:
        """('resident' | 'watchlist' | 'tombstone' | None, version) of a uid: what an incoming
        change must beat."""
        for kind, table in (
            ("resident", "residents"),
            ("watchlist", "watchlist"),
            ("tombstone", "tombstones"),
        ):
            row = self.db.execute(f"SELECT version FROM {table} WHERE uid = ?", [uid]).fetchone()
            if row is not None:
                return kind, int(row[0])
        return None, 0

    def templates_of(self, owner: OwnerKey) -> list[tuple[np.ndarray, float, str]]:
        return [
            (np.frombuffer(r["embedding"], "<f4"), r["quality"], r["model_id"])
            for r in self.db.query(
                "SELECT embedding, quality, model_id FROM templates WHERE owner_kind = ? "
                "AND owner_id = ? ORDER BY id",
                list(owner),
            )
        ]

    def replicate_resident(
        self,
        uid: str,
        version: int,
        name: str,
        unit: str,
        status: str,
        templates: list[tuple[np.ndarray, float]] | None,
        model_id: str,
    ) -> tuple[int, int, int]:
        """Apply a resident as the centre sent it (no outbox entry: it came from there).
        ``templates`` None keeps the current ones (a status or name change). Returns (row id,
        directory revision before, after), both read inside the transaction, so a caller can
        tell whether anyone else changed the directory meanwhile."""
        _stored_version(version)
        now = self.clock()
        with self.write() as db:
            rev_before = self.directory_rev()
            db.execute("DELETE FROM tombstones WHERE uid = ?", [uid])
            row = db.execute("SELECT id FROM residents WHERE uid = ?", [uid]).fetchone()
            if row is None:
                cur = db.execute(
                    "INSERT INTO residents (uid, name, unit, status, created_at, version) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [uid, name, unit, status, now, version])
                rid = _row_id(cur)
            else:
                rid = int(row[0])
                db.execute(
                    "UPDATE residents SET name = ?, unit = ?, status = ?, version = ? WHERE id = ?",
                    [name, unit, status, version, rid],
                )
            if templates is not None:
                db.execute(
                    "DELETE FROM templates WHERE owner_kind = 'resident' AND owner_id = ?", [rid]
                )
                self._insert_templates(db, ("resident", rid), templates, model_id, now)
            self._bump_directory(db)
            rev_after = self.directory_rev()
        return rid, rev_before, rev_after

    def replicate_watch(self, uid: str, version: int, name: str, reason: str,
                        templates: list[tuple[np.ndarray, float]], model_id: str) -> None:
        _stored_version(version)
        now = self.clock()
        with self.write() as db:
            db.execute("DELETE FROM tombstones WHERE uid = ?", [uid])
            row = db.execute("SELECT id FROM watchlist WHERE uid = ?", [uid]).fetchone()
            if row is None:
                cur = db.execute(
                    "INSERT INTO watchlist (uid, name, reason, created_at, version) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [uid, name, reason, now, version],
                )
                wid = _row_id(cur)
            else:
                wid = int(row[0])
                db.execute(
                    "UPDATE watchlist SET name = ?, reason = ?, version = ? WHERE id = ?",
                    [name, reason, version, wid],
                )
                db.execute(
                    "DELETE FROM templates WHERE owner_kind = 'watchlist' AND owner_id = ?", [wid]
                )
            self._insert_templates(db, ("watchlist", wid), templates, model_id, now)

    def tombstone(self, uid: str, kind: str, version: int) -> None:
        """Remember a deletion, so an older upsert arriving late cannot bring the person back."""
        _stored_version(version)
        with self.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO tombstones VALUES (?, ?, ?, ?)",
                [uid, kind, version, self.clock()],
            )

    def tombstone_version(self, uid: str) -> int | None:
        row = self.db.execute("SELECT version FROM tombstones WHERE uid = ?", [uid]).fetchone()
        return None if row is None else int(row[0])

    def watch_by_uid(self, uid: str) -> WatchEntry | None:
        rows = list(
            self.db.query(
                "SELECT id, uid, name, reason, resident_id, created_at FROM watchlist "
                "WHERE uid = ?",
                [uid],
            )
        )
        return WatchEntry(**rows[0]) if rows else None

    def add_enrollment_photo(self, rid: int, path: str | Path) -> None:
        """``path``: relative to the snapshot folder."""
        with self.write() as db:
            db.execute(
                "INSERT INTO enrollment_photos (resident_id, path) VALUES (?, ?)", [rid, str(path)]
            )

    # --- watchlist -------------------------------------------------------------------------

    def add_watch(self, name: str, reason: str, resident_id: int | None,
                  templates: list[tuple[np.ndarray, float]], model_id: str) -> WatchEntry:
        now = self.clock()
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO watchlist (uid, name, reason, resident_id, "
                "created_at) VALUES (?,?,?,?,?)",
                [str(ULID()), name, reason, resident_id, now],
            )
            wid = _row_id(cur)
            if templates:
                self._insert_templates(db, ("watchlist", wid), templates, model_id, now)
            else:
                self._bump_directory(db)
        return self.watch_entries(wid)[0]

    @_reads
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
                           [row[0], min(row[1] + 1, MAX_VERSION), self.clock()])
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

    def insert_event(self, row: dict[str, Any], seen_resident: int | None = None,
                     wait_s: float | None = None) -> None:
        """The event row, the resident's last-seen time on a grant and the outbox entries, in
        one transaction. ``wait_s`` bounds the wait for the write lock (the decision path)."""
        with self.write(wait_s) as db:
            self._insert_event(db, row, seen_resident)

    def _insert_event(self, db: Database, row: dict[str, Any], seen_resident: int | None) -> bool:
        """INSERT OR IGNORE, so a spooled event inserted twice (a crash between the insert and
        the spool's cut) is one row and one outbox entry; True if the row is new."""
        cur = db.execute(
            f"INSERT OR IGNORE INTO events ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
        if cur.rowcount != 1:
            return False
        # the later of the stored and this pass (spooled events are late)
        if seen_resident is not None:
            db.execute(
                "UPDATE residents SET last_seen_at = "
                "max(coalesce(last_seen_at, 0), ?) WHERE id = ?",
                [row["ts"], seen_resident],
            )
        self._enqueue(db, "event", row["id"])
        if row.get("snapshot") and self.publish_snapshots:
            self._enqueue(db, "snapshot", row["id"])
        return True

    def insert_spooled(
        self, items: list[tuple[dict[str, Any], int | None]], wait_s: float | None = None
    ) -> int:
        """Events that waited in the spool, with their outbox rows, in one transaction; a
        resident or watchlist entry removed meanwhile is dropped from the row (as erasure would
        have done). Returns the number of new rows."""
        with self.write(wait_s) as db:
            residents = {r[0] for r in db.execute("SELECT id FROM residents")}
            watch = {r[0] for r in db.execute("SELECT id FROM watchlist")}
            new = 0
            for row, seen in items:
                row = dict(row)
                if row.get("resident_id") not in residents:
                    row["resident_id"], seen = None, None
                if row.get("watchlist_id") not in watch:
                    row["watchlist_id"] = None
                new += self._insert_event(db, row, seen)
        return new

    # --- anti-passback -----------------------------------------------------------------------

    def note_pass(self, door: str, resident_id: int, ts: float, window_s: float) -> None:
        """A resident's grant at a door with anti-passback; passes older than the window go."""
        with self.write() as db:
            db.execute("DELETE FROM anti_passback WHERE door = ? AND ts < ?", [door, ts - window_s])
            db.execute(
                "INSERT OR REPLACE INTO anti_passback VALUES (?, ?, ?)", [door, resident_id, ts]
            )

    def recent_passes(self, door: str, since: float) -> dict[int, float]:
        """resident id -> wall time of their last grant at ``door`` since ``since``."""
        return {int(r[0]): float(r[1]) for r in self.db.execute(
            "SELECT resident_id, ts FROM anti_passback WHERE door = ? AND ts >= ?", [door, since])}

    # --- vehicles ---------------------------------------------------------------------------

    def add_plate(
        self,
        plate: str,
        list_: str,
        *,
        resident_id: int | None = None,
        unit: str = "",
        note: str = "",
        valid_from: float | None = None,
        valid_to: float | None = None,
    ) -> int:
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO plates (plate, list, resident_id, unit, note, valid_from, "
                "valid_to, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (plate, list) "
                "DO UPDATE SET resident_id = excluded.resident_id, "
                "unit = excluded.unit, note = excluded.note, valid_from = excluded.valid_from, "
                "valid_to = excluded.valid_to",
                [plate, list_, resident_id, unit, note, valid_from, valid_to, self.clock()])
        return _row_id(cur)

    def remove_plate(self, plate: str, list_: str | None = None) -> int:
        with self.write() as db:
            cur = db.execute(
                "DELETE FROM plates WHERE plate = ?" + (" AND list = ?" if list_ else ""),
                [plate, list_] if list_ else [plate],
            )
        return cur.rowcount

    @_reads
    def plates(self, plate: str | None = None) -> list[dict[str, Any]]:
        """List entries (exact plate only: no tolerance for a wrong character)."""
        sql = ("SELECT p.*, r.name AS resident, r.status AS resident_status FROM plates p "
               "LEFT JOIN residents r ON r.id = p.resident_id")
        if plate is not None:
            return list(self.db.query(sql + " WHERE p.plate = ?", [plate]))
        return list(self.db.query(sql + " ORDER BY p.list, p.plate"))

    def record_pass(self, plate: str, lane: str, direction: str, ts: float, decision: str,
                    event_id: str | None, wait_s: float | None = None) -> float | None:
        """An entry or exit; returns the time inside for an exit of a vehicle seen entering.
        ``wait_s`` bounds the wait for the write lock (the lane's decision path)."""
        inside = None
        with self.write(wait_s) as db:
            if direction == "entry" and decision == "granted":
                db.execute(
                    "INSERT OR REPLACE INTO vehicles_inside VALUES (?, ?, ?)", [plate, ts, lane]
                )
            elif direction == "exit" and decision == "granted":
                row = db.execute(
                    "SELECT entered_at FROM vehicles_inside WHERE plate = ?", [plate]
                ).fetchone()
                if row is not None:
                    inside = ts - row[0]
                    db.execute("DELETE FROM vehicles_inside WHERE plate = ?", [plate])
            db.execute(
                "INSERT INTO vehicle_passes (plate, lane, direction, ts, decision, "
                "event_id, inside_s) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [plate, lane, direction, ts, decision, event_id, inside],
            )
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
        cur = db.execute(
            "INSERT INTO outbox (kind, ref, created_at) VALUES (?, ?, ?)", [kind, ref, self.clock()]
        )
        first = db.execute("SELECT min(seq) FROM outbox").fetchone()[0]
        if _row_id(cur) - first >= self.outbox_max:  # cheap bound; exact count only when near
            self._shed(db)

    def _enqueue_enroll(self, db: Database, rid: int) -> None:
        if self.publish:
            self._enqueue(
                db,
                "enroll",
                db.execute("SELECT uid FROM residents WHERE id = ?", [rid]).fetchone()[0],
            )

    def _shed(self, db: Database) -> None:
        """Over the bound: drop the oldest snapshots first (bulky, and the event still says what
        happened), then the oldest events; counted, and logged by the sync client's status."""
        excess = db.execute("SELECT count(*) FROM outbox").fetchone()[0] - self.outbox_max
        for kind, counter in (
            ("snapshot", "outbox_dropped_snapshots"),
            ("event", "outbox_dropped_events"),
        ):
            if excess <= 0:
                return
            cur = db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE kind = ? "
                "ORDER BY seq LIMIT ?)",
                [kind, excess])
            db.execute("UPDATE meta SET value = value + ? WHERE key = ?", [cur.rowcount, counter])
            excess -= cur.rowcount

    def enqueue(self, kind: str, ref: str) -> None:
        """An outbox entry of its own (a resync request from the CLI)."""
        with self.write() as db:
            self._enqueue(db, kind, ref)

    @_reads
    def outbox_after(self, seq: int, limit: int) -> list[dict[str, Any]]:
        """The next entries to publish, oldest first, with the event row when there is one."""
        return list(
            self.db.query(
                self._OUTBOX_SELECT + "WHERE o.seq > ? ORDER BY o.seq LIMIT ?", [seq, limit]
            )
        )

    _OUTBOX_SELECT = (
        "SELECT o.seq, o.kind, o.ref, e.ts, e.gate, e.kind AS event_kind, "
        "e.decision, e.reason, e.score, "
        "e.snapshot, r.uid AS resident_uid, w.uid AS watchlist_uid FROM outbox o "
        "LEFT JOIN events e ON o.kind IN ('event', 'snapshot') AND e.id = o.ref "
        "LEFT JOIN residents r ON r.id = e.resident_id LEFT JOIN watchlist w "
        "ON w.id = e.watchlist_id "
    )

    def outbox_rows(self, seqs: list[int]) -> list[dict[str, Any]]:
        """The entries among ``seqs`` still in the outbox (to send again), oldest first."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(seqs), 500):
            chunk = seqs[i : i + 500]
            out += self.db.query(
                self._OUTBOX_SELECT + f"WHERE o.seq IN ({','.join('?' * len(chunk))})", chunk
            )
        return sorted(out, key=lambda r: r["seq"])

    def outbox_acked(
        self, events: list[str], snapshots: list[str], requests: list[int]
    ) -> list[int]:
        """Entries the centre has confirmed (events and snapshots by event id, requests by
        seq): gone for good. Returns the seqs deleted."""
        done: list[int] = []
        with self.write() as db:
            for kinds, col, values in (("'event'", "ref", events), ("'snapshot'", "ref", snapshots),
                                       ("'enroll', 'resync'", "seq", requests)):
                for i in range(0, len(values), 500):
                    chunk = values[i : i + 500]
                    done += [
                        r[0]
                        for r in db.execute(
                            f"DELETE FROM outbox WHERE kind IN ({kinds}) "
                            f"AND {col} IN ({','.join('?' * len(chunk))}) "
                            "RETURNING seq",
                            chunk,
                        ).fetchall()
                    ]
        return done

    def outbox_done(self, seqs: list[int]) -> None:
        """Entries with nothing left to send, or refused by the broker for good: gone."""
        if not seqs:
            return
        with self.write() as db:
            for i in range(0, len(seqs), 500):
                chunk = seqs[i:i + 500]
                db.execute(f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(chunk))})", chunk)

    @_reads
    def outbox_stats(self) -> dict[str, Any]:
        n, oldest = self.db.execute("SELECT count(*), min(created_at) FROM outbox").fetchone()
        meta = dict(
            self.db.execute(
                "SELECT key, value FROM meta WHERE key LIKE 'outbox_dropped_%'"
            ).fetchall()
        )
        return {
            "pending": int(n),
            "oldest_age_s": None if oldest is None else round(self.clock() - oldest, 1),
            "dropped_events": int(meta.get("outbox_dropped_events", 0)),
            "dropped_snapshots": int(meta.get("outbox_dropped_snapshots", 0)),
        }

    # --- small counters and states shared between processes -----------------------------------

    @_reads
    def meta(self, *keys: str) -> dict[str, int]:
        """The integers stored under ``keys`` in the meta table (absent keys left out): how the
        CLI and the daemon talk without a socket (e.g. `gatectl clock trust`)."""
        marks = ",".join("?" * len(keys))
        return {k: int(v) for k, v in self.db.execute(
            f"SELECT key, value FROM meta WHERE key IN ({marks})", list(keys)).fetchall()}

    def set_meta(self, values: dict[str, int], wait_s: float | None = None) -> None:
        """Store integers under their keys in one transaction (``wait_s`` as in ``write``)."""
        with self.write(wait_s) as db:
            for key, value in values.items():
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, int(value)])

    def bump_meta(self, key: str) -> int:
        """Add one to the counter ``key`` (0 when absent) and return its new value."""
        with self.write() as db:
            db.execute(
                "INSERT INTO meta VALUES (?, 1) ON CONFLICT(key) DO UPDATE SET value = value + 1",
                [key],
            )
            return int(db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()[0])

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
            cur = db.execute(
                "INSERT INTO announcements (text, door, until_ts, created_at) VALUES (?, ?, ?, ?)",
                [text, door, until_ts, self.clock()],
            )
        return _row_id(cur)

    @_reads
    def announcements(self, now: float | None = None) -> list[dict[str, Any]]:
        """Current announcements, newest first (expired ones are not shown)."""
        now = self.clock() if now is None else now
        return list(self.db.query(
            "SELECT id, text, door, until_ts, created_at FROM announcements "
            "WHERE until_ts IS NULL OR until_ts > ? ORDER BY id DESC", [now]))

    @_reads
    def events(self, since: float | None = None, kind: str | None = None, gate: str | None = None,
               limit: int = 1000) -> list[EventRow]:
        where, args = [], []
        for cond, val in (("ts >= ?", since), ("kind = ?", kind), ("gate = ?", gate)):
            if val is not None:
                where.append(cond)
                args.append(val)
        sql = (
            "SELECT id, ts, gate, kind, decision, reason, resident_id, "
            "watchlist_id, score, snapshot "
            "FROM events"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY id DESC LIMIT ?"
        )
        return [EventRow(**r) for r in self.db.query(sql, args + [limit])][::-1]

    @_reads
    def snapshot_usage(self) -> tuple[int, int]:
        """(number of snapshot files, total bytes) referenced by events."""
        n, total = self.db.execute(
            "SELECT count(*), coalesce(sum(snapshot_bytes), 0) "
            "FROM events WHERE snapshot IS NOT NULL"
        ).fetchone()
        return int(n), int(total)

    @_reads
    def referenced_files(self) -> set[str]:
        """Every file in the snapshot folder a row still points at (event snapshots and kept
        enrollment photos): what the orphan sweep must never delete."""
        keep = {
            r[0] for r in self.db.execute("SELECT snapshot FROM events WHERE snapshot IS NOT NULL")
        }
        keep.update(str(r[0]) for r in self.db.execute("SELECT path FROM enrollment_photos"))
        return keep

    def expire_events(
        self, older_than: float, max_rows: int | None, batch: int = 2000
    ) -> list[Path]:
        """Event rows older than the cut-off (the legal keeping period of access records), then,
        over ``max_rows``, the oldest events that are not access events; an access event younger
        than the cut-off is never deleted for the count. In batches, so a first run on a large
        table holds the write lock only briefly each time. Returns the snapshots to delete."""
        files: list[Path] = []
        while batch_files := self._delete_events("ts < ? ORDER BY ts", [older_than], batch):
            files += [f for f in batch_files if f is not None]
        excess = 0 if max_rows is None else self.event_count() - max_rows
        while excess > 0:
            batch_files = self._delete_events(
                "kind != 'access' ORDER BY ts", [], min(batch, excess)
            )
            if not batch_files:
                break
            files += [f for f in batch_files if f is not None]
            excess -= len(batch_files)
        return files

    def _delete_events(self, where: str, args: list[Any], limit: int) -> list[Path | None]:
        """Delete up to ``limit`` events matching ``where`` with their outbox entries (a vehicle
        pass keeps its row, without the event link); one entry per row: its snapshot or None."""
        with self.write() as db:
            rows = db.execute(
                f"SELECT id, snapshot FROM events WHERE {where} LIMIT ?", args + [limit]
            ).fetchall()
            if rows:
                ids = [r[0] for r in rows]
                marks = ",".join("?" * len(ids))
                db.execute(
                    f"DELETE FROM outbox WHERE kind IN ('event', 'snapshot') AND ref IN ({marks})",
                    ids,
                )
                db.execute(
                    f"UPDATE vehicle_passes SET event_id = NULL WHERE event_id IN ({marks})", ids
                )
                db.execute(f"DELETE FROM events WHERE id IN ({marks})", ids)
        return [Path(r[1]) if r[1] else None for r in rows]

    @_reads
    def event_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])

    def expire_snapshots(self, older_than: float, max_bytes: int) -> list[Path]:
        """Detach the snapshots older than the cut-off, then the oldest until the total fits the
        byte budget. Returns the files to delete (after the commit, as for removals)."""
        with self.write() as db:
            doomed = [
                (r["id"], r["snapshot"])
                for r in db.query(
                    "SELECT id, snapshot FROM events WHERE snapshot IS NOT NULL AND ts < ?",
                    [older_than],
                )
            ]
            _, total = self.snapshot_usage()
            total -= sum(
                r["snapshot_bytes"]
                for r in db.query(
                    "SELECT snapshot_bytes FROM events WHERE snapshot IS NOT NULL AND ts < ?",
                    [older_than],
                )
            )
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
                db.execute(
                    "UPDATE events SET snapshot = NULL, snapshot_bytes = 0 WHERE id = ?", [eid]
                )
        return [Path(p) for _, p in doomed]


QUARANTINE_KEEP = 3  # corrupt copies kept for a technician (sqlite3 .recover); older ones go


def corruption(path: Path) -> str | None:
    """What SQLite's quick_check says is wrong with the database file, None for a healthy or
    absent one (or one that cannot be opened, which is not corruption). The check `run` acts on
    at start, so `doctor` can say the same."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return None
    except sqlite3.DatabaseError as exc:  # SQLITE_CORRUPT, SQLITE_NOTADB
        return str(exc)
    return None if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:3])


def quarantine_if_corrupt(path: Path, stamp: str) -> tuple[Path, str] | None:
    """At daemon start: if the database file is corrupt (an SD card lost pages), move it and its
    WAL aside as ``<name>.corrupt-<stamp>`` so a fresh store can be created instead of the
    service failing on every restart. Returns (where it went, what SQLite said), or None for a
    healthy or absent file. A file that merely cannot be opened (locked, read-only, missing
    folder) is not corruption: Store() reports that in one line."""
    path = Path(path)
    problem = corruption(path)
    if problem is None:
        return None
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("-wal", "-shm", ""):
        src = path.with_name(path.name + suffix)
        if src.exists():
            os.replace(src, target.with_name(target.name + suffix))
    old = sorted(path.parent.glob(f"{path.name}.corrupt-*[0-9]"))
    for stale in old[:-QUARANTINE_KEEP]:
        for suffix in ("", "-wal", "-shm"):
            stale.with_name(stale.name + suffix).unlink(missing_ok=True)
    return target, problem


# Who may pass, all-or-nothing: a resident restored without the watchlist entry or tombstone
# that concerns them would be let in, so either every one of these tables reads back whole and
# valid, or none is restored (everyone is locked out until a resync or re-enrollment).
IDENTITY_TABLES = ("residents", "watchlist", "templates", "tombstones")
# each on its own: a lost plate list or nonce table denies, never admits
SALVAGE_EXTRA = ("plates", "nonces")


def salvage(src: Path, store: Store) -> tuple[str, bool]:
    """Copy what can still be read whole from a quarantined store into the fresh one: the
    identity tables together, then the plate lists and the command nonces (so a signed command
    already run cannot be replayed). Events stay in the quarantined copy. Returns one line
    saying what was saved and lost, and whether the identities (who may pass) were restored."""
    try:
        conn = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"nothing salvaged ({exc})", False
    done, lost, identities = [], [], False
    try:
        groups = [IDENTITY_TABLES] + [(t,) for t in SALVAGE_EXTRA]
        for group in groups:
            try:
                tables = {t: _readable_rows(conn, t) for t in group}
            except (sqlite3.Error, ValueError) as exc:
                lost.append(f"{'/'.join(group)} ({exc})")
                continue
            with store.write() as db:
                for table, (cols, rows) in tables.items():
                    mine = {c.name for c in store.db[table].columns}
                    keep = [i for i, c in enumerate(cols) if c in mine]
                    names = ", ".join(cols[i] for i in keep)
                    db.execute(f"DELETE FROM {table}")
                    db.conn.executemany(
                        f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(keep))})",
                        [[r[i] for i in keep] for r in rows],
                    )
                    done.append(f"{len(rows)} {table}")
                if group is IDENTITY_TABLES:
                    store._bump_directory(db)
                    identities = True
                # the replay high-water mark goes with the nonces it prunes
                if group == ("nonces",):
                    row = conn.execute(
                        "SELECT value FROM meta WHERE key = 'command_iat_max_ms'"
                    ).fetchone()
                    if row is not None:
                        db.execute(
                            "INSERT OR REPLACE INTO meta VALUES ('command_iat_max_ms', ?)",
                            [int(row[0])],
                        )
    finally:
        conn.close()
    return ("salvaged " + ", ".join(done) if done else "nothing salvaged") + (
        "; lost " + "; ".join(lost) if lost else ""), identities


def _readable_rows(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[tuple]]:
    """Every row of a table, or an error: a corrupt page raises, and so does a face template
    that is not a finite unit vector (a page of noise that happened to parse)."""
    cur = conn.execute(f"SELECT * FROM {table}")
    cols = [d[0] for d in cur.description]
    rows = cur.fetchall()
    if table == "templates":
        emb = cols.index("embedding")
        for r in rows:
            v = (
                np.frombuffer(r[emb], "<f4")
                if isinstance(r[emb], bytes) and len(r[emb]) % 4 == 0
                else None
            )
            if (
                v is None
                or not v.size
                or not np.all(np.isfinite(v))
                or abs(float(v @ v) - 1.0) > 1e-3
            ):
                raise ValueError(f"template {r[0]} is not a unit vector")
    return cols, rows
