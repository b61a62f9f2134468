"""The centre's database seam: SQLite for one compound (a file, no setup) or PostgreSQL for
many (psycopg 3), chosen by the URL in central.toml, behind one small interface.

Every statement is written once, in the SQL both engines share (``?`` placeholders, rewritten
to ``%s`` for psycopg; ``INSERT ... ON CONFLICT``, ``RETURNING``), so the registry and the
ingest never branch on the engine; only the schema's column types differ, and the one
migration list (`gatectl.central.migrations`) names them per dialect.

Every write is one transaction (`Database.write`); SQLite's is ``BEGIN IMMEDIATE`` so several
worker processes on one file queue for the write lock (busy timeout) instead of failing on a
read-then-write upgrade.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from gatectl.core.errors import GatectlError

Row = tuple[Any, ...]


class StorageError(GatectlError):
    """The centre's database refused or is unreachable; one line naming it (never the password)."""


class Tx(Protocol):
    """What a transaction offers: statements with ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class Database(Protocol):
    dialect: str  # "sqlite" | "postgresql"
    where: str  # what to name in errors and logs (a path or a host, never credentials)

    @contextmanager
    def write(self) -> Iterator[Tx]: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def close(self) -> None: ...


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.conn.execute(sql, list(params)).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.conn.executemany(sql, rows)


class SqliteDatabase:
    """One connection per process, shared by its threads under a lock (the ingest is I/O
    bound on the broker, not on SQLite); WAL and synchronous=FULL: a stored event that was
    acknowledged survives a power cut."""

    dialect = "sqlite"

    def __init__(self, path: Path, busy_timeout_s: float = 30.0):
        self.where = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(
                str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"{path}: cannot open the centre's database ({exc})") from None
        self.lock = threading.Lock()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(f"{self.where}: {exc}") from None
            try:
                yield _SqliteTx(self.conn)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self.conn.execute("ROLLBACK")
                raise StorageError(f"{self.where}: {exc}") from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.lock:
            try:
                return self.conn.execute(sql, list(params)).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"{self.where}: {exc}") from None

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class _PgTx:
    def __init__(self, conn: Any):
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = self.conn.execute(sql.replace("?", "%s"), list(params))
        return cur.fetchall() if cur.description is not None else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:  # psycopg pipelines these: one round trip, not one per row
            self.conn.cursor().executemany(sql.replace("?", "%s"), rows)


class PostgresDatabase:
    """psycopg 3, one connection per process (autocommit between explicit transactions, so a
    read never holds a snapshot open); worker processes scale the connections."""

    dialect = "postgresql"

    def __init__(self, url: str):
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(url)
        self.where = f"postgresql {info.get('host', 'localhost')}:{info.get('port', 5432)}" \
            f"/{info.get('dbname', '')}"
        self._errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StorageError(f"{self.where}: cannot connect ({first})") from None
        self.lock = threading.Lock()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self.lock:
            try:
                with self.conn.transaction():
                    yield _PgTx(self.conn)
            except self._errors as exc:
                raise StorageError(f"{self.where}: {str(exc).strip()[:200]}") from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.lock:
            try:
                return _PgTx(self.conn).execute(sql, params)
            except self._errors as exc:
                raise StorageError(f"{self.where}: {str(exc).strip()[:200]}") from None

    def close(self) -> None:
        with self.lock:
            self.conn.close()
