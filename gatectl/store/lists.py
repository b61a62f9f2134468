"""The centre's plate entries and pass revocations on this device (`gatectl.sync.lists` verifies
them first): each applied only when its version is newer than the one held for that plate or
pass (``list_versions``, which a removal keeps as its tombstone), in one transaction with the
version, so a re-delivered, reordered or resynced change is harmless. A change from the centre
replaces the centre's entry of the plate (``origin = 'central'``); entries a technician added
here (`gatectl plates add`) are theirs and stay."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from gatectl.store.db import StoreBase, reads


class Lists(StoreBase):
    """Versioned changes from the centre to the plate lists and the pass revocations."""

    def _newer(self, db: Database, kind: str, ref: str, version: int) -> bool:
        """Whether ``version`` is newer than what is held for ``ref``; if so it is now held."""
        held = _held(db, kind, ref)
        if held is not None and held >= version:
            return False
        db.execute("INSERT INTO list_versions VALUES (?, ?, ?) ON CONFLICT (kind, ref) "
                   "DO UPDATE SET version = excluded.version", [kind, ref, version])
        return True

    def central_plate(self, plate: str, version: int, entry: dict[str, Any] | None,
                      resident_uid: str | None = None) -> bool:
        """The centre's entry of ``plate`` (list, unit, note, valid_from, valid_to), or None:
        removed. The resident it names is looked up by uid (held here or not: the entry applies
        either way; a suspended resident's car is refused). False when not newer than held."""
        with self.write() as db:
            if not self._newer(db, "plate", plate, version):
                return False
            db.execute("DELETE FROM plates WHERE plate = ? AND origin = 'central'", [plate])
            if entry is not None:
                row = db.execute("SELECT id FROM residents WHERE uid = ?",
                                 [resident_uid]).fetchone() if resident_uid else None
                db.execute(
                    "INSERT INTO plates (plate, list, resident_id, unit, note, valid_from, "
                    "valid_to, created_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'central') "
                    "ON CONFLICT (plate, list) DO UPDATE SET resident_id = excluded.resident_id, "
                    "unit = excluded.unit, note = excluded.note, valid_from = "
                    "excluded.valid_from, valid_to = excluded.valid_to, origin = 'central'",
                    [plate, entry["list"], None if row is None else row[0], entry["unit"],
                     entry["note"], entry["valid_from"], entry["valid_to"], self.clock()],
                )
        return True

    def central_revocation(self, pass_id: str, version: int) -> bool:
        """The centre revoked ``pass_id``: refused at every door from now on (kept, like a
        revocation by command: ids are never reused). False when not newer than held."""
        with self.write() as db:
            if not self._newer(db, "pass", pass_id, version):
                return False
            db.execute("INSERT OR IGNORE INTO pass_revocations VALUES (?, ?)",
                       [pass_id, self.clock()])
        return True

    @reads
    def list_version(self, kind: str, ref: str) -> int | None:
        """The newest version of the centre's change to a plate or pass held here."""
        return _held(self.db, kind, ref)


def _held(db: Database, kind: str, ref: str) -> int | None:
    row = db.execute("SELECT version FROM list_versions WHERE kind = ? AND ref = ?",
                     [kind, ref]).fetchone()
    return None if row is None else int(row[0])
