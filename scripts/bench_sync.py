#!/usr/bin/env python3
"""Sync benchmark: outbox enqueue latency with full durability, and drain rate to the broker.

1. ``enqueue_ms``: `EventRecorder.record` of an event without a snapshot, which commits the
   event row and its outbox row in one transaction (WAL, synchronous=FULL), N times.
2. ``drain_events_per_s``: those N events wait in the outbox (the device was offline); the sync
   client then connects and drains them QoS 1 to the broker, while a subscriber (the reference
   centre) receives them; timed from connect until the outbox is empty and every event arrived.
3. ``lost``: events in the store the subscriber never received (must be 0).

Uses the local broker (default 127.0.0.1:1883). Prints progress to stderr and, last, one JSON
line on stdout.

    python scripts/bench_sync.py [--events 20000] [--host 127.0.0.1 --port 1883]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchlib import stats, timed  # noqa: E402
from gatectl.app import App, simulated_boards  # noqa: E402
from gatectl.config import SyncConfig, parse_config  # noqa: E402
from gatectl.sync.central import Central  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    args = ap.parse_args()
    site = f"bench-{uuid.uuid4().hex[:6]}"  # a fresh subtree: no retained or queued leftovers
    cfg = parse_config({"device": {"id": "dev1", "site": site},
                        "sync": {"enabled": True, "host": args.host, "port": args.port, "max_inflight": 1000,
                                 "health_interval_s": 3600}})
    with tempfile.TemporaryDirectory() as tmp:
        app = App(cfg, Path(tmp), boards=simulated_boards(cfg))
        n = [0]

        def record() -> None:
            app.recorder.record("lobby", "access", "denied", f"bench {n[0]}")
            n[0] += 1

        print(f"enqueue: {args.events} events, synchronous=FULL ...", file=sys.stderr)
        enqueue = timed(record, args.events)
        assert app.store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL

        central = Central(SyncConfig(enabled=True, host=args.host, port=args.port), site, relay=False)
        central.start()
        client = app.sync_client(lambda: {}, lambda: "no reload")
        print(f"drain: {args.events} events to {args.host}:{args.port}, QoS 1 ...", file=sys.stderr)
        t0 = time.perf_counter()
        client.start()
        deadline = time.monotonic() + 300
        while (app.store.outbox_stats()["pending"] or len(central.events) < args.events) \
                and time.monotonic() < deadline:
            time.sleep(0.005)
        drain_s = time.perf_counter() - t0
        stored = {r["id"] for r in app.store.db.query("SELECT id FROM events")}
        lost = len(stored - set(central.events))
        in_order = central.order.get("dev1", []) == sorted(central.order.get("dev1", []))
        client.stop()
        central.stop()
        app.close()
    result = {"events": args.events, "enqueue_ms": stats(enqueue), "drain_s": round(drain_s, 3),
              "drain_events_per_s": round(args.events / drain_s), "lost": lost, "duplicates": central.duplicates,
              "in_order": in_order, "synchronous": "FULL", "max_inflight": 1000,
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    print(json.dumps(result))
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
