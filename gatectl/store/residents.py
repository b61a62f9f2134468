"""Who may pass, as stored: residents, their templates (no identity columns), watchlist entries,
replication versions and tombstones, erasure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sqlite_utils import Database
from ulid import ULID

from gatectl.domain.consent import Consent
from gatectl.domain.records import OwnerKey, Resident, WatchEntry
from gatectl.store.credentials import check_face_allowed
from gatectl.store.db import (
    StoreBase,
    reads,
    row_id,
)
from gatectl.store.migrations import MAX_VERSION


def _stored_version(version: int) -> int:
    """A version as it may be written: ValueError (never SQLite's OverflowError) otherwise."""
    if not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
        raise ValueError(f"version {version!r} outside 0..{MAX_VERSION}")
    return version


def _resident(row: dict[str, Any]) -> Resident:
    return Resident(**{k: row[k] for k in Resident.__dataclass_fields__})


class Residents(StoreBase):
    """Residents, templates, the watchlist and their replication state."""

    def add_resident(self, name: str, unit: str, templates: list[tuple[np.ndarray, float]],
                     model_id: str, consent: Consent | None = None) -> Resident:
        """Resident row and its templates in one transaction: never a person without a face.
        ``consent`` is recorded in the same transaction, so the replication filter never sees
        the resident without it (None: none recorded, which counts as ``local``)."""
        now = self.clock()
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO residents (uid, name, unit, created_at) VALUES (?, ?, ?, ?)",
                [str(ULID()), name, unit, now],
            )
            rid = row_id(cur)
            self._insert_templates(db, ("resident", rid), templates, model_id, now)
            if consent is not None:
                db.execute("INSERT INTO consent (resident_id, scope, given_by, given_at) "
                           "VALUES (?, ?, ?, ?)", [rid, consent.scope, consent.by, now])
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
        if owner[0] == "resident" and templates:
            check_face_allowed(db, owner[1])
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

    @reads
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
                rid = row_id(cur)
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
                wid = row_id(cur)
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

    def add_watch(self, name: str, reason: str, resident_id: int | None,
                  templates: list[tuple[np.ndarray, float]], model_id: str) -> WatchEntry:
        now = self.clock()
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO watchlist (uid, name, reason, resident_id, "
                "created_at) VALUES (?,?,?,?,?)",
                [str(ULID()), name, reason, resident_id, now],
            )
            wid = row_id(cur)
            if templates:
                self._insert_templates(db, ("watchlist", wid), templates, model_id, now)
            else:
                self._bump_directory(db)
        return self.watch_entries(wid)[0]

    @reads
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
