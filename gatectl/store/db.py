"""The one connection and its writer lock every repository shares: WAL, synchronous=FULL, a busy
timeout, BEGIN IMMEDIATE writes, and every sqlite3 error as one StoreError line naming the file."""

from __future__ import annotations

import errno
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from gatectl.core.errors import GatectlError
from gatectl.core.metrics import STORE_WRITE
from gatectl.store.migrations import migrations


class StoreError(GatectlError):
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


def row_id(cur: sqlite3.Cursor) -> int:
    """The id SQLite gave the row the INSERT on ``cur`` just made; sqlite3 leaves it None only
    when no row was inserted, which for these INSERTs means the database is not behaving."""
    if cur.lastrowid is None:
        raise StoreError("the database reported no id for a row just inserted")
    return cur.lastrowid


def now_wall() -> float:
    return time.time()


def reads(method: Callable) -> Callable:
    """A query the daemon runs while serving (directory reload, plate lookup, outbox drain,
    status): a broken file raises the store's one-line StoreError, never a raw sqlite3 error.
    It runs under the writer lock: sqlite-utils wraps a query in a savepoint, and on the shared
    writer connection that savepoint interleaved with another thread's transaction fails
    ("no such savepoint") - found by the clock-jump test, a status read racing an alert event."""

    @functools.wraps(method)
    def wrapper(self: StoreBase, *args: Any, **kwargs: Any) -> Any:
        try:
            with self._lock:
                return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: read failed ({exc})") from None

    return wrapper


class StoreBase:
    """The connection, the writer lock and the outbox primitive the repositories share."""

    def __init__(self, path: Path, clock: Callable[[], float] = now_wall, *, publish: bool = False,
                 publish_snapshots: bool = True, outbox_max: int = 100_000,
                 snapshot_kinds: frozenset[str] | None = None):
        """``publish``: central sync is configured, so events and local enrollment changes also
        go to the outbox, in the same transaction (nothing is recorded that is not also queued).
        ``outbox_max`` bounds the outbox; beyond it the oldest snapshots, then the oldest events
        are dropped and counted (`outbox_dropped_*` in meta). ``snapshot_kinds``: the events
        whose snapshot is queued for the centre (`[sync] snapshot_kinds`)."""
        self.path = Path(path)
        self.clock = clock
        self.publish = publish
        self.publish_snapshots = publish_snapshots
        self.snapshot_kinds = snapshot_kinds  # `config.sync.snapshot_kind`s uploaded; None: all
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
                STORE_WRITE.observe(time.monotonic() - t0)
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

    @reads
    def directory_rev(self) -> int:
        """Bumped by every change to residents, templates or the watchlist, from any process,
        so a running daemon notices a CLI enrollment without a restart."""
        return int(
            self.db.execute("SELECT value FROM meta WHERE key='directory_rev'").fetchone()[0]
        )

    def _enqueue(self, db: Database, kind: str, ref: str) -> None:
        if not self.publish:
            return
        cur = db.execute(
            "INSERT INTO outbox (kind, ref, created_at) VALUES (?, ?, ?)", [kind, ref, self.clock()]
        )
        first = db.execute("SELECT min(seq) FROM outbox").fetchone()[0]
        if row_id(cur) - first >= self.outbox_max:  # cheap bound; exact count only when near
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

    @reads
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
