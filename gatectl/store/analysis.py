"""What behaviour analysis keeps (`migrations.m009_analysis`): residents' ``care`` flag, unknown
faces' embeddings clustered into anonymous strangers, and the alerts already raised."""

from __future__ import annotations

from typing import Any

import numpy as np

from gatectl.store.db import StoreBase, reads, row_id


class Analysis(StoreBase):
    """Care flags, unknown faces and anonymous strangers, raised-alert keys."""

    def set_care(self, rid: int, on: bool) -> bool:
        """Mark or unmark a resident for the not-seen rule; False if nothing changed."""
        with self.write() as db:
            if on:
                cur = db.execute(
                    "INSERT OR IGNORE INTO care VALUES (?, ?)", [rid, self.clock()]
                )
            else:
                cur = db.execute("DELETE FROM care WHERE resident_id = ?", [rid])
        return cur.rowcount == 1

    @reads
    def care(self) -> dict[int, float]:
        """resident id -> since when they are marked ``care``."""
        return {int(r[0]): float(r[1]) for r in self.db.execute("SELECT * FROM care")}

    @reads
    def unknown_faces(self, since: float, limit: int) -> list[tuple[int, float, np.ndarray]]:
        """(row, time, embedding) of the unknown faces seen since ``since``, newest first, at
        most ``limit``."""
        return [
            (int(r[0]), float(r[1]), np.frombuffer(r[2], "<f4"))
            for r in self.db.execute(
                "SELECT id, ts, embedding FROM unknown_faces WHERE ts >= ? "
                "ORDER BY ts DESC LIMIT ?",
                [since, limit],
            )
        ]

    def add_unknown_face(
        self, ts: float, gate: str, event_id: str | None, embedding: np.ndarray,
        same_as: int | None, wait_s: float | None = None,
    ) -> tuple[int, int | None]:
        """Keep one unknown face; ``same_as`` is the row of an earlier face of the same person
        (the caller's clustering), which gives both an anonymous id if the earlier one had none.
        Returns (its row, the stranger id; None: a first sighting, no id yet). ``wait_s``
        bounds the wait for the write lock (the face gate's worker calls this)."""
        vec = np.asarray(embedding, "<f4").tobytes()
        with self.write(wait_s) as db:
            stranger = None
            if same_as is not None:
                row = db.execute(
                    "SELECT stranger FROM unknown_faces WHERE id = ?", [same_as]
                ).fetchone()
                if row is not None:
                    stranger = row[0]
                    if stranger is None:
                        first = db.execute(
                            "SELECT ts FROM unknown_faces WHERE id = ?", [same_as]
                        ).fetchone()[0]
                        stranger = row_id(db.execute(
                            "INSERT INTO strangers (first_ts, last_ts) VALUES (?, ?)", [first, ts]
                        ))
                        db.execute("UPDATE unknown_faces SET stranger = ? WHERE id = ?",
                                   [stranger, same_as])
                    db.execute(
                        "UPDATE strangers SET last_ts = max(last_ts, ?) WHERE id = ?",
                        [ts, stranger],
                    )
            row = row_id(db.execute(
                "INSERT INTO unknown_faces (stranger, ts, gate, event_id, embedding) "
                "VALUES (?, ?, ?, ?, ?)",
                [stranger, ts, gate, event_id, vec],
            ))
        return row, stranger

    @reads
    def stranger_sightings(self, since: float) -> list[dict[str, Any]]:
        """Every sighting of an anonymous stranger since ``since`` (oldest first), with the
        snapshot of its event when the event still has one."""
        return list(self.db.query(
            "SELECT f.stranger, f.ts, f.gate, f.event_id, e.snapshot FROM unknown_faces f "
            "LEFT JOIN events e ON e.id = f.event_id "
            "WHERE f.stranger IS NOT NULL AND f.ts >= ? ORDER BY f.ts", [since]))

    def expire_unknown_faces(self, now: float, window_s: float, expire_s: float,
                             max_faces: int) -> int:
        """Privacy: a face seen once goes after ``window_s``; a stranger and all their faces go
        ``expire_s`` after they were last seen; beyond ``max_faces`` the oldest go. Returns the
        number of faces deleted."""
        with self.write() as db:
            n = db.execute(
                "DELETE FROM unknown_faces WHERE stranger IS NULL AND ts < ?", [now - window_s]
            ).rowcount
            n += db.execute(  # their faces, then the ids
                "DELETE FROM unknown_faces WHERE stranger IN "
                "(SELECT id FROM strangers WHERE last_ts < ?)", [now - expire_s]
            ).rowcount
            db.execute("DELETE FROM strangers WHERE last_ts < ?", [now - expire_s])
            total = db.execute("SELECT count(*) FROM unknown_faces").fetchone()[0]
            if total > max_faces:
                n += db.execute(
                    "DELETE FROM unknown_faces WHERE id IN "
                    "(SELECT id FROM unknown_faces ORDER BY ts LIMIT ?)", [total - max_faces]
                ).rowcount
                db.execute(
                    "DELETE FROM strangers WHERE id NOT IN "
                    "(SELECT stranger FROM unknown_faces WHERE stranger IS NOT NULL)"
                )
        return n

    @reads
    def raised_since(self, keys: list[str], since: float) -> set[str]:
        """Which of ``keys`` were raised at or after ``since``."""
        out: set[str] = set()
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            out.update(r[0] for r in self.db.execute(
                f"SELECT key FROM analysis_raised WHERE ts >= ? AND key IN "
                f"({','.join('?' * len(part))})", [since, *part]))
        return out

    def note_raised(self, keys: list[str], ts: float, forget_before: float) -> None:
        with self.write() as db:
            db.execute("DELETE FROM analysis_raised WHERE ts < ?", [forget_before])
            for k in keys:
                db.execute("INSERT OR REPLACE INTO analysis_raised VALUES (?, ?)", [k, ts])
