"""The audit trail: event rows (with their outbox rows), anti-passback passes, announcements,
retention."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlite_utils import Database

from gatectl.config.sync import snapshot_kind
from gatectl.domain.records import EventRow
from gatectl.store.db import (
    StoreBase,
    reads,
    row_id,
)


class Events(StoreBase):
    """Events, passes, announcements and their retention."""

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
        if row.get("snapshot") and self.publish_snapshots and (
            self.snapshot_kinds is None
            or snapshot_kind(row["kind"], row.get("decision")) in self.snapshot_kinds
        ):
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

    def announce(self, text: str, door: str | None, until_ts: float | None) -> int:
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO announcements (text, door, until_ts, created_at) VALUES (?, ?, ?, ?)",
                [text, door, until_ts, self.clock()],
            )
        return row_id(cur)

    @reads
    def announcements(self, now: float | None = None) -> list[dict[str, Any]]:
        """Current announcements, newest first (expired ones are not shown)."""
        now = self.clock() if now is None else now
        return list(self.db.query(
            "SELECT id, text, door, until_ts, created_at FROM announcements "
            "WHERE until_ts IS NULL OR until_ts > ? ORDER BY id DESC", [now]))

    @reads
    def events(self, since: float | None = None, kind: str | None = None, gate: str | None = None,
               limit: int = 1000) -> list[EventRow]:
        where, args = [], []
        for cond, val in (("ts >= ?", since), ("kind = ?", kind), ("gate = ?", gate)):
            if val is not None:
                where.append(cond)
                args.append(val)
        sql = (
            "SELECT id, ts, gate, kind, decision, reason, resident_id, "
            "watchlist_id, score, snapshot, credential "
            "FROM events"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY id DESC LIMIT ?"
        )
        return [EventRow(**r) for r in self.db.query(sql, args + [limit])][::-1]

    @reads
    def snapshot_usage(self) -> tuple[int, int]:
        """(number of snapshot files, total bytes) referenced by events."""
        n, total = self.db.execute(
            "SELECT count(*), coalesce(sum(snapshot_bytes), 0) "
            "FROM events WHERE snapshot IS NOT NULL"
        ).fetchone()
        return int(n), int(total)

    @reads
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

    @reads
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
