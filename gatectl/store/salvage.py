"""A corrupt database at start: moved aside whole (for `sqlite3 .recover`), and what still reads
back copied into a fresh store - the identity tables all together or not at all."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np

from gatectl.store import Store
from gatectl.store.db import BUSY_TIMEOUT_MS

QUARANTINE_KEEP = 3  # corrupt copies kept for a technician (sqlite3 .recover); older ones go


def corruption(path: Path) -> str | None:
    """What SQLite's quick_check says is wrong with the database file, None for a healthy or
    absent one (or one that cannot be opened, which is not corruption). The check `run` acts on
    at start, so `doctor` can say the same."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return None
    except sqlite3.DatabaseError as exc:  # SQLITE_CORRUPT, SQLITE_NOTADB
        return str(exc)
    return None if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:3])


def quarantine_if_corrupt(path: Path, stamp: str) -> tuple[Path, str] | None:
    """At daemon start: if the database file is corrupt (an SD card lost pages), move it and its
    WAL aside as ``<name>.corrupt-<stamp>`` so a fresh store can be created instead of the
    service failing on every restart. Returns (where it went, what SQLite said), or None for a
    healthy or absent file. A file that merely cannot be opened (locked, read-only, missing
    folder) is not corruption: Store() reports that in one line."""
    path = Path(path)
    problem = corruption(path)
    if problem is None:
        return None
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("-wal", "-shm", ""):
        src = path.with_name(path.name + suffix)
        if src.exists():
            os.replace(src, target.with_name(target.name + suffix))
    old = sorted(path.parent.glob(f"{path.name}.corrupt-*[0-9]"))
    for stale in old[:-QUARANTINE_KEEP]:
        for suffix in ("", "-wal", "-shm"):
            stale.with_name(stale.name + suffix).unlink(missing_ok=True)
    return target, problem


# Who may pass, all-or-nothing: a resident restored without the watchlist entry or tombstone
# that concerns them would be let in, so either every one of these tables reads back whole and
# valid, or none is restored (everyone is locked out until a resync or re-enrollment).
# The other credentials belong here too: a lost revocation or use count would re-admit a visitor
# pass, and cards, PINs and codes name residents (rows after theirs: the foreign keys).
IDENTITY_TABLES = ("residents", "watchlist", "templates", "tombstones", "cards", "pins",
                   "totp_secrets", "pass_uses", "pass_revocations")


# each on its own: a lost plate list or nonce table denies, never admits; a lost consent table
# keeps every face on this device (no consent recorded counts as local). Consent only with the
# residents it belongs to. A lost list_versions table only lets an older signed plate change
# apply again, until the resync a salvage requests brings the centre's current lists back.
SALVAGE_EXTRA = ("plates", "list_versions", "nonces", "consent")


def salvage(src: Path, store: Store) -> tuple[str, bool]:
    """Copy what can still be read whole from a quarantined store into the fresh one: the
    identity tables together, then the plate lists and the command nonces (so a signed command
    already run cannot be replayed). Events stay in the quarantined copy. Returns one line
    saying what was saved and lost, and whether the identities (who may pass) were restored."""
    try:
        conn = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"nothing salvaged ({exc})", False
    done, lost, identities = [], [], False
    try:
        groups = [IDENTITY_TABLES] + [(t,) for t in SALVAGE_EXTRA]
        for group in groups:
            if group == ("consent",) and not identities:
                continue
            try:
                present = {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                # a table newer than the copy (a file corrupt before its migration ran) is empty
                tables = {t: _readable_rows(conn, t) if t in present else ([], [])
                          for t in group}
            except (sqlite3.Error, ValueError) as exc:
                lost.append(f"{'/'.join(group)} ({exc})")
                continue
            with store.write() as db:
                for table, (cols, rows) in tables.items():
                    mine = {c.name for c in store.db[table].columns}
                    keep = [i for i, c in enumerate(cols) if c in mine]
                    names = ", ".join(cols[i] for i in keep)
                    db.execute(f"DELETE FROM {table}")
                    db.conn.executemany(
                        f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(keep))})",
                        [[r[i] for i in keep] for r in rows],
                    )
                    done.append(f"{len(rows)} {table}")
                if group is IDENTITY_TABLES:
                    store._bump_directory(db)
                    identities = True
                # the replay high-water mark goes with the nonces it prunes
                if group == ("nonces",):
                    row = conn.execute(
                        "SELECT value FROM meta WHERE key = 'command_iat_max_ms'"
                    ).fetchone()
                    if row is not None:
                        db.execute(
                            "INSERT OR REPLACE INTO meta VALUES ('command_iat_max_ms', ?)",
                            [int(row[0])],
                        )
    finally:
        conn.close()
    return ("salvaged " + ", ".join(done) if done else "nothing salvaged") + (
        "; lost " + "; ".join(lost) if lost else ""), identities


def _readable_rows(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[tuple]]:
    """Every row of a table, or an error: a corrupt page raises, and so does a face template
    that is not a finite unit vector (a page of noise that happened to parse)."""
    cur = conn.execute(f"SELECT * FROM {table}")
    cols = [d[0] for d in cur.description]
    rows = cur.fetchall()
    if table == "templates":
        emb = cols.index("embedding")
        for r in rows:
            v = (
                np.frombuffer(r[emb], "<f4")
                if isinstance(r[emb], bytes) and len(r[emb]) % 4 == 0
                else None
            )
            if (
                v is None
                or not v.size
                or not np.all(np.isfinite(v))
                or abs(float(v @ v) - 1.0) > 1e-3
            ):
                raise ValueError(f"template {r[0]} is not a unit vector")
    return cols, rows
