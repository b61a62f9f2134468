#!/usr/bin/env python3
"""Store fault-path benchmark: what the store's safety nets cost on this machine.

Builds a real SQLite store of ``--events`` event rows (WAL, synchronous=FULL, as the daemon
runs it) in a temporary folder and measures:

- ``quick_check_s``: the `PRAGMA quick_check` `gatectl run` runs at start to find a corrupt file;
- ``record_ms``: EventRecorder.record() without a snapshot into the healthy store (one fsynced
  transaction: the normal decision path);
- ``record_locked_ms``: record() while another process holds the write lock: the bounded wait
  (``--lock-wait-ms``) plus the fsynced spool append, i.e. what a door waits instead of 5 s;
- ``drain_ms``: inserting the ``--spooled`` spooled events (with outbox rows) once the lock is gone;
- ``expire_events_s`` and ``expire_batch_ms``: deleting half the rows by age in batches of
  2,000, and the longest single batch (how long retention holds the write lock at a time).

Prints progress to stderr and, last, one JSON line on stdout.

    python scripts/bench_store.py [--events 200000] [--iterations 50] [--spooled 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import stats, timed  # noqa: E402

from gatectl.domain.records import DAY_SECONDS  # noqa: E402
from gatectl.store import Store  # noqa: E402
from gatectl.store.recorder import EventRecorder, EventSpool, new_event_id  # noqa: E402

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def fill(store: Store, n: int, t0: float) -> None:
    """``n`` access events spread over 360 days, written in one transaction (fast to build)."""
    with store.write() as db:
        for i in range(n):
            ts = t0 - 360 * DAY_SECONDS + i * (360 * DAY_SECONDS / n)
            db.execute("INSERT INTO events (id, ts, gate, kind, decision, reason) VALUES (?, ?, ?, ?, ?, ?)",
                       [new_event_id(ts), ts, "lobby", "access", "denied", "unknown face"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--spooled", type=int, default=200)
    ap.add_argument("--lock-wait-ms", type=int, default=300)
    args = ap.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "gatectl.db"
        store = Store(db, publish=True)
        print(f"filling {args.events} events", file=sys.stderr)
        fill(store, args.events, now)
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size_mb = db.stat().st_size / 2**20

        conn = sqlite3.connect(db)
        t = time.perf_counter()
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        quick_check_s = time.perf_counter() - t
        conn.close()

        spool = EventSpool(Path(tmp) / "gatectl.db.spool", 4 * 2**20)
        rec = EventRecorder(store, Path(tmp) / "snaps", spool=spool, lock_wait_s=args.lock_wait_ms / 1000)
        record_ms = timed(lambda: rec.record("lobby", "access", "denied", "unknown face"), args.iterations)

        print("holding the write lock from another process", file=sys.stderr)
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert locker.stdout.readline().strip() == "locked"
        logging.disable(logging.CRITICAL)  # EVENT NOT STORED lines: one per locked record
        locked_ms = timed(lambda: rec.record("lobby", "access", "granted", "resident"), args.iterations)
        for _ in range(max(0, args.spooled - args.iterations)):
            rec.record("lobby", "access", "granted", "resident")
        locker.communicate("\n", timeout=10)
        logging.disable(logging.NOTSET)
        t = time.perf_counter()
        drained = rec.drain_spool()
        drain_ms = (time.perf_counter() - t) * 1000

        batches: list[float] = []
        orig = store._delete_events

        def timed_batch(*a, **kw):
            t = time.perf_counter()
            out = orig(*a, **kw)
            batches.append((time.perf_counter() - t) * 1000)
            return out

        store._delete_events = timed_batch
        t = time.perf_counter()
        store.expire_events(now - 180 * DAY_SECONDS, None)
        expire_s = time.perf_counter() - t
        store.close()
    out = {"machine": platform.machine(), "python": platform.python_version(), "events": args.events,
           "db_mb": round(size_mb, 1), "quick_check_s": round(quick_check_s, 3),
           "record_ms": stats(record_ms), "lock_wait_ms": args.lock_wait_ms, "record_locked_ms": stats(locked_ms),
           "spooled": drained, "drain_ms": round(drain_ms, 1), "expire_events_s": round(expire_s, 2),
           "expire_batch_ms": stats(batches)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
