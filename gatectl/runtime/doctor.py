"""`gatectl doctor` and the technician's hardware waits: every check `run` depends on, one
`[ok]` / `[FAIL]` line each, with the models, store, boards, broker and cameras really used."""

from __future__ import annotations

import os
import time

from gatectl.config import Config
from gatectl.config.base import ConfigError
from gatectl.config.gates import EbikeGateConfig
from gatectl.core.errors import GatectlError
from gatectl.core.safe_text import shown
from gatectl.hw.relay import BoardError, Relay
from gatectl.runtime.app import App
from gatectl.sources.camera import CameraGrabber
from gatectl.store.db import StoreError
from gatectl.store.recorder import free_disk_mb
from gatectl.store.salvage import corruption


def doctor(app: App, wait_s: float) -> int:
    """Every check, one line each; 0 when all passed, else 1. ``wait_s``: how long a board may
    take to come online and a camera to give a frame. Closes ``app``."""
    problems = 0

    def report(ok: bool, what: str) -> None:
        nonlocal problems
        problems += not ok
        print(f"[{'ok' if ok else 'FAIL'}] {what}")

    for line in app.cfg.startup_problems():  # what `run` refuses on, as `config check` says it
        report(False, line)
    if app.cfg.sync.enabled and not app.cfg.sync.missing_files():
        try:  # built as `run` builds it: keys, password file and certificates loaded
            app.sync_client(dict, str)
            report(
                True,
                f"sync: client for {app.cfg.sync.host}:{app.cfg.sync.port} ready (keys, "
                "files, certificates)",
            )
        except GatectlError as exc:
            report(False, str(exc))
    for spec, err in app.models.check_all():
        report(err is None, err or f"model {spec.name}: {spec.file} verified ({spec.licence})")
    for gate in app.cfg.gates:
        try:  # builds the gate as `run` would: its models loaded and checked against the config
            app.gate(gate)
            report(True, f"gate {gate.name} ({gate.kind}): pipeline ready")
            if isinstance(gate, EbikeGateConfig):  # which detector: bundled, site-installed, file
                d = gate.detector
                report(True, f"gate {gate.name} detector: " + (
                    f"{d.file} (a file of your own, sha256 not checked)" if d.file
                    else app.models.describe(d.model)))
        except GatectlError as exc:
            report(False, f"gate {gate.name} ({gate.kind}): {exc}")
    for i, watch in enumerate(app.cfg.analysis.tailgate):
        try:  # its detector as `run` opens it: the model verified and checked against the watch
            app.person_detector(i)
            report(True,
                   f"tailgate watch {watch.door}: detector {app.models.describe(watch.model)}")
        except GatectlError as exc:
            report(False, f"tailgate watch {watch.door}: {exc}")
    damage = corruption(app.store_path)  # what `run` would move aside at start
    if damage is not None:
        report(
            False,
            f"store {app.store_path}: corrupt ({shown(damage, 200)}): "
            f"`gatectl run` will move it aside and start a fresh store",
        )
    else:
        try:
            store = app.store
            with store.write() as db:
                db.execute("UPDATE meta SET value = value WHERE key = 'directory_rev'")
            report(True, f"store {store.path} writable (schema v{store.schema_version})")
            foreign = store.foreign_model_templates(app.embedder.model_id)
            report(
                foreign == 0,
                f"{foreign} template(s) from another embedding model need re-enrollment"
                if foreign
                else "all templates match the embedding model",
            )
        except StoreError as exc:
            report(False, str(exc))
    for name, board in app.boards.items():
        try:
            wait_online(board, wait_s)
            report(True, f"relay board {name}: online ({board.health().get('driver')})")
        except BoardError as exc:
            report(False, str(exc))
    for ok, line in reader_checks(app.cfg, wait_s):
        report(ok, line)
    free = free_disk_mb(app.data_dir)
    report(free > 200, f"free disk at {app.data_dir}: {free:.0f} MB")
    if app.cfg.sync.enabled and not app.cfg.sync.missing_files():  # missing files: said once above
        report(*sync_check(app.cfg))
    for cam in app.cfg.cameras:
        g = CameraGrabber(cam)
        g.start()
        frame = g.get(timeout=wait_s)
        st = g.health()
        g.stop()
        report(
            frame is not None,
            f"camera {cam.name} ({cam.source}): "
            + (
                f"{frame.image.shape[1]}x{frame.image.shape[0]} frame received"
                if frame is not None
                else f"no frame in {wait_s:.0f} s (state {st['state']})"
            ),
        )
    app.close()
    print("doctor: all checks passed" if problems == 0 else f"doctor: {problems} problem(s)")
    return 0 if problems == 0 else 1


def reader_checks(cfg: Config, wait_s: float) -> list[tuple[bool, str]]:
    """Each OSDP reader as `run` drives it: its bus opened, the reader online over the Secure
    Channel within ``wait_s``, or what stopped it (port, key, silence). Reads meanwhile are
    refused: the doctor decides nothing."""
    from gatectl.hw.osdp.panel import ReaderPanel
    from gatectl.runtime.readers import unwired_sink

    said: dict[str, list[str]] = {}
    buses: dict[str, list] = {}
    for r in cfg.readers:
        buses.setdefault(r.port, []).append(r)
    panels = [ReaderPanel(port, rs[0].baud, rs, unwired_sink,
                          lambda src, why: said.setdefault(src, []).append(why))
              for port, rs in buses.items()]
    for p in panels:
        p.start()
    out = []
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not all(
                s.online and (s.secure or not s.cfg.secure) for p in panels for s in p.readers):
            time.sleep(0.05)
        for p in panels:  # read before stopping: a stopped panel has every reader offline
            for s in p.readers:
                where = f"reader {s.cfg.name} (address {s.cfg.address} on {p.port})"
                if s.online and (s.secure or not s.cfg.secure):
                    how = "Secure Channel" if s.secure else "no Secure Channel (secure = false)"
                    out.append((True, f"{where}: online, {how}"))
                    continue
                why = (p.port_error or next((w for w in said.get(s.cfg.name, [])
                                             if w.startswith("reader_refused")), None)
                       or f"not online within {wait_s:g} s")
                out.append((False, f"{where}: {why}"))
    finally:
        for p in panels:
            p.stop()
    return out


def sync_check(cfg: Config) -> tuple[bool, str]:
    """The doctor's broker check: one connection with the configured TLS and credentials."""
    from gatectl.sync.client import probe

    try:
        ok, line = probe(
            cfg.sync, f"gatectl-doctor-{cfg.device.site}-{cfg.device.id}-{os.getpid()}"
        )
    except ConfigError as exc:
        ok, line = False, "; ".join(exc.lines)
    return ok, f"sync: {line}"


def wait_online(board: Relay, timeout: float) -> None:
    """A serial board needs a moment to open its port and poll once; say why if it cannot."""
    deadline = time.monotonic() + timeout
    while board.health().get("state") != "online":
        if time.monotonic() > deadline:
            st = board.health()
            raise BoardError(f"relay board {st.get('port') or st.get('driver')}: "
                              f"{st.get('last_error') or 'not answering'}")
        time.sleep(0.05)
    while board.inputs() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_state(board: Relay, channel: int, on: bool, deadline: float) -> bool:
    """Wait for the board's read-back to report ``channel`` as ``on``; False at ``deadline``."""
    while board.is_on(channel) != on:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
