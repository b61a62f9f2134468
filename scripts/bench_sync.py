#!/usr/bin/env python3
"""Sync benchmark: outbox enqueue latency with full durability, and drain rate to the broker.

1. ``enqueue_ms``: `EventRecorder.record` of an event without a snapshot, which commits the
   event row and its outbox row in one transaction (WAL, synchronous=FULL), N times.
2. ``drain_events_per_s``: those N events wait in the outbox (the device was offline); the sync
   client then connects and drains them QoS 1 to the broker; timed from connect until the
   outbox is empty, i.e. the centre (the reference `Central`, connected before the drain) has
   confirmed every event id on the device's ``ack`` topic - end-to-end, not the broker's PUBACK.
3. ``lost``: events in the store that the subscriber (the reference centre, connected before
   the drain) has not received once the drain is over and the broker has delivered (must be 0).

Runs its own Mosquitto on 127.0.0.1 and a free port, configured as docs/mqtt.md advises
(persistence, no queue cap): the stock config's `max_queued_messages 1000` makes the broker
itself drop QoS 1 messages for a subscriber that falls 1,000 behind. `--port` uses a running
broker instead. Prints progress to stderr and, last, one JSON line on stdout.

    python scripts/bench_sync.py [--events 20000] [--port 1883]
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
from gatectl.runtime.app import App, simulated_boards  # noqa: E402
from gatectl.config import parse_config  # noqa: E402
from gatectl.config.sync import SyncConfig  # noqa: E402
from gatectl.central.tool import Central  # noqa: E402
from tests.broker import Broker  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--max-inflight", type=int, default=SyncConfig().max_inflight,
                    help="unacknowledged messages (default: the config default)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, help="a running broker (default: start one of our own)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        broker = None
        if args.port is None:
            broker = Broker(Path(folder))
            broker.start()
            args.host, args.port = broker.host, broker.port
        try:
            return run(args)
        finally:
            if broker is not None:
                broker.stop()


def run(args: argparse.Namespace) -> int:
    site = f"bench-{uuid.uuid4().hex[:6]}"  # a fresh subtree: no retained or queued leftovers
    cfg = parse_config({"device": {"id": "dev1", "site": site},
                        "sync": {"enabled": True, "host": args.host, "port": args.port, "max_inflight": args.max_inflight,
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
        while app.store.outbox_stats()["pending"] and time.monotonic() < deadline:
            time.sleep(0.005)
        drain_s = time.perf_counter() - t0
        while len(central.events) < args.events and time.monotonic() < deadline:
            time.sleep(0.01)
        deliver_s = time.perf_counter() - t0
        stored = {r["id"] for r in app.store.db.query("SELECT id FROM events")}
        lost = len(stored - set(central.events))
        in_order = central.order.get("dev1", []) == sorted(central.order.get("dev1", []))
        resent = client.counters["resent"]
        client.stop()
        central.stop()
        app.close()
    result = {"events": args.events, "enqueue_ms": stats(enqueue), "drain_s": round(drain_s, 3),
              "drain_events_per_s": round(args.events / drain_s),
              "delivered_s": round(deliver_s, 3), "lost": lost, "duplicates": central.duplicates,
              "in_order": in_order, "synchronous": "FULL", "max_inflight": args.max_inflight,
              "end_to_end_ack": True, "resent": resent,
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    print(json.dumps(result))
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
