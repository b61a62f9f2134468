"""`gatectl central serve --config central.toml` and its worker processes.

``serve`` is a supervisor: it runs ``ingest.workers`` worker processes (`gatectl central
worker --config ... --id wN`, each one `IngestWorker` with a fixed client id, so a restarted
worker resumes its broker session and gets its unacknowledged messages again), restarts one
that dies (backoff up to 30 s), marks silent devices and serves /health and /metrics. Workers
share nothing but the database and the broker: more of them on more machines is the same
command with other ``--id``s (docs/central.md).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gatectl.central.migrations import open_database
from gatectl.central.registry import Registry
from gatectl.central.snapshots import FolderStore
from gatectl.central.storage import Database
from gatectl.config.central import CentralConfig, load_central_config
from gatectl.core.errors import UsageError
from gatectl.sync.signing import load_private_key

log = logging.getLogger("gatectl.central")

SILENT_CHECK_S = 5.0


def open_registry(cfg: CentralConfig, signing: bool = True) -> tuple[Database, Registry]:
    """The database (migrated) and the registry over it; with ``signing``, the key from the
    config (a missing or bad key is one line)."""
    key = None
    if signing and cfg.key is not None:
        key = load_private_key(cfg.key)
    db = open_database(cfg.database, cfg.state_dir)
    reg = Registry(db, cfg.broker.prefix, key, cfg.kid,
                   duplicate_threshold=cfg.registry.duplicate_threshold,
                   max_device_consent=cfg.registry.max_device_consent)
    return db, reg


def run_worker(cfg: CentralConfig, worker_id: str, stop: threading.Event) -> int:
    from gatectl.central.ingest import IngestWorker

    if cfg.key is None:
        log.warning("central: no signing key (key = ...): device requests are not decided")
    db, reg = open_registry(cfg)
    worker = IngestWorker(cfg, db, FolderStore(cfg.snapshot_dir), reg, worker_id)
    try:
        worker.start()
        log.info("central worker %s subscribed as group %s", worker_id, cfg.ingest.group)
        stop.wait()
    finally:
        worker.stop()
        db.close()
    return 0


@dataclass
class _Child:
    worker_id: str
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started: list[float] = field(default_factory=list)


class Supervisor:
    """The worker processes of one `serve`; restarts a dead one with backoff."""

    def __init__(self, config_path: Path, ids: list[str]):
        self.config_path = config_path
        self.children = [_Child(i) for i in ids]
        self.lock = threading.Lock()

    def tick(self) -> None:
        now = time.monotonic()
        with self.lock:
            for c in self.children:
                if c.proc is not None and c.proc.poll() is None:
                    continue
                if c.proc is not None:
                    log.error("central worker %s exited (%s); restarting", c.worker_id,
                              c.proc.returncode)
                    c.restarts += 1
                    c.next_start = now + min(30.0, 0.5 * 2 ** min(c.restarts, 6))
                    c.proc = None
                if now >= c.next_start:
                    c.proc = subprocess.Popen(
                        [sys.executable, "-m", "gatectl", "central", "worker", "--config",
                         str(self.config_path), "--id", c.worker_id])

    def status(self) -> dict:
        with self.lock:
            return {c.worker_id: {"alive": c.proc is not None and c.proc.poll() is None,
                                  "pid": c.proc.pid if c.proc else None,
                                  "restarts": c.restarts} for c in self.children}

    def stop(self) -> None:
        with self.lock:
            for c in self.children:
                if c.proc is not None and c.proc.poll() is None:
                    c.proc.terminate()
            for c in self.children:
                if c.proc is not None:
                    try:
                        c.proc.wait(15)
                    except subprocess.TimeoutExpired:
                        c.proc.kill()


def serve(config_path: Path, stop: threading.Event, http_port: int | None = None) -> int:
    import uvicorn

    from gatectl.central.metrics import check_silent, http_app

    cfg = load_central_config(config_path)
    if cfg.key is not None:
        load_private_key(cfg.key)  # a bad key is one line now, not N crash-looping workers
    db, _ = open_registry(cfg, signing=False)
    sup = Supervisor(config_path, [f"w{i + 1}" for i in range(cfg.ingest.workers)])
    server = uvicorn.Server(uvicorn.Config(
        http_app(db, sup.status), host=cfg.http.host,
        port=cfg.http.port if http_port is None else http_port, log_level="warning",
        access_log=False))
    web = threading.Thread(target=server.run, name="central-http", daemon=True)
    web.start()
    next_check = 0.0
    try:
        while not stop.is_set():
            sup.tick()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + SILENT_CHECK_S
                check_silent(db, cfg.http.offline_after_s, time.time())
            stop.wait(0.5)
    finally:
        server.should_exit = True
        sup.stop()
        web.join(5)
        db.close()
    return 0


def stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def config_of(path: Path | None) -> CentralConfig:
    if path is None:
        raise UsageError("gatectl central: --config central.toml is required")
    return load_central_config(path)
