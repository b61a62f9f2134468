"""Credentials other than the face, as stored: cards, PIN hashes, TOTP secrets with the last step
used, visitor-pass uses and revocations, and a resident's refusal of face recognition.

Single use is decided here, inside one write transaction, so two gate workers (or two processes)
seeing the same code in the same instant cannot both open the door: a TOTP step and a pass use
are claimed with a conditional UPDATE whose row count says who won.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlite_utils import Database

from gatectl.core.errors import GatectlError
from gatectl.domain.credentials import card_number
from gatectl.store.db import StoreBase, reads
from gatectl.store.migrations import MAX_VERSION


class FaceRefused(GatectlError):
    """A template for a resident who refused face recognition: never stored."""


def check_face_allowed(db: Database, rid: int) -> None:
    """FaceRefused unless a template may be stored for resident ``rid`` (every path that stores
    one - enrollment, re-enrollment, replication - goes through the store's template insert)."""
    row = db.execute("SELECT face FROM residents WHERE id = ?", [rid]).fetchone()
    if row is not None and row[0] == "refused":
        raise FaceRefused(
            f"resident #{rid} refused face recognition: no photo or template is kept "
            "(`gatectl residents face allow` if they change their mind)"
        )


class Credentials(StoreBase):
    """Cards, PINs, TOTP secrets, visitor passes and the face refusal."""

    # ---- face refusal ----------------------------------------------------------------------

    def refuse_face(self, rid: int) -> list[Path]:
        """Mark the resident as refusing face recognition and erase their templates and
        enrollment photos (the files returned: the caller deletes them after the commit)."""
        with self.write() as db:
            db.execute("UPDATE residents SET face = 'refused', version = version + 1 WHERE id = ?",
                       [rid])
            files = [Path(r[0]) for r in db.execute(
                "SELECT path FROM enrollment_photos WHERE resident_id = ?", [rid])]
            db.execute("DELETE FROM enrollment_photos WHERE resident_id = ?", [rid])
            db.execute("DELETE FROM templates WHERE owner_kind = 'resident' AND owner_id = ?",
                       [rid])
            self._bump_directory(db)
            self._enqueue_enroll(db, rid)
        return files

    def allow_face(self, rid: int) -> None:
        with self.write() as db:
            db.execute("UPDATE residents SET face = 'allowed', version = version + 1 WHERE id = ?",
                       [rid])
            self._bump_directory(db)

    @reads
    def face_refused(self) -> set[int]:
        """Ids of the residents who refused face recognition (the directory's view)."""
        return {r[0] for r in self.db.execute("SELECT id FROM residents WHERE face = 'refused'")}

    @reads
    def refuses_face(self, rid: int) -> bool:
        row = self.db.execute("SELECT face FROM residents WHERE id = ?", [rid]).fetchone()
        return row is not None and row[0] == "refused"

    # ---- cards -----------------------------------------------------------------------------

    def add_card(self, rid: int, number: str, bits: int) -> str:
        """Enroll the card (returned in its stored form); CardTaken when it already belongs to
        someone, ValueError when it cannot be a card of ``bits`` bits."""
        canonical = card_number(number, bits)
        if canonical is None:
            raise ValueError(f"card {number!r}: not a {bits}-bit number in hex")
        number = canonical
        with self.write() as db:
            owner = db.execute("SELECT resident_id FROM cards WHERE number = ? AND bits = ?",
                               [number, bits]).fetchone()
            if owner is not None:
                raise CardTaken(f"card {number}/{bits} already belongs to resident #{owner[0]}")
            db.execute("INSERT INTO cards (resident_id, number, bits, created_at) "
                       "VALUES (?, ?, ?, ?)", [rid, number, bits, self.clock()])
            self._credentials_changed(db, rid)
        return number

    def remove_card(self, rid: int, number: str, bits: int) -> bool:
        number = card_number(number, bits) or number
        with self.write() as db:
            removed = db.execute("DELETE FROM cards WHERE resident_id = ? AND number = ? "
                                 "AND bits = ?", [rid, number, bits]).rowcount == 1
            if removed:
                self._credentials_changed(db, rid)
            return removed

    @reads
    def card_owner(self, number: str, bits: int | None) -> int | None:
        """The resident holding the card; with ``bits`` None, any bit length (a reader that does
        not report it) - and then only when a single card has that number."""
        if bits is not None:
            row = self.db.execute("SELECT resident_id FROM cards WHERE number = ? AND bits = ?",
                                  [number, bits]).fetchone()
            return None if row is None else int(row[0])
        rows = self.db.execute("SELECT resident_id FROM cards WHERE number = ?",
                               [number]).fetchall()
        return int(rows[0][0]) if len(rows) == 1 else None

    @reads
    def cards_of(self, rid: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.query(
            "SELECT number, bits, created_at FROM cards WHERE resident_id = ? ORDER BY id", [rid])]

    # ---- PINs ------------------------------------------------------------------------------

    def set_pin_hash(self, rid: int, hashed: str) -> None:
        with self.write() as db:
            _put_pin(db, rid, hashed, self.clock())
            self._credentials_changed(db, rid)

    @reads
    def pin_hashes(self, rid: int | None = None) -> dict[int, str]:
        """resident id -> PIN hash (one resident's, or all of them)."""
        sql, args = ("SELECT resident_id, hash FROM pins WHERE resident_id = ?", [rid]) \
            if rid is not None else ("SELECT resident_id, hash FROM pins", [])
        return {int(r[0]): r[1] for r in self.db.execute(sql, args)}

    # ---- TOTP ------------------------------------------------------------------------------

    def set_totp_secret(self, rid: int, secret: str) -> None:
        with self.write() as db:
            _put_totp(db, rid, secret, self.clock())
            self._credentials_changed(db, rid)

    @reads
    def totp_secret(self, rid: int) -> str | None:
        row = self.db.execute("SELECT secret FROM totp_secrets WHERE resident_id = ?",
                              [rid]).fetchone()
        return None if row is None else str(row[0])

    def claim_totp_step(self, rid: int, step: int, wait_s: float | None = None) -> bool:
        """True once per step and resident, and never for a step at or before one already used
        (a code seen later, or an older code of the window, is a replay)."""
        with self.write(wait_s) as db:
            return db.execute(
                "UPDATE totp_secrets SET last_step = ? WHERE resident_id = ? AND last_step < ?",
                [step, rid, step],
            ).rowcount == 1

    # ---- replication -----------------------------------------------------------------------

    def _credentials_changed(self, db: Database, rid: int) -> None:
        """A credential set here is a change of the resident like a new template: a newer
        version (an older change from the centre cannot undo it) and a request going up."""
        db.execute("UPDATE residents SET version = min(version + 1, ?) WHERE id = ?",
                   [MAX_VERSION, rid])
        self._enqueue_enroll(db, rid)

    def replicate_credentials(self, rid: int, cards: list[tuple[str, int]],
                              pin: str | None, totp: str | None) -> list[tuple[str, int, int]]:
        """Make the resident's cards, PIN hash and TOTP secret the centre's set (no outbox
        entry: it came from there); inside the caller's transaction, so they apply with the
        resident or not at all. The centre's signed set is the authority: a card another
        resident holds here (set on this device, which the centre refused, or moved at the
        centre and not yet taken from them here) becomes this resident's - refusing the change
        would also refuse, say, their suspension. Returns those cards as (number, bits, the
        resident who held it). A card already held keeps its row; the same secret keeps its
        last step (a resync does not make a used code new)."""
        now = self.clock()
        moved: list[tuple[str, int, int]] = []
        with self.write() as db:
            for number, bits in cards:
                owner = db.execute("SELECT resident_id FROM cards WHERE number = ? AND bits = ?",
                                   [number, bits]).fetchone()
                if owner is not None and owner[0] != rid:
                    db.execute("DELETE FROM cards WHERE number = ? AND bits = ?", [number, bits])
                    moved.append((number, bits, int(owner[0])))
            keep = {(n, b) for n, b in cards}
            for number, bits in db.execute("SELECT number, bits FROM cards WHERE resident_id = ?",
                                           [rid]).fetchall():
                if (number, bits) not in keep:
                    db.execute("DELETE FROM cards WHERE resident_id = ? AND number = ? "
                               "AND bits = ?", [rid, number, bits])
            for number, bits in sorted(keep):
                db.execute("INSERT INTO cards (resident_id, number, bits, created_at) "
                           "VALUES (?, ?, ?, ?) ON CONFLICT (number, bits) DO NOTHING",
                           [rid, number, bits, now])
            if pin is None:
                db.execute("DELETE FROM pins WHERE resident_id = ?", [rid])
            else:
                _put_pin(db, rid, pin, now)
            if totp is None:
                db.execute("DELETE FROM totp_secrets WHERE resident_id = ?", [rid])
            else:
                _put_totp(db, rid, totp, now)
        return moved

    # ---- visitor passes --------------------------------------------------------------------

    def revoke_pass(self, pass_id: str) -> bool:
        """True if newly revoked."""
        with self.write() as db:
            return db.execute("INSERT OR IGNORE INTO pass_revocations VALUES (?, ?)",
                              [pass_id, self.clock()]).rowcount == 1

    def use_pass(self, pass_id: str, max_uses: int, wait_s: float | None = None) -> str | None:
        """Count one use of the pass; None if it was counted, else why not (revoked, used up)."""
        with self.write(wait_s) as db:
            if db.execute("SELECT 1 FROM pass_revocations WHERE pass_id = ?",
                          [pass_id]).fetchone():
                return "revoked"
            now = self.clock()
            db.execute("INSERT OR IGNORE INTO pass_uses VALUES (?, 0, ?)", [pass_id, now])
            won = db.execute(
                "UPDATE pass_uses SET uses = uses + 1, last_at = ? WHERE pass_id = ? AND uses < ?",
                [now, pass_id, max_uses],
            ).rowcount == 1
            return None if won else "used up"

    @reads
    def pass_uses(self, pass_id: str) -> int:
        row = self.db.execute("SELECT uses FROM pass_uses WHERE pass_id = ?", [pass_id]).fetchone()
        return 0 if row is None else int(row[0])


class CardTaken(GatectlError):
    """The card is already enrolled for another resident."""


def _put_pin(db: Database, rid: int, hashed: str, now: float) -> None:
    db.execute("INSERT OR REPLACE INTO pins (resident_id, hash, created_at) VALUES (?, ?, ?)",
               [rid, hashed, now])


def _put_totp(db: Database, rid: int, secret: str, now: float) -> None:
    # the same secret again (a resync) keeps its last step: a used code stays used
    db.execute(
        "INSERT INTO totp_secrets (resident_id, secret, last_step, created_at) "
        "VALUES (?, ?, -1, ?) ON CONFLICT(resident_id) DO UPDATE SET "
        "last_step = CASE WHEN secret = excluded.secret THEN last_step ELSE -1 END, "
        "secret = excluded.secret, created_at = excluded.created_at",
        [rid, secret, now])
