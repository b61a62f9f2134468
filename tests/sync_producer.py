"""A gatectl process that records events as fast as asked and syncs them: the load for the
outbox fault test. It uses the daemon's own App, EventRecorder and SyncClient.

    python -m tests.sync_producer CONFIG DATA TOTAL [RATE]

Records events until the store holds TOTAL, then waits until the outbox is empty and exits 0.
Run again after a SIGKILL, it continues where the store stands.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from gatectl.runtime.app import App, simulated_boards
from gatectl.config import load_config


def main() -> int:
    cfg_path, data, total = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 2000.0
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    cfg = load_config(cfg_path)
    app = App(cfg, data, boards=simulated_boards(cfg))
    client = app.sync_client(lambda: {}, lambda: "no reload here")
    client.start()
    have = app.store.db.execute("SELECT count(*) FROM events").fetchone()[0]
    print(f"start {have}", flush=True)
    t0 = time.monotonic()
    for i in range(have, total):
        app.recorder.record("lobby", "access", "denied", f"load {i}")
        lag = t0 + (i - have + 1) / rate - time.monotonic()
        if lag > 0:
            time.sleep(lag)
    print("recorded", flush=True)
    while app.store.outbox_stats()["pending"]:
        time.sleep(0.05)
    print("drained", flush=True)
    client.stop()
    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
