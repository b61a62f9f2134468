#!/usr/bin/env python3
"""Centre ingest benchmark: events/s and lag with 1, 2 and 4 ingest workers on SQLite and on
PostgreSQL, and the broker's own rate in the same run as the ceiling.

Simulated devices (`gatectl.central.simulate.SimDevice`: the device's topics, payloads and
receipt rule) publish ``--events`` events QoS 1, one in ``--snapshot-every`` with a snapshot of
``--snapshot-kb`` KB, as fast as paho takes them. Per configuration:

- ``events_per_s``: events stored (committed rows in the centre's database, de-duplicated by
  id) over the time from the first publish to the last row;
- ``burst_lag_ms``: p50 / p95 / max of (row's receive time - event time) in that burst: the
  backlog's queueing included;
- ``lag_ms_at_<rate>_per_s``: the same for ``--paced-events`` published at ``--rate``, below
  capacity: the latency a device sees;
- ``unconfirmed``: events whose receipt had not reached their device 10 s after the last row
  (must be 0: the end-to-end acknowledgement);
- the workers are `gatectl central worker` processes on one shared subscription.

``broker_ceiling``: the same devices' events to a plain (non-shared) subscriber that stores
nothing: what the broker and this machine pass at most. Runs its own Mosquitto (tests/broker.py)
and, for PostgreSQL, a throwaway cluster (tests/central_pg.py) unless ``--pg URL``. Progress on
stderr, one JSON object on stdout.

    python scripts/bench_central.py [--events 6000] [--devices 20] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402

from benchlib import stats  # noqa: E402
from gatectl.central.migrations import open_database  # noqa: E402
from gatectl.central.simulate import SimDevice  # noqa: E402
from tests.broker import Broker  # noqa: E402

SITE = "bench"


def say(*a: object) -> None:
    print(*a, file=sys.stderr, flush=True)


def publish_all(devices: list[SimDevice], n: int, every: int, jpeg: bytes, rate: float = 0.0) -> float:
    """``n`` events round-robin over the devices (``rate`` per second, 0: as fast as paho takes
    them); the time of the first publish."""
    t0 = time.time()
    for i in range(n):
        devices[i % len(devices)].event(jpeg if every and i % every == 0 else None)
        if rate:
            ahead = t0 + (i + 1) / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
    return t0


def wait_stored(db, n: int, tag: str) -> None:
    deadline = time.monotonic() + 600
    while int(db.query("SELECT count(*) FROM events")[0][0]) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{tag}: not all events stored in 600 s")
        time.sleep(0.05)


def ceiling(broker: Broker, args: argparse.Namespace, jpeg: bytes) -> dict:
    got = [0]
    done = threading.Event()
    ready = threading.Event()
    last = [0.0]

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        got[0] += 1
        last[0] = time.time()
        if got[0] >= args.events:
            done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-ceiling", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.on_subscribe = lambda *_: ready.set()
    sub.connect(broker.host, broker.port)
    sub.subscribe(f"gatectl/v1/{SITE}/+/events", qos=1)
    sub.loop_start()
    ready.wait(10)
    devices = [SimDevice(broker.host, broker.port, SITE, f"c{i}", resend_s=1e9) for i in range(args.devices)]
    for d in devices:
        d.wait_ready()
    t0 = publish_all(devices, args.events, args.snapshot_every, jpeg)
    done.wait(300)
    for d in devices:
        d.close()
    sub.disconnect()
    sub.loop_stop()
    return {"events_per_s": round(got[0] / max(last[0] - t0, 1e-6)), "received": got[0]}


def run_config(broker: Broker, url: str, workers: int, folder: Path, args: argparse.Namespace,
               jpeg: bytes, tag: str) -> dict:
    state = folder / f"state-{tag}"
    config = folder / f"central-{tag}.toml"
    config.write_text(f'state_dir = "{state}"\ndatabase = "{url}"\n[broker]\nport = {broker.port}\n'
                      f'[ingest]\ngroup = "g-{tag}"\nworkers = {workers}\n')
    db = open_database(url, state)
    procs = [subprocess.Popen([sys.executable, "-m", "gatectl", "central", "worker", "--config", str(config),
                               "--id", f"w{i}"], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=(folder / f"{tag}-w{i}.log").open("wb")) for i in range(workers)]
    devices = [SimDevice(broker.host, broker.port, SITE, f"{tag}-d{i}", resend_s=30.0) for i in range(args.devices)]
    try:
        for d in devices:
            d.wait_ready()
        # warm-up: one event per device through every worker's subscription, then a clean count
        deadline = time.monotonic() + 60
        while len({r[0] for r in db.query("SELECT worker FROM counters WHERE name = 'statuses'")}) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{tag}: workers not subscribed in 60 s")
            for d in devices:
                d.client.publish(d.topics.status, d._status("online"), qos=1)
            time.sleep(0.3)
        t0 = publish_all(devices, args.events, args.snapshot_every, jpeg)
        wait_stored(db, args.events, tag)
        t1 = float(db.query("SELECT max(received_at) FROM events")[0][0])
        lags = [(r - t) * 1000 for r, t in db.query("SELECT received_at, ts FROM events")]
        # the same at a steady rate below capacity: the latency a device sees, not a backlog
        t2 = time.time()
        publish_all(devices, args.paced_events, args.snapshot_every, jpeg, args.rate)
        wait_stored(db, args.events + args.paced_events, tag)
        paced = [(r - t) * 1000 for r, t in db.query("SELECT received_at, ts FROM events WHERE ts >= ?",
                                                    [t2])]
        end = time.monotonic() + 10
        while any(d.pending for d in devices) and time.monotonic() < end:
            time.sleep(0.1)
        unconfirmed = sum(1 for d in devices for k in d.pending if k[0] == "events")
        snaps = int(db.query("SELECT count(*) FROM snapshots")[0][0])
        return {"events_per_s": round(args.events / max(t1 - t0, 1e-6)), "burst_lag_ms": stats(lags),
                f"lag_ms_at_{args.rate:g}_per_s": stats(paced), "snapshots": snaps,
                "unconfirmed": unconfirmed}
    finally:
        for d in devices:
            d.close()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        db.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=6000)
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--snapshot-every", type=int, default=4, help="one event in N has a snapshot (0: none)")
    ap.add_argument("--snapshot-kb", type=int, default=20)
    ap.add_argument("--rate", type=float, default=150.0, help="events/s of the paced phase (its lag)")
    ap.add_argument("--paced-events", type=int, default=1500)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--pg", help="a PostgreSQL server URL whose user may CREATE DATABASE (default: a "
                    "throwaway cluster)")
    args = ap.parse_args()
    jpeg = b"\xff\xd8" + os.urandom(args.snapshot_kb * 1024) + b"\xff\xd9"
    out: dict = {"events": args.events, "devices": args.devices, "snapshot_every": args.snapshot_every,
                 "snapshot_kb": args.snapshot_kb, "cpus": os.cpu_count(), "runs": {}}
    cluster = None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        broker = Broker(folder / "broker")
        broker.start()
        try:
            say("broker ceiling ...")
            out["broker_ceiling"] = ceiling(broker, args, jpeg)
            say(out["broker_ceiling"])
            for engine in args.engines.split(","):
                for w in [int(x) for x in args.workers.split(",")]:
                    tag = f"{engine[:2]}{w}"
                    if engine == "sqlite":
                        url = f"sqlite:///{folder / f'{tag}.db'}"
                    else:
                        if cluster is None and args.pg is None:
                            from tests.central_pg import Cluster

                            cluster = Cluster()
                            cluster.start()
                        url = new_pg_database(args.pg or cluster.url(), tag)
                    say(f"{engine}, {w} worker(s) ...")
                    out["runs"][f"{engine}_{w}"] = r = run_config(broker, url, w, folder, args, jpeg, tag)
                    say(r)
        finally:
            broker.stop(kill=True)
            if cluster is not None:
                cluster.stop()
    for engine in args.engines.split(","):
        rates = {w: out["runs"][f"{engine}_{w}"]["events_per_s"] for w in args.workers.split(",")
                 if f"{engine}_{w}" in out["runs"]}
        first = rates.get("1")
        if first:
            out[f"{engine}_scaling"] = {w: round(r / first, 2) for w, r in rates.items()}
    out["max_rss_children_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    print(json.dumps(out))
    return 0


def new_pg_database(server_url: str, tag: str) -> str:
    import psycopg

    name = f"bench_{tag}_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


if __name__ == "__main__":
    sys.exit(main())
