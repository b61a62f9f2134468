"""`gatectl run`: every configured gate until stopped.

Threads: one grabber per camera (blocking capture), one worker per gate (inference), the
directory poller, and this supervisor, which pets the systemd watchdog only while every worker
has made progress recently - a hung worker stops the petting and systemd restarts the service.
Outputs go to their safe state at start and at shutdown, whatever stopped us.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gatectl.app import App
from gatectl.camera import CameraGrabber
from gatectl.events import free_disk_mb
from gatectl.service.systemd import sd_notify, watchdog_interval

log = logging.getLogger("gatectl.run")

RETENTION_EVERY_S = 3600.0
HEARTBEAT_STALE_S = 10.0
DOOR_POLL_S = 0.05  # door contact / exit button / fire alarm reaction time


class GateWorker:
    """Pulls the newest frame of one camera and runs one gate on it."""

    def __init__(self, gate, grabber: CameraGrabber, stop: threading.Event):
        """``gate``: a FaceGate or a PlateLane (both have ``cfg.name`` and ``process``)."""
        self.gate = gate
        self.grabber = grabber
        self.stop = stop
        self.heartbeat = time.monotonic()
        self.errors = 0
        self.thread = threading.Thread(target=self._loop, name=f"gate-{gate.cfg.name}", daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.heartbeat = time.monotonic()
            frame = self.grabber.get(timeout=0.5)
            if frame is None:
                continue
            try:
                self.gate.process(frame.image, frame.t_capture)
            except Exception:  # one bad frame must not take the gate down
                self.errors += 1
                log.exception("gate %s: frame %d failed", self.gate.cfg.name, frame.seq)


class Runner:
    def __init__(self, app: App, stop: threading.Event | None = None, config_path: Path | None = None):
        """``config_path``: the file a remote `config.reload` re-reads (None: built-in defaults)."""
        self.app = app
        self.stop = stop or threading.Event()
        self.config_path = config_path
        self.reexec = False  # set by config.reload: the CLI starts gatectl again after a clean stop
        self.sync = None
        self.workers: list[GateWorker] = []
        self.started = time.monotonic()

    def health(self) -> dict:
        """What an operator needs to see from afar: the status line, the status topic."""
        boards = {}
        for name, board in self.app.boards.items():
            st = board.status()
            boards[name] = _pick(st, "driver", "state", "last_error", "timeouts", "bad_frames",
                                 "commands_failed", "reconnects")
        return {
            "uptime_s": round(time.monotonic() - self.started),
            "cameras": {w.gate.cfg.name: _pick(w.grabber.stats(), "state", "fps", "frames", "dropped_stale", "outages")
                        for w in self.workers},
            "boards": boards,
            "controls": self.app.controls.status(),
            "events_unrecorded": self.app.recorder.unrecorded,
            "disk_free_mb": round(free_disk_mb(self.app.data_dir)),
        }

    def run(self) -> None:
        app = self.app
        if app.cfg.sync.enabled:  # first: bad keys, certificates or password files stop us here
            self.sync = app.sync_client(self.health, self._reload)
        app.outputs.all_off()
        app.controls.poll()  # the starting input states (an active fire alarm acts at once)
        app.directory.start()
        if self.sync is not None:
            self.sync.start()
        gates = app.gates()
        for gate in gates:
            grabber = CameraGrabber(app.cfg.camera(gate.cfg.camera), on_event=camera_events(app, gate.cfg.camera))
            self.workers.append(GateWorker(gate, grabber, self.stop))
        for w in self.workers:
            w.grabber.start()
            w.thread.start()
        sd_notify("READY=1")
        log.info("running %d gate(s): %s", len(gates), ", ".join(g.cfg.name for g in gates))
        try:
            self._supervise()
        finally:
            sd_notify("STOPPING=1")
            self.stop.set()
            for w in self.workers:
                w.thread.join(timeout=5)
                w.grabber.stop()
            app.directory.stop()
            if self.sync is not None:
                self.sync.stop()
            app.outputs.all_off()
            log.info("stopped; outputs off")

    def _reload(self) -> str:
        """Remote config.reload: only a config that validates replaces the running one."""
        from gatectl.config import ConfigError, load_config
        from gatectl.sync.commands import CommandFailed

        if self.config_path is None:
            raise CommandFailed("running on built-in defaults: no config file to reload")
        try:
            load_config(self.config_path)
        except ConfigError as exc:
            raise CommandFailed(f"{self.config_path}: {exc.lines[0]}"
                                + (f" (+{len(exc.lines) - 1} more)" if len(exc.lines) > 1 else "")) from None
        self.reexec = True
        threading.Timer(0.5, self.stop.set).start()  # after the response has gone out
        return f"{self.config_path} is valid; restarting with it"

    def _supervise(self) -> None:
        """Door inputs every DOOR_POLL_S; watchdog, status and retention on slower clocks."""
        slow_every = min(watchdog_interval() or 5.0, 5.0)
        next_slow = time.monotonic()
        next_retention = time.monotonic()
        while not self.stop.wait(DOOR_POLL_S):
            try:
                self.app.controls.poll()
            except Exception:  # an input glitch must not stop the supervisor (or the watchdog)
                log.exception("door input poll failed")
            now = time.monotonic()
            if now < next_slow:
                continue
            next_slow = now + slow_every
            stale = [w.gate.cfg.name for w in self.workers
                     if not w.thread.is_alive() or now - w.heartbeat > HEARTBEAT_STALE_S]
            if stale:
                log.error("gate worker(s) stalled: %s; withholding the watchdog", ", ".join(stale))
            else:
                sd_notify("WATCHDOG=1")
            if now >= next_retention:
                s = self.app.cfg.storage
                try:
                    self.app.recorder.apply_retention(s.retention_days, s.retention_max_mb)
                except Exception:
                    log.exception("retention failed; will retry")
                next_retention = now + RETENTION_EVERY_S
            h = self.health()
            sd_notify("STATUS=" + ", ".join(
                [f"{g}: {c['state']} {c['fps']:.1f} fps" for g, c in h["cameras"].items()]
                + [f"relay {b}: {st['state']}" for b, st in h["boards"].items()]))


def camera_events(app: App, camera: str) -> Callable[[str, str], None]:
    """A camera's outages as ``camera`` events (synced like every event): a guard and the
    centre see that a door was blind, and for how long."""
    def record(kind: str, detail: str) -> None:
        app.recorder.record(camera, "camera", None, f"{kind}: {detail}")
    return record


def _pick(d: dict, *keys: str) -> dict:
    return {k: d.get(k) for k in keys}
