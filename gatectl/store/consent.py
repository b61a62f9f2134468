"""Consent to face recognition (`gatectl.domain.consent`): recorded with the enrollment (in
`Residents.add_resident`'s transaction), read by the replication filter, withdrawn by erasing
the person's face data."""

from __future__ import annotations

from pathlib import Path

from gatectl.domain.consent import ConsentRecord
from gatectl.store.db import StoreBase, reads
from gatectl.store.migrations import MAX_VERSION


class Consents(StoreBase):
    @reads
    def consent_of(self, rid: int) -> ConsentRecord | None:
        """The resident's recorded consent; None: none recorded here (counts as ``local``)."""
        row = self.db.execute(
            "SELECT scope, given_by, given_at, withdrawn_at FROM consent WHERE resident_id = ?",
            [rid],
        ).fetchone()
        return None if row is None else ConsentRecord(*row)

    def withdraw_consent(self, rid: int) -> tuple[list[Path], str | None]:
        """Erase the resident's face data - templates, enrollment photos, event snapshots - and
        mark the consent withdrawn, in one transaction; the resident, their events and other
        credentials stay. Returns (files the caller deletes after the commit, the consent's
        scope here or None if none was recorded here); with ``site`` the erasure goes up to the
        centre, which signs it for every device. KeyError for an unknown resident."""
        now = self.clock()
        with self.write() as db:
            if db.execute("SELECT 1 FROM residents WHERE id = ?", [rid]).fetchone() is None:
                raise KeyError(rid)
            row = db.execute("SELECT scope FROM consent WHERE resident_id = ?", [rid]).fetchone()
            scope = None if row is None else str(row[0])
            files = [Path(r[0]) for r in db.execute(
                "SELECT path FROM enrollment_photos WHERE resident_id = ?", [rid])]
            files += [Path(r[0]) for r in db.execute(
                "SELECT snapshot FROM events WHERE resident_id = ? AND snapshot IS NOT NULL",
                [rid])]
            db.execute("DELETE FROM enrollment_photos WHERE resident_id = ?", [rid])
            db.execute(
                "UPDATE events SET snapshot = NULL, snapshot_bytes = 0 WHERE resident_id = ?", [rid]
            )
            db.execute(
                "DELETE FROM templates WHERE owner_kind = 'resident' AND owner_id = ?", [rid]
            )
            if row is None:
                db.execute(
                    "INSERT INTO consent (resident_id, scope, given_by, given_at, withdrawn_at) "
                    "VALUES (?, 'local', '', ?, ?)", [rid, now, now])
            else:
                db.execute("UPDATE consent SET withdrawn_at = ? WHERE resident_id = ?", [now, rid])
            db.execute(
                f"UPDATE residents SET version = min(version + 1, {MAX_VERSION}) WHERE id = ?",
                [rid],
            )
            self._bump_directory(db)
            if scope == "site":
                self._enqueue_enroll(db, rid)
        return files, scope
