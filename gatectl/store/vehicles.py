"""Vehicle lists (resident, visitor, blacklist plates) and the entry/exit record of passes."""

from __future__ import annotations

from typing import Any

from gatectl.store.db import (
    StoreBase,
    reads,
    row_id,
)


class Vehicles(StoreBase):
    """Plate lists and vehicle passes."""

    def add_plate(
        self,
        plate: str,
        list_: str,
        *,
        resident_id: int | None = None,
        unit: str = "",
        note: str = "",
        valid_from: float | None = None,
        valid_to: float | None = None,
    ) -> int:
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO plates (plate, list, resident_id, unit, note, valid_from, "
                "valid_to, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (plate, list) "
                "DO UPDATE SET resident_id = excluded.resident_id, "
                "unit = excluded.unit, note = excluded.note, valid_from = excluded.valid_from, "
                "valid_to = excluded.valid_to",
                [plate, list_, resident_id, unit, note, valid_from, valid_to, self.clock()])
        return row_id(cur)

    def remove_plate(self, plate: str, list_: str | None = None) -> int:
        with self.write() as db:
            cur = db.execute(
                "DELETE FROM plates WHERE plate = ?" + (" AND list = ?" if list_ else ""),
                [plate, list_] if list_ else [plate],
            )
        return cur.rowcount

    @reads
    def plates(self, plate: str | None = None) -> list[dict[str, Any]]:
        """List entries (exact plate only: no tolerance for a wrong character)."""
        sql = ("SELECT p.*, r.name AS resident, r.status AS resident_status FROM plates p "
               "LEFT JOIN residents r ON r.id = p.resident_id")
        if plate is not None:
            return list(self.db.query(sql + " WHERE p.plate = ?", [plate]))
        return list(self.db.query(sql + " ORDER BY p.list, p.plate"))

    def record_pass(self, plate: str, lane: str, direction: str, ts: float, decision: str,
                    event_id: str | None, wait_s: float | None = None) -> float | None:
        """An entry or exit; returns the time inside for an exit of a vehicle seen entering.
        ``wait_s`` bounds the wait for the write lock (the lane's decision path)."""
        inside = None
        with self.write(wait_s) as db:
            if direction == "entry" and decision == "granted":
                db.execute(
                    "INSERT OR REPLACE INTO vehicles_inside VALUES (?, ?, ?)", [plate, ts, lane]
                )
            elif direction == "exit" and decision == "granted":
                row = db.execute(
                    "SELECT entered_at FROM vehicles_inside WHERE plate = ?", [plate]
                ).fetchone()
                if row is not None:
                    inside = ts - row[0]
                    db.execute("DELETE FROM vehicles_inside WHERE plate = ?", [plate])
            db.execute(
                "INSERT INTO vehicle_passes (plate, lane, direction, ts, decision, "
                "event_id, inside_s) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [plate, lane, direction, ts, decision, event_id, inside],
            )
        return inside

    def vehicle_passes(self, plate: str | None = None, since: float | None = None,
                       limit: int = 1000) -> list[dict[str, Any]]:
        where, args = [], []
        for cond, val in (("plate = ?", plate), ("ts >= ?", since)):
            if val is not None:
                where.append(cond)
                args.append(val)
        sql = "SELECT * FROM vehicle_passes" + (" WHERE " + " AND ".join(where) if where else "")
        return list(self.db.query(sql + " ORDER BY ts DESC, id DESC LIMIT ?", args + [limit]))[::-1]

    def vehicles_inside(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM vehicles_inside ORDER BY entered_at"))
