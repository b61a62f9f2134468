"""The schema, one migration per change (sqlite_utils.Migrations): applied in order when a store
opens, each recorded, never edited once released."""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database, Migrations

migrations = Migrations("gatectl")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE residents (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            unit TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
            created_at REAL NOT NULL,
            last_seen_at REAL,
            reactivated_at REAL,
            version INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE watchlist (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            resident_id INTEGER REFERENCES residents(id) ON DELETE CASCADE,
            created_at REAL NOT NULL
        );
        CREATE TABLE templates (
            id INTEGER PRIMARY KEY,
            owner_kind TEXT NOT NULL CHECK (owner_kind IN ('resident', 'watchlist')),
            owner_id INTEGER NOT NULL,
            model_id TEXT NOT NULL,
            quality REAL NOT NULL,
            embedding BLOB NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX templates_owner ON templates(owner_kind, owner_id);
        CREATE TABLE enrollment_photos (
            id INTEGER PRIMARY KEY,
            resident_id INTEGER NOT NULL REFERENCES residents(id) ON DELETE CASCADE,
            path TEXT NOT NULL
        );
        CREATE TABLE events (
            id TEXT PRIMARY KEY,
            ts REAL NOT NULL,
            gate TEXT NOT NULL,
            kind TEXT NOT NULL,
            decision TEXT,
            reason TEXT NOT NULL DEFAULT '',
            resident_id INTEGER REFERENCES residents(id) ON DELETE SET NULL,
            watchlist_id INTEGER REFERENCES watchlist(id) ON DELETE SET NULL,
            score REAL,
            snapshot TEXT,
            snapshot_bytes INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX events_ts ON events(ts);
        CREATE INDEX events_resident ON events(resident_id);
        CREATE INDEX events_snapshot ON events(ts) WHERE snapshot IS NOT NULL;
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('directory_rev', 0);
        """
    )


@migrations()
def m002_sync(db: Database) -> None:
    """Central sync: the durable outbox (rows reference what to publish; payloads are built when
    sent, so the outbox stays small), tombstones that make deletions win over late upserts,
    the nonces of signed commands already executed, and door-display announcements."""
    db.executescript(
        """
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('event', 'snapshot', 'enroll', 'resync')),
            ref TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE tombstones (
            uid TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('resident', 'watchlist')),
            version INTEGER NOT NULL,
            deleted_at REAL NOT NULL
        );
        CREATE TABLE nonces (nonce TEXT PRIMARY KEY, exp REAL NOT NULL);
        CREATE INDEX nonces_exp ON nonces(exp);
        CREATE TABLE announcements (
            id INTEGER PRIMARY KEY,
            text TEXT NOT NULL,
            door TEXT,
            until_ts REAL,
            created_at REAL NOT NULL
        );
        ALTER TABLE watchlist ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
        INSERT INTO meta VALUES ('outbox_dropped_events', 0), ('outbox_dropped_snapshots', 0);
        """
    )


@migrations()
def m003_vehicles(db: Database) -> None:
    """Plate lists and vehicle entry/exit records."""
    db.executescript(
        """
        CREATE TABLE plates (
            id INTEGER PRIMARY KEY,
            plate TEXT NOT NULL,
            list TEXT NOT NULL CHECK (list IN ('resident', 'visitor', 'blacklist')),
            resident_id INTEGER REFERENCES residents(id) ON DELETE CASCADE,
            unit TEXT NOT NULL DEFAULT '',
            note TEXT NOT NULL DEFAULT '',
            valid_from REAL,
            valid_to REAL,
            created_at REAL NOT NULL,
            UNIQUE (plate, list)
        );
        CREATE INDEX plates_plate ON plates(plate);
        CREATE TABLE vehicle_passes (
            id INTEGER PRIMARY KEY,
            plate TEXT NOT NULL,
            lane TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('entry', 'exit')),
            ts REAL NOT NULL,
            decision TEXT NOT NULL,
            event_id TEXT,
            inside_s REAL
        );
        CREATE INDEX vehicle_passes_plate ON vehicle_passes(plate, ts);
        CREATE INDEX vehicle_passes_ts ON vehicle_passes(ts);
        CREATE TABLE vehicles_inside (
            plate TEXT PRIMARY KEY,
            entered_at REAL NOT NULL,
            lane TEXT NOT NULL
        );
        """
    )


_NEVER_REUSED = ("residents", "watchlist")


@migrations(transactional=False)
def m004_ids_never_reused(db: Database) -> None:
    """Resident and watchlist ids are never handed out again (AUTOINCREMENT): with a plain
    INTEGER PRIMARY KEY, removing the newest resident gave the next one the same id, and with it
    the cooldown and anti-passback state the gates keep by id.

    SQLite cannot add AUTOINCREMENT to a table, so each is rebuilt and renamed over the old one.
    That needs foreign keys off (dropping the old table would otherwise cascade into templates'
    owners, events and plates), and PRAGMA foreign_keys is ignored inside a transaction: hence
    a non-transactional migration with a transaction of its own, re-runnable if a crash comes
    between its COMMIT and the record of it being applied. The sequence starts at the highest id
    still referenced anywhere."""
    conn = db.conn
    if all("AUTOINCREMENT" in (db[t].schema or "").upper() for t in _NEVER_REUSED):
        return
    conn.execute("PRAGMA foreign_keys=OFF")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in _NEVER_REUSED:
                sql = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name=?",
                                   [table]).fetchone()[0]
                if "AUTOINCREMENT" in sql.upper():
                    continue
                head = f"CREATE TABLE {table} ("
                if not sql.startswith(head) or "id INTEGER PRIMARY KEY," not in sql:
                    raise sqlite3.DatabaseError(f"unexpected schema of table {table}")
                body = sql[len(head) :].replace(
                    "id INTEGER PRIMARY KEY,", "id INTEGER PRIMARY KEY AUTOINCREMENT,", 1
                )
                conn.execute(f"CREATE TABLE {table}_new ({body}")
                conn.execute(f"INSERT INTO {table}_new SELECT * FROM {table}")
                conn.execute(f"DROP TABLE {table}")
                conn.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
            highest = {
                "residents": "SELECT max(x) FROM (SELECT max(id) x FROM residents UNION ALL "
                             "SELECT max(resident_id) FROM events UNION ALL "
                             "SELECT max(owner_id) FROM templates WHERE owner_kind = 'resident')",
                "watchlist": "SELECT max(x) FROM (SELECT max(id) x FROM watchlist UNION ALL "
                             "SELECT max(watchlist_id) FROM events UNION ALL "
                             "SELECT max(owner_id) FROM templates WHERE owner_kind = 'watchlist')",
            }
            for table, query in highest.items():
                top = conn.execute(query).fetchone()[0] or 0
                conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", [table])
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [table, top])
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise sqlite3.DatabaseError(f"ids migration would break {len(broken)} reference(s)")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("PRAGMA foreign_keys=ON")


@migrations()
def m005_anti_passback(db: Database) -> None:
    """Timed anti-passback survives a restart: the last grant per door and resident, by wall
    time (the controllers' monotonic clock starts again with the process). Erasing the
    resident erases these rows."""
    db.executescript(
        """
        CREATE TABLE anti_passback (
            door TEXT NOT NULL,
            resident_id INTEGER NOT NULL REFERENCES residents(id) ON DELETE CASCADE,
            ts REAL NOT NULL,
            PRIMARY KEY (door, resident_id)
        );
        CREATE INDEX anti_passback_resident ON anti_passback(resident_id);
        """
    )


# Enrollment versions are the centre's issue time in milliseconds: a version beyond 2100-01-01
# cannot be genuine. Far below SQLite's int64, so `version + 1` never overflows either.
MAX_VERSION = 4_102_444_800_000


@migrations()
def m006_authority(db: Database) -> None:
    """Outbox rows are deleted when the centre acknowledges them by event id (an index on ref),
    and versions no signed change can carry - planted through the unsigned enrollment channel
    of earlier releases (2**62 blocked a re-add; 2**63-1 crashed `residents remove`) - are reset,
    so the centre's next change corrects those records."""
    db.executescript(f"""
        CREATE INDEX IF NOT EXISTS outbox_ref ON outbox(ref);
        UPDATE residents SET version = 0 WHERE version >= {MAX_VERSION} OR version < 0;
        UPDATE watchlist SET version = 0 WHERE version >= {MAX_VERSION} OR version < 0;
        UPDATE tombstones SET version = 0 WHERE version >= {MAX_VERSION} OR version < 0;
        """)


@migrations()
def m007_credentials(db: Database) -> None:
    """Credentials besides the face: cards (number as the reader formats it, with its bit
    length), PINs (scrypt hashes only), TOTP secrets with the last step used (a code opens
    once), visitor-pass uses and revocations; a resident's refusal of face recognition; and the
    credential each event was decided on. Erasing a resident cascades to their credentials."""
    db.executescript(
        """
        ALTER TABLE residents ADD COLUMN face TEXT NOT NULL DEFAULT 'allowed'
            CHECK (face IN ('allowed', 'refused'));
        ALTER TABLE events ADD COLUMN credential TEXT;
        CREATE TABLE cards (
            id INTEGER PRIMARY KEY,
            resident_id INTEGER NOT NULL REFERENCES residents(id) ON DELETE CASCADE,
            number TEXT NOT NULL,
            bits INTEGER NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (number, bits)
        );
        CREATE INDEX cards_resident ON cards(resident_id);
        CREATE TABLE pins (
            resident_id INTEGER PRIMARY KEY REFERENCES residents(id) ON DELETE CASCADE,
            hash TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE totp_secrets (
            resident_id INTEGER PRIMARY KEY REFERENCES residents(id) ON DELETE CASCADE,
            secret TEXT NOT NULL,
            last_step INTEGER NOT NULL DEFAULT -1,
            created_at REAL NOT NULL
        );
        CREATE TABLE pass_uses (
            pass_id TEXT PRIMARY KEY,
            uses INTEGER NOT NULL,
            last_at REAL NOT NULL
        );
        CREATE TABLE pass_revocations (
            pass_id TEXT PRIMARY KEY,
            revoked_at REAL NOT NULL
        );
        """
    )


@migrations()
def m008_consent(db: Database) -> None:
    """Consent to face recognition per resident: scope (``local``: this device only; ``site``:
    replicated), when and by whom it was recorded, when it was withdrawn. Residents enrolled
    before have no row, which counts as ``local``: their templates are no longer replicated
    until consent for the site is recorded."""
    db.executescript(
        """
        CREATE TABLE consent (
            resident_id INTEGER PRIMARY KEY REFERENCES residents(id) ON DELETE CASCADE,
            scope TEXT NOT NULL CHECK (scope IN ('local', 'site')),
            given_by TEXT NOT NULL,
            given_at REAL NOT NULL,
            withdrawn_at REAL
        );
        """
    )


@migrations()
def m009_analysis(db: Database) -> None:
    """Behaviour analysis (`gatectl.analysis`): the ``care`` flag on residents (a table of its
    own, erased with the resident), unknown faces' embeddings and the anonymous ids they are
    clustered into (AUTOINCREMENT: an expired id is never handed to another face), and the
    alerts already raised per rule and subject, so a scheduled rule does not repeat itself."""
    db.executescript(
        """
        CREATE TABLE care (
            resident_id INTEGER PRIMARY KEY REFERENCES residents(id) ON DELETE CASCADE,
            since REAL NOT NULL
        );
        CREATE TABLE strangers (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            first_ts REAL NOT NULL,
            last_ts REAL NOT NULL
        );
        CREATE TABLE unknown_faces (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            stranger INTEGER REFERENCES strangers(id) ON DELETE CASCADE,
            ts REAL NOT NULL,
            gate TEXT NOT NULL,
            event_id TEXT,
            embedding BLOB NOT NULL
        );
        CREATE INDEX unknown_faces_ts ON unknown_faces(ts);
        CREATE INDEX unknown_faces_stranger ON unknown_faces(stranger);
        CREATE TABLE analysis_raised (key TEXT PRIMARY KEY, ts REAL NOT NULL);
        """
    )


@migrations()
def m010_device_lists(db: Database) -> None:
    """Plate entries and pass revocations the centre signed (`gatectl.sync.lists`): which plate
    entries are the centre's (``origin``: a change from it replaces only its own entry, never one
    a technician added here), and the newest version applied per plate or pass, kept after a
    removal as its tombstone, so a re-delivered or reordered older change is ignored."""
    db.executescript(
        """
        ALTER TABLE plates ADD COLUMN origin TEXT NOT NULL DEFAULT 'local'
            CHECK (origin IN ('local', 'central'));
        CREATE TABLE list_versions (
            kind TEXT NOT NULL CHECK (kind IN ('plate', 'pass')),
            ref TEXT NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (kind, ref)
        );
        """
    )
