"""`gatectl config check`, `run`, `sync`, `central`, `replay`, `demo`: the service and its
dry runs (replay and the demo on a scratch copy of the store)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from gatectl.cli.common import (
    AppFactory,
    fmt_time,
)
from gatectl.config import Config, load_config
from gatectl.config.base import ConfigError
from gatectl.core.errors import UsageError
from gatectl.core.paths import (
    foreign_owner,
    sample_dir,
)
from gatectl.core.safe_text import shown
from gatectl.runtime.app import App
from gatectl.store.db import StoreError

log = logging.getLogger("gatectl")


def check_ownership(app: App) -> None:
    """Refuse to work in a state folder that belongs to another user (the service's, when run
    with sudo): the SQLite WAL/shm files and snapshots created now would belong to us, and the
    service could no longer open its own store."""
    for folder in dict.fromkeys((app.data_dir, app.store_path.parent, app.snapshot_dir)):
        owner = foreign_owner(folder)
        if owner is not None:
            raise UsageError(
                f"{folder} belongs to user {owner}: files created there now would lock that user "
                f"(the service) out; run as it: sudo -u '{owner}' gatectl ..."
            )


def scratch_config(cfg: Config) -> Config:
    """The same config with its store and snapshots relative to a scratch folder, sync off."""
    storage = cfg.storage.model_copy(
        update={"database": Path("gatectl.db"), "snapshots": Path("snapshots"), "state_dir": None}
    )
    return cfg.model_copy(
        update={"storage": storage, "sync": cfg.sync.model_copy(update={"enabled": False})}
    )


def scratch_store(app: App, folder: Path) -> Path:
    """Copy the service's store into ``folder`` (read-only on the original, a consistent
    snapshot even while the daemon writes) and return the folder; an absent store is empty."""
    import sqlite3

    src = app.store_path
    folder.mkdir(parents=True, exist_ok=True)
    if not src.exists():
        return folder
    try:
        with (
            sqlite3.connect(f"file:{src}?mode=ro", uri=True) as s,
            sqlite3.connect(folder / "gatectl.db") as d,
        ):
            s.backup(d)
    except sqlite3.Error as exc:
        raise StoreError(f"{src}: cannot copy the store for replay ({exc})") from None
    return folder


def cmd_config_check(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """Everything `run` would refuse on before touching the hardware, files included."""
    cfg = load_config(args.file)
    problems = cfg.startup_problems()
    if problems:
        raise ConfigError([f"{args.file}: {line}" for line in problems])
    gates = ", ".join(f"{g.name} ({g.kind})" for g in cfg.gates) or "none"
    print(f"{args.file}: OK - device {cfg.device.id} at {cfg.device.site}; "
          f"{len(cfg.cameras)} camera(s), {len(cfg.doors)} door(s), gates: {gates}")
    return 0


def cmd_sync(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """Works without the daemon and without the broker: both only touch the outbox."""
    app = app_factory()
    try:
        if not app.cfg.sync.enabled:
            raise UsageError("sync: not enabled in the config ([sync] enabled = true)")
        if args.action == "resync":
            app.store.enqueue("resync", app.cfg.device.id)
            print("resync requested: the daemon sends it with the next outbox drain")
            return 0
        for key, value in app.store.outbox_stats().items():
            print(f"{key:18} {value}")
        return 0
    finally:
        app.close()


def cmd_clock(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """The running daemon's view of the clock (written in the store's meta table), and the
    operator's way to trust it again after a jump: a request the daemon applies within a few
    seconds (its slow tick), answered in the same table."""
    from gatectl.control.clock import CLOCK_TRUST_REQUESTS, ClockJump, ntp_synced

    app = app_factory()
    try:
        store = app.store
        if args.action == "trust":
            asked = store.bump_meta(CLOCK_TRUST_REQUESTS)
            deadline = time.monotonic() + args.timeout
            while store.meta("clock_trust_applied").get("clock_trust_applied", 0) < asked:
                if time.monotonic() > deadline:
                    print(
                        "gatectl: clock trust: no running daemon answered within "
                        f"{args.timeout:g} s (is the service running? a daemon that starts "
                        "later trusts its clock anyway)",
                        file=sys.stderr,
                    )
                    return 1
                time.sleep(0.1)
        keys = (
            "clock_reported_at",
            "clock_trusted",
            "clock_jumps",
            "clock_last_jump_s",
            "clock_settles_at",
        )
        st = store.meta(*keys)
        synced = ntp_synced()
        print(f"wall clock  {fmt_time(time.time())} (this process)")
        print(
            "ntp         "
            + (
                f"synchronized (systemd-timesyncd, last {fmt_time(synced)})"
                if synced
                else "no sync reported by systemd-timesyncd since boot"
            )
        )
        if "clock_reported_at" not in st:
            print("daemon      no report in this store (the daemon has not run on it)")
            return 0
        if st["clock_trusted"]:
            state = "trusted"
        else:
            jump = ClockJump(st.get("clock_last_jump_s", 0), 0).describe()
            state = (f"NOT trusted: {jump}; retention and the re-enrollment rule held until "
                     f"{fmt_time(st['clock_settles_at'])} (device clock) or `gatectl clock trust`")
        print(f"daemon      {state}; {st['clock_jumps']} jump(s) since it started "
              f"(reported {fmt_time(st['clock_reported_at'])})")
        return 0
    finally:
        app.close()


def cmd_central(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """Everything after `central` is the reference tool's own command line (with its --help);
    `central pass` is the visitor passes' (`gatectl.cli.passes`)."""
    if args.central_args[:1] == ["pass"]:
        from gatectl.cli.passes import central_pass

        return central_pass(args.central_args[1:])
    from gatectl.central.tool import main as central_main

    return central_main(args.central_args)


def cmd_run(args: argparse.Namespace, app_factory: AppFactory) -> int:
    from gatectl.runtime.runner import Runner

    app = app_factory()
    problems = app.cfg.startup_problems()
    if problems:
        raise ConfigError(problems)
    stop = threading.Event()
    runner = Runner(app, stop, args.config_path)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: runner.request_reload())  # systemd's ExecReload
    try:
        runner.run()
    finally:
        app.close()
    if runner.reexec:  # SIGHUP or config.reload: same process id, so systemd keeps supervising
        log.warning("restarting with the reloaded configuration")
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, "-m", "gatectl", *sys.argv[1:]])
    return 0


def cmd_replay(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """On a scratch copy of the store unless --store: a replay's events, snapshots and "last
    seen" must not enter the real audit trail nor restart anyone's 15-day inactivity clock."""
    if args.store:
        return _replay_cmd(args, app_factory(simulated=True))
    with tempfile.TemporaryDirectory(prefix="gatectl-replay-") as scratch:
        return _replay_cmd(args, app_factory(simulated=True, scratch=Path(scratch)))


def _replay_cmd(args: argparse.Namespace, app: App) -> int:

    def emit(d: dict) -> None:
        if args.json:
            print(json.dumps(d, ensure_ascii=False), flush=True)
        else:
            score = "-" if d["score"] is None else f"{d['score']:.3f}"
            who = d.get("plate", d.get("resident", d.get("label"))) or "-"
            print(
                f"{shown(Path(d['source']).name)}: {d['decision']} {shown(who)} "
                f"({shown(d['reason'])}) "
                f"score {score}",
                flush=True,
            )

    from gatectl.runtime.replay import replay

    try:
        return replay(app, args.paths, args.gate, emit)
    finally:
        app.close()


def cmd_demo(args: argparse.Namespace, app_factory: AppFactory) -> int:
    from gatectl.runtime.demo import run_demo

    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="gatectl-demo-"))
    return run_demo(data, sample_dir(), json_out=args.json)


def cmd_doctor(args: argparse.Namespace, app_factory: AppFactory) -> int:
    from gatectl.runtime.doctor import doctor

    return doctor(app_factory(), args.camera_timeout)
