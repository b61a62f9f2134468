"""`gatectl run`: every configured gate until stopped.

Threads: one grabber per camera (blocking capture), one worker per gate (inference), the
directory poller, and this supervisor, which pets the systemd watchdog only while every worker
is doing its job - a hung worker, or one failing on every frame, stops the petting and systemd
restarts the service. A store that refuses writes does not: the doors keep opening from the
in-memory directory and events go to the spool, which a restart would not improve.
Outputs go to their safe state at start and at shutdown, whatever stopped us.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from gatectl.control.clock import CLOCK_TRUST_REQUESTS, ClockJump, boot_id
from gatectl.core.safe_text import shown
from gatectl.gates.base import Gate
from gatectl.runtime.app import App
from gatectl.runtime.health import TOP_LEVEL, HealthCollector
from gatectl.runtime.systemd import sd_notify, watchdog_interval
from gatectl.sources.camera import CameraGrabber
from gatectl.store.db import StoreError
from gatectl.store.recorder import free_disk_mb
from gatectl.store.salvage import quarantine_if_corrupt, salvage

if TYPE_CHECKING:  # for annotations: the MQTT stack loads only when configured
    from gatectl.sync.client import SyncClient

log = logging.getLogger("gatectl.run")

RETENTION_EVERY_S = 3600.0
HEARTBEAT_STALE_S = 10.0
DOOR_POLL_S = 0.05  # door contact / exit button / fire alarm reaction time
CAMERA_FIELDS = ("state", "fps", "frames", "dropped_stale", "outages")
BOARD_FIELDS = (
    "driver", "state", "last_error", "timeouts", "bad_frames", "commands_failed", "reconnects"
)


class FrameObserver(Protocol):
    """An analyser fed the frames a gate worker pulls (`analysis.tailgate.TailgateWatch`)."""

    name: str

    def process(self, image: np.ndarray, t: float) -> object: ...

    def health(self) -> dict[str, Any]: ...


OBSERVER_LOG_EVERY_S = 60.0  # an analyser failing on every frame: one line a minute, counted


class GateWorker:
    """Pulls the newest frame of one camera and runs one gate on it (and the analysers that
    watch the same camera: a camera is opened once)."""

    def __init__(self, gate: Gate, grabber: CameraGrabber, stop: threading.Event):
        self.gate = gate
        self.observers: list[FrameObserver] = []
        self.observer_errors = 0
        self._observer_logged = -OBSERVER_LOG_EVERY_S
        self.grabber = grabber
        self.stop = stop
        self.heartbeat = time.monotonic()
        self.errors = 0
        self.failing_since: float | None = None  # first failure of the current run of failures
        self.thread = threading.Thread(target=self._loop, name=f"gate-{gate.cfg.name}", daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.heartbeat = time.monotonic()
            frame = self.grabber.get(timeout=0.5)
            if frame is None:
                continue
            try:
                self.gate.process(frame.image, frame.t_capture)
                self.failing_since = None
            except Exception:  # one bad frame must not take the gate down
                self.errors += 1
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                log.exception("gate %s: frame %d failed", self.gate.cfg.name, frame.seq)
            for obs in self.observers:
                try:
                    obs.process(frame.image, frame.t_capture)
                except Exception:  # an analyser's failure is not the gate's
                    self.observer_errors += 1
                    if time.monotonic() - self._observer_logged >= OBSERVER_LOG_EVERY_S:
                        self._observer_logged = time.monotonic()
                        log.exception("%s: frame %d failed (%d failures so far)", obs.name,
                                      frame.seq, self.observer_errors)

    def health(self) -> dict[str, Any]:
        """The gate's own counters and the worker's: frames that raised, failing right now."""
        failing = self.failing_since is not None
        return {**self.gate.health(), "errors": self.errors, "failing": failing}

    def stalled(self, now: float) -> bool:
        """Not doing its job: dead, hung, or failing on every frame for HEARTBEAT_STALE_S."""
        return (
            not self.thread.is_alive()
            or now - self.heartbeat > HEARTBEAT_STALE_S
            or (self.failing_since is not None and now - self.failing_since > HEARTBEAT_STALE_S)
        )


class Runner:
    def __init__(
        self, app: App, stop: threading.Event | None = None, config_path: Path | None = None
    ):
        """``config_path``: the file a remote `config.reload` re-reads (None: built-in defaults)."""
        self.app = app
        self.stop = stop or threading.Event()
        self.config_path = config_path
        self.reexec = False  # set by config.reload: the CLI starts gatectl again after a clean stop
        self.sync: SyncClient | None = None
        self.workers: list[GateWorker] = []
        self.started = time.monotonic()
        self._retention_held = False
        self._trust_seen = 0  # the trust requests counted when we last looked
        self._analysis: threading.Thread | None = None  # the rules' run in progress

    def health(self) -> dict[str, Any]:
        """What an operator needs to see from afar: the status line, the status topic."""
        return self.collector().collect()

    def collector(self) -> HealthCollector:
        """Every I/O owner of this run, once: the gates' workers and their cameras, the boards,
        the controls, the event recorder, the clock watch."""
        c = HealthCollector()
        c.value("uptime_s", lambda: round(time.monotonic() - self.started))
        c.section("cameras")
        for w in self.workers:
            c.add("cameras", w.grabber, w.gate.cfg.name, CAMERA_FIELDS)
        for name, board in self.app.boards.items():
            c.add("boards", board, name, BOARD_FIELDS)
        c.add("controls", self.app.controls)
        c.add(TOP_LEVEL, self.app.recorder)
        c.add("clock", self.app.clockwatch)
        c.add("analysis", self.app.analyst)
        c.add("sensors", self.app.sensors)
        c.section("tailgate")
        for w in self.workers:
            for obs in w.observers:
                c.add("tailgate", obs, obs.name)
        c.value("disk_free_mb", lambda: round(free_disk_mb(self.app.data_dir)))
        c.section("gates")
        for w in self.workers:
            c.add("gates", w, w.gate.cfg.name)
        c.value("liveness_refused", self._liveness_refused)
        return c

    def _liveness_refused(self) -> dict[str, int]:
        """Passes refused for liveness (spoof or too close) per face gate, from each gate's
        health: a rise means attacks, or a camera framed so that residents are refused
        (issue 20). Also under ``gates``; kept at the top level where operators read it."""
        out = {}
        for w in self.workers:
            n = w.gate.health().get("liveness_refused")
            if n is not None:
                out[w.gate.cfg.name] = n
        return out

    def run(self) -> None:
        app = self.app
        self._recover_store()
        self._start_clock()
        if app.cfg.sync.enabled:  # first: bad keys, certificates or password files stop us here
            self.sync = app.sync_client(self.health, self._reload)
        app.outputs.all_off()
        app.controls.poll()  # the starting input states (an active fire alarm acts at once)
        app.directory.start()
        if self.sync is not None:
            self.sync.start()
        gates = app.gates()
        for gate in gates:
            grabber = CameraGrabber(
                app.cfg.camera(gate.cfg.camera), on_event=camera_events(app, gate.cfg.camera)
            )
            self.workers.append(GateWorker(gate, grabber, self.stop))
        self._attach_tailgate_watches()
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
            if self._analysis is not None:
                self._analysis.join(timeout=5)
            app.directory.stop()
            if self.sync is not None:
                self.sync.stop()
            app.outputs.all_off()
            log.info("stopped; outputs off")

    def _attach_tailgate_watches(self) -> None:
        """Each door's tailgate watch rides on the worker of the gate on its camera (the config
        refuses a tailgate camera no gate uses: `Config._analysis_refs`)."""
        for watch in self.app.tailgate_watches():
            for w in self.workers:
                if w.gate.cfg.camera == watch.camera:
                    w.observers.append(watch)

    def _recover_store(self) -> None:
        """A corrupt database (an SD card that lost pages) is moved aside and a fresh one made,
        with a loud alert and a resync request to the centre - rather than failing every start
        while systemd restarts us in a loop. The corrupt copy stays for a technician."""
        app = self.app
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(app.clock()))
        moved = quarantine_if_corrupt(app.path(app.cfg.storage.database), stamp)
        if moved is None:
            return
        target, problem = moved
        salvaged, restored = salvage(target, app.store)
        reason = (
            f"store corrupt ({problem}): moved aside to {target.name}; a fresh store was created, "
            f"{salvaged}"
            + (
                "; resync requested from the centre"
                if app.cfg.sync.enabled
                else ""
                if restored
                else "; no central sync: residents must be enrolled again"
            )
        )
        log.critical("%s", shown(reason, 2000))
        app.recorder.record("system", "alert", "alert", reason)
        if app.cfg.sync.enabled:
            app.store.enqueue("resync", app.cfg.device.id)

    def _start_clock(self) -> None:
        """The clock watch resumes the previous process's view when it ran in this boot (kept in
        the store's meta table), so a restart - a crash, the watchdog, config.reload - neither
        forgets that the clock is held nor misses a jump made while no daemon watched."""
        app, watch = self.app, self.app.clockwatch
        watch.on_change = self._clock_changed
        keys = (
            "clock_boot",
            "clock_offset_ms",
            "clock_trusted_offset_ms",
            "clock_untrusted_since_ms",
        )
        st = app.store.meta(
            CLOCK_TRUST_REQUESTS, *keys
        )  # a store that cannot open: `run`'s one line
        self._trust_seen = st.get(
            CLOCK_TRUST_REQUESTS, 0
        )  # requests made while no daemon ran are moot
        boot = boot_id()
        if boot is not None and st.get("clock_boot") == boot and all(k in st for k in keys):
            since = st["clock_untrusted_since_ms"]
            watch.resume(st["clock_offset_ms"] / 1000, st["clock_trusted_offset_ms"] / 1000,
                         None if since < 0 else since / 1000)
            if since >= 0:
                log.warning(
                    "clock not trusted since before this start: retention and the "
                    "re-enrollment rule stay held (`gatectl clock status`)"
                )
        watch.observe()
        self._report_clock()

    def _clock_changed(self, jump: ClockJump | None) -> None:
        """A jump (or the return to trust): logged and raised as an alert event."""
        if jump is None:
            log.warning(
                "clock trusted again: retention and the re-enrollment rule use the wall clock"
            )
            self._report_clock()
            return
        watch = self.app.clockwatch
        if watch.trusted:
            reason = f"{jump.describe()} (wall vs monotonic): back on the trusted time base"
        else:
            reason = (
                f"{jump.describe()} (wall vs monotonic): retention and the re-enrollment rule are "
                f"held until the clock is trusted (stable for {watch.settle_s:.0f} s, "
                f"or `gatectl clock trust`)"
            )
        log.warning("%s", reason)
        self.app.recorder.record("system", "alert", "alert", reason)
        self._report_clock()

    def _report_clock(self) -> None:
        """The daemon's view of the clock in the store's meta table, for `gatectl clock status`
        (another process) and the next start (`_start_clock`): written at start, on every change
        and hourly (NTP slewing moves the offset a little), so no SD-card wear. The
        wait is bounded as on the decision path: a jump can be noticed by a gate worker."""
        watch = self.app.clockwatch
        st, saved = watch.health(), watch.saved() or {}
        now = self.app.clock()
        settles = 0 if st["trusted"] else round(now + watch.settle_s - st["since_jump_s"])
        values = {
            "clock_reported_at": round(now),
            "clock_trusted": int(st["trusted"]),
            "clock_jumps": st["jumps"],
            "clock_settles_at": settles,
            "clock_trust_applied": self._trust_seen,
            "clock_boot": boot_id() or -1,
            **{f"clock_{k}": v for k, v in saved.items()},
        }
        if st["last_jump_s"] is not None:  # else the previous process's (a resumed hold) stays
            values["clock_last_jump_s"] = round(st["last_jump_s"])
        try:
            self.app.store.set_meta(values, wait_s=self.app.cfg.storage.lock_wait_ms / 1000)
        except StoreError as exc:
            log.warning("clock state not stored for `gatectl clock status`: %s", exc)

    def _trust_requests(self) -> None:
        """Confirm the clock when `gatectl clock trust` or the centre asked since the last look."""
        try:
            asked = self.app.store.meta(CLOCK_TRUST_REQUESTS).get(CLOCK_TRUST_REQUESTS, 0)
        except StoreError:
            return  # the store's own failure is reported by the event path
        if asked <= self._trust_seen:
            return
        self._trust_seen = asked
        watch = self.app.clockwatch
        if watch.trusted:
            self._report_clock()  # answers the request: nothing to do
            return
        reason = (
            "clock trusted on request (`gatectl clock trust` or the centre's clock.trust): "
            "retention and the re-enrollment rule use the wall clock again"
        )
        log.warning("%s", reason)
        self.app.recorder.record("system", "system", None, reason)
        watch.confirm()  # on_change(None): logged and reported

    def _reload(self) -> str:
        """Remote config.reload: only a config that validates replaces the running one."""
        from gatectl.config import load_config
        from gatectl.config.base import ConfigError
        from gatectl.sync.commands import CommandFailed

        if self.config_path is None:
            raise CommandFailed("running on built-in defaults: no config file to reload")
        try:
            load_config(self.config_path)
        except ConfigError as exc:
            raise CommandFailed(
                f"{self.config_path}: {exc.lines[0]}"
                + (f" (+{len(exc.lines) - 1} more)" if len(exc.lines) > 1 else "")
            ) from None
        self.reexec = True
        threading.Timer(0.5, self.stop.set).start()  # after the response has gone out
        return f"{self.config_path} is valid; restarting with it"

    def _supervise(self) -> None:
        """Door inputs every DOOR_POLL_S; watchdog, status and retention on slower clocks."""
        slow_every = min(watchdog_interval() or 5.0, 5.0)
        next_slow = time.monotonic()
        next_retention = time.monotonic()
        next_report = next_retention + RETENTION_EVERY_S  # the clock view: written at start already
        next_analysis = next_slow + self.app.cfg.analysis.every_s
        while not self.stop.wait(DOOR_POLL_S):
            try:
                self.app.controls.poll()
            except Exception:  # an input glitch must not stop the supervisor (or the watchdog)
                log.exception("door input poll failed")
            try:
                self.app.sensors.poll()
            except Exception:
                log.exception("sensor input poll failed")
            self.app.clockwatch.observe()
            now = time.monotonic()
            if now < next_slow:
                continue
            next_slow = now + slow_every
            self._trust_requests()
            if now >= next_report:
                next_report = now + RETENTION_EVERY_S
                self._report_clock()
            stale = [w.gate.cfg.name for w in self.workers if w.stalled(now)]
            if stale:
                log.error(
                    "gate worker(s) stalled or failing on every frame: %s; "
                    "withholding the watchdog",
                    ", ".join(stale),
                )
            else:
                sd_notify("WATCHDOG=1")
            try:
                self.app.recorder.drain_spool()
            except Exception:
                log.exception("event spool drain failed; will retry")
            if now >= next_retention:
                next_retention = self._retention(now)
            if now >= next_analysis:
                next_analysis = now + self._analyse()
            h = self.health()
            sd_notify("STATUS=" + ", ".join(
                [f"{g}: {c['state']} {c['fps']:.1f} fps" for g, c in h["cameras"].items()]
                + [f"relay {b}: {st['state']}" for b, st in h["boards"].items()]))


    def _analyse(self, wait: bool = False) -> float:
        """Start the behaviour rules (`analysis.engine`) on a thread of their own - reading
        weeks of history must not delay the door inputs or a fire alarm - unless the clock just
        jumped (their windows are wall-time differences) or the last run is still going.
        ``wait``: until it is done (tests). Returns the seconds until the next run."""
        if not self.app.clockwatch.trusted:
            return 60.0
        if self._analysis is None or not self._analysis.is_alive():
            self._analysis = threading.Thread(target=self._run_rules, name="analysis",
                                              daemon=True)
            self._analysis.start()
        if wait:
            self._analysis.join()
        return self.app.cfg.analysis.every_s

    def _run_rules(self) -> None:
        try:
            self.app.analyst.run()
        except Exception:  # a rule's failure is logged and retried at the next run
            log.exception("behaviour rules failed; will retry")

    def _retention(self, now: float) -> float:
        """Snapshot and event retention and the orphan sweep, unless the clock just jumped
        (every cut-off is a wall-time difference); returns when to run next: in an hour, or
        on the next slow tick while the clock is held."""
        if not self.app.clockwatch.trusted:
            if not self._retention_held:
                log.warning("retention held: the clock jumped and is not trusted yet")
            self._retention_held = True
            return now
        self._retention_held = False
        s = self.app.cfg.storage
        try:
            self.app.recorder.apply_retention(
                s.retention_days,
                s.retention_max_mb,
                event_days=s.event_retention_days,
                event_max_rows=s.event_max_rows,
            )
        except Exception:
            log.exception("retention failed; will retry")
        return now + RETENTION_EVERY_S


def camera_events(app: App, camera: str) -> Callable[[str, str], None]:
    """A camera's outages as ``camera`` events (synced like every event): a guard and the
    centre see that a door was blind, and for how long."""
    def record(kind: str, detail: str) -> None:
        app.recorder.record(camera, "camera", None, f"{kind}: {detail}")
    return record
