"""What goes to the centre (the outbox: a row leaves only on the centre's receipt) and the
signed commands' nonces (claimed before a command runs)."""

from __future__ import annotations

from typing import Any

from gatectl.store.db import (
    StoreBase,
    reads,
)


class Outbox(StoreBase):
    """The outbox and the command nonces."""

    def enqueue(self, kind: str, ref: str) -> None:
        """An outbox entry of its own (a resync request from the CLI)."""
        with self.write() as db:
            self._enqueue(db, kind, ref)

    def backfill_enrollments(self) -> int:
        """Once per store, the first time it syncs: a request for every resident enrolled while
        sync was off (no outbox row was written for them, so the centre has never heard of
        them and could not resync them to a wiped device). Marked done in meta
        ``enroll_backfilled`` (1 + how many); the centre refuses those it owns already."""
        if not self.publish:
            return 0
        with self.write() as db:
            if db.execute("SELECT 1 FROM meta WHERE key = 'enroll_backfilled'").fetchone():
                return 0
            uids = [r[0] for r in db.execute(
                "SELECT uid FROM residents WHERE uid NOT IN "
                "(SELECT ref FROM outbox WHERE kind = 'enroll') ORDER BY id")]
            for uid in uids:
                self._enqueue(db, "enroll", uid)
            db.execute("INSERT INTO meta VALUES ('enroll_backfilled', ?)", [len(uids) + 1])
        return len(uids)

    @reads
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

    @reads
    def request_pending(self, uid: str) -> bool:
        """Whether a change made here to ``uid`` still waits for the centre's decision."""
        return self.db.execute("SELECT 1 FROM outbox WHERE kind = 'enroll' AND ref = ? LIMIT 1",
                               [uid]).fetchone() is not None

    @reads
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
