"""Backup and restore of a device's state: the store (SQLite's online backup API, consistent
while the daemon writes), its spool of refused events, the snapshot folder and the site's
installed models, in one tar file.

Order makes the copy consistent without stopping the daemon: the database is copied first, in
one backup step (one read transaction: WAL readers never block the writers), and the snapshot
folder after; the recorder writes a snapshot file before its row, so every row in the copy has
its file (unless retention deleted it in between: that row's snapshot is then missing, as it
would be on the device an hour later).

Restore is the dangerous direction: the archive is hostile until checked (member names, kinds
and sizes, the manifest, the database's integrity and schema), it refuses while a daemon holds
the store (`StoreHold`), and the current data are moved aside, never deleted.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from sqlite_utils import Database

from gatectl.store.db import StoreError
from gatectl.store.migrations import migrations

FORMAT = 1  # of the archive (manifest and layout), not of the schema
MANIFEST = "manifest.json"
DATABASE = "gatectl.db"
SPOOL = "gatectl.db.spool"
SNAPSHOTS = "snapshots"
MODELS = "models"  # the site's installed models (`gatectl models install`): a trained detector
FOLDERS = (SNAPSHOTS, MODELS)  # the folders a backup carries, by their name in it
MANIFEST_MAX = 64 * 1024
MEMBERS_MAX = 5_000_000  # files in a backup: a year of snapshots of a busy device fits


class BackupError(StoreError):
    """A backup that cannot be made or a file that cannot be restored: one line naming it."""


class StoreHold:
    """The daemon's claim on its store: an exclusive `flock` on ``<database>.lock`` for as
    long as `gatectl run` runs. The kernel drops it when the process dies, so a crash never
    leaves a stale lock. `restore` takes it too (refusing while a daemon has it), and so does a
    second `run` (two daemons on one store would drive the same doors).

    Within one process the hold is shared (counted): a reload that builds a new App on the
    same store before closing the old one is the same daemon, not a second one."""

    _held: ClassVar[dict[Path, list[Any]]] = {}  # lock path -> [open file, holders]
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, database: Path):
        self.path = database.with_name(database.name + ".lock")
        self._key: Path | None = None

    def acquire(self, what: str) -> None:
        """Take the hold or raise a one-line StoreError saying who has it; ``what`` is who asks
        (for the message)."""
        if self._key is not None:
            return
        key = self.path.resolve()
        with self._guard:
            if key in self._held:
                self._held[key][1] += 1
                self._key = key
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                f = open(self.path, "a+b")  # noqa: SIM115 - held open while the daemon runs
            except OSError:
                # a folder we cannot write (a read-only SD card): the store's own open says so
                # in its one line, and nothing can restore into it either
                return
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                raise StoreError(
                    f"{self.path.with_suffix('')}: {what}: the store is in use by a running "
                    "`gatectl run` (or a restore); stop it first: sudo systemctl stop gatectl"
                ) from None
            self._held[key] = [f, 1]
            self._key = key

    def release(self) -> None:
        if self._key is None:
            return
        with self._guard:
            entry = self._held[self._key]
            entry[1] -= 1
            if entry[1] == 0:
                entry[0].close()  # closing drops the flock
                del self._held[self._key]
            self._key = None


@dataclass(frozen=True)
class Summary:
    """What a backup holds, for the one line the CLI prints."""

    file: Path
    schema: list[str]
    residents: int
    events: int
    snapshots: int
    bytes: int


def _counts(db: Path) -> tuple[int, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return (conn.execute("SELECT count(*) FROM residents").fetchone()[0],
                conn.execute("SELECT count(*) FROM events").fetchone()[0])


def _applied(conn: sqlite3.Connection) -> list[str]:
    """The migrations a database has, in order ([] for one that has no migrations table)."""
    try:
        rows = conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY rowid",
            [migrations.name],
        ).fetchall()
    except sqlite3.Error:
        return []
    return [str(r[0]) for r in rows]


def known_migrations() -> list[str]:
    """This version's migrations, in order: all of them are pending on an empty database."""
    return [m.name for m in migrations.pending(Database(memory=True))]


def make_backup(database: Path, folders: dict[str, Path], out: Path, device: str,
                clock: Any = time.time) -> Summary:
    """Write the backup of ``database`` (with its spool) and ``folders`` (name in `FOLDERS` ->
    folder: the snapshots, the site's models) to ``out`` (through ``out.tmp``, fsynced,
    renamed: a full disk or a kill leaves no half backup under the name). Works while the daemon
    writes: reads only, one consistent database snapshot, then the folders."""
    if not database.is_file():
        raise BackupError(f"{database}: no store to back up")
    out = out.resolve()
    inside = any(f.resolve() in out.parents for f in folders.values())
    if inside or database.parent.resolve() == out.parent:
        raise BackupError(f"{out}: write the backup outside the state folder "
                          "(it would back itself up, and it is what a failed SD card loses)")
    tmp = out.with_name(out.name + ".tmp")
    work = tmp.with_name(tmp.name + ".db")
    try:
        try:
            with (sqlite3.connect(f"file:{database}?mode=ro", uri=True) as src,
                  sqlite3.connect(work) as dst):
                src.backup(dst)  # all pages in one step: one read transaction, a consistent copy
                schema = _applied(dst)
        except sqlite3.Error as exc:
            raise BackupError(f"{database}: cannot copy the store ({exc})") from None
        residents, events = _counts(work)
        manifest = {"format": FORMAT, "schema": schema, "created_at": clock(), "device": device}
        files = 0
        with open(tmp, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
            data = json.dumps(manifest).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(data), int(clock())
            tar.addfile(info, _Bytes(data))
            tar.add(work, DATABASE, recursive=False)
            spool = database.with_name(database.name + ".spool")
            if spool.is_file():
                tar.add(spool, SPOOL, recursive=False)
            for name, folder in folders.items():
                for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
                    if path.is_file() and not path.is_symlink() and path.suffix != ".tmp":
                        tar.add(path, f"{name}/{path.relative_to(folder).as_posix()}",
                                recursive=False)
                        files += name == SNAPSHOTS
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
        _fsync_dir(out.parent)
    except OSError as exc:
        raise BackupError(f"{out}: cannot write the backup ({exc.strerror or exc})") from None
    finally:
        work.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return Summary(out, schema, residents, events, files, out.stat().st_size)


class _Bytes:
    """A file-like view of bytes for `TarFile.addfile`."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        chunk, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return chunk


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _member_target(name: str) -> str | None:
    """The archive member's place (DATABASE, SPOOL or a relative snapshot path), None for the
    manifest; a name outside the layout (absolute, ``..``, anything else) is refused."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"member {name[:80]!r} is outside the backup's layout")
    if name in (MANIFEST,):
        return None
    if name in (DATABASE, SPOOL):
        return name
    if p.parts[0] in FOLDERS and len(p.parts) > 1:
        return name
    raise ValueError(f"member {name[:80]!r} is not part of a gatectl backup")


def read_manifest(tar: tarfile.TarFile, file: Path) -> dict[str, Any]:
    try:
        member = tar.getmember(MANIFEST)
    except KeyError:
        raise BackupError(f"{file}: not a gatectl backup (no {MANIFEST})") from None
    if not member.isfile() or member.size > MANIFEST_MAX:
        raise BackupError(f"{file}: {MANIFEST} is not a small file")
    f = tar.extractfile(member)
    try:
        manifest = json.loads(f.read() if f else b"")
    except ValueError:
        manifest = None
    if (not isinstance(manifest, dict) or manifest.get("format") != FORMAT
            or not isinstance(manifest.get("schema"), list)
            or not all(isinstance(s, str) for s in manifest["schema"])):
        raise BackupError(f"{file}: {MANIFEST} is not one this gatectl reads (format "
                          f"{FORMAT} with a list of migrations)")
    return manifest


def schema_problem(schema: list[str]) -> str | None:
    """Why a backup with these migrations cannot be restored by this version, or None: it may
    lack the newest ones (they are applied when the store opens), never have unknown ones."""
    known = known_migrations()
    unknown = [s for s in schema if s not in known]
    if unknown:
        return (f"its schema has migrations this gatectl does not know ({', '.join(unknown[:3])}"
                f"{'...' if len(unknown) > 3 else ''}): restore it with the version that made it")
    if schema != known[:len(schema)]:
        return "its migrations are not in this version's order: restore it with the version " \
            "that made it"
    return None


def restore_backup(file: Path, database: Path, folders: dict[str, Path],
                   clock: Any = time.time) -> tuple[Summary, Path]:
    """Put the backup ``file`` in place of the store and ``folders`` (as for `make_backup`);
    the current ones are moved aside to ``<database>.before-restore-<time>`` (a folder) first.
    Returns what was restored and where the previous data are. The caller holds the
    `StoreHold`."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(clock()))
    stage = database.with_name(f".{database.name}.restore-{stamp}")
    aside = database.with_name(f"{database.name}.before-restore-{stamp}")
    if not file.is_file():
        raise BackupError(f"{file}: no such backup file")
    try:
        with tarfile.open(file, mode="r:") as tar:
            manifest = read_manifest(tar, file)
            problem = schema_problem(manifest["schema"])
            if problem:
                raise BackupError(f"{file}: cannot restore: {problem}")
            members = _checked_members(tar, file, database.parent)
            shutil.rmtree(stage, ignore_errors=True)
            stage.mkdir(parents=True)
            try:
                files = _extract(tar, members, stage)
                _check_database(stage / DATABASE, manifest["schema"], file)
                summary = Summary(file, manifest["schema"], *_counts(stage / DATABASE), files,
                                  file.stat().st_size)
                _swap(stage, database, folders, aside)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
    except tarfile.TarError as exc:
        raise BackupError(f"{file}: not a readable backup ({exc})") from None
    except OSError as exc:
        raise BackupError(f"{file}: restore failed ({exc.strerror or exc}); "
                          f"the current data are untouched or in {aside}") from None
    return summary, aside


def _checked_members(tar: tarfile.TarFile, file: Path, dest: Path) -> list[tarfile.TarInfo]:
    members = []
    total = 0
    for i, m in enumerate(tar):
        if i >= MEMBERS_MAX:
            raise BackupError(f"{file}: more than {MEMBERS_MAX} files: not a gatectl backup")
        try:
            target = _member_target(m.name)
        except ValueError as exc:
            raise BackupError(f"{file}: {exc}") from None
        if target is None:
            continue
        if not m.isfile():
            raise BackupError(f"{file}: member {m.name[:80]!r} is not a plain file")
        members.append(m)
        total += m.size
    if not any(m.name == DATABASE for m in members):
        raise BackupError(f"{file}: no {DATABASE} in the backup")
    free = shutil.disk_usage(dest if dest.exists() else dest.parent).free
    if total * 1.05 + 64 * 2**20 > free:
        raise BackupError(f"{file}: needs {total / 2**20:.0f} MB, {free / 2**20:.0f} MB free in "
                          f"{dest}")
    return members


def _extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], stage: Path) -> int:
    files = 0
    for m in members:
        target = stage / m.name
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(m)
        if src is None:
            continue
        with src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        files += m.name.startswith(SNAPSHOTS + "/")
    return files


def _check_database(db: Path, schema: list[str], file: Path) -> None:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
            applied = _applied(conn)
    except sqlite3.Error as exc:
        raise BackupError(f"{file}: its database does not open ({exc})") from None
    if ok != "ok":
        raise BackupError(f"{file}: its database is damaged ({str(ok)[:80]})")
    if applied != schema:
        raise BackupError(f"{file}: its database's migrations differ from its manifest")
    problem = schema_problem(applied)
    if problem:
        raise BackupError(f"{file}: cannot restore: {problem}")


def _swap(stage: Path, database: Path, folders: dict[str, Path], aside: Path) -> None:
    """Move the current database (with its WAL, shm and spool) and folders into ``aside``,
    then the staged ones into place: renames, so nothing is deleted."""
    aside.mkdir()
    for suffix in ("", "-wal", "-shm", ".spool"):
        cur = database.with_name(database.name + suffix)
        if cur.exists():
            os.replace(cur, aside / cur.name)
    for name, folder in folders.items():
        if folder.exists():
            os.replace(folder, aside / name)
    os.replace(stage / DATABASE, database)
    if (stage / SPOOL).exists():
        os.replace(stage / SPOOL, database.with_name(database.name + ".spool"))
    for name, folder in folders.items():
        staged = stage / name
        folder.parent.mkdir(parents=True, exist_ok=True)
        if not staged.exists():
            folder.mkdir()
            continue
        try:
            os.replace(staged, folder)
        except OSError:  # another filesystem than the store's: copy
            shutil.copytree(staged, folder)
    _fsync_dir(database.parent)
