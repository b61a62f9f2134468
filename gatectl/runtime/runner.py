"""`gatectl run`: every configured gate until stopped.

Threads: one grabber per camera (blocking capture), shared by every gate on that camera (each
gate has its own `FrameReader`); one worker per gate (inference), paced to its ``max_fps`` and
behind the motion pre-filter; the directory poller; and this supervisor.

Supervision: a gate worker whose frames raise ``run.restart_after_errors`` times in a row,
that fails on every frame or stops its heartbeat for ``run.stall_s``, or whose thread ended,
is *down*: a ``system`` event says so, and it is rebuilt (a fresh gate: trackers and cooldowns
start empty) after a wait that doubles per restart from 1 s up to ``run.restart_backoff_max_s``;
a second ``system`` event says when it works again. The other gates never stop. A camera's
grab thread killed by a bug is restarted the same way (source failures are outages the grabber
handles itself, as ``camera`` events).

The watchdog (`sd_notify WATCHDOG=1`) is withheld only when the daemon as a whole cannot do its
job, where a restart of the process is the one cure left: every gate is down at once (or
restarted and not yet shown to work: one that fails again at once must not pet it), or a gate
has left ``MAX_ABANDONED`` threads hung in native code (Python cannot kill a thread; only a new
process frees them). One gate down among several is not such a case: the supervisor restarts
it, and a process restart would blind the working gates too. Nor is a store that refuses
writes: the doors keep opening from the in-memory directory and events go to the spool, which
a restart would not improve.

Outputs go to their safe state at start and at shutdown, whatever stopped us. SIGTERM: doors
locked and holds released at once, then the workers joined and the outbox flushed within
``run.stop_timeout_s``, exit 0. SIGHUP: the config file is validated; a bad one is refused with
one log line (its first error) and the running config kept; a good one is applied by a clean
stop and a re-exec of the same process id (`cli/service.py`), so systemd keeps supervising it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from gatectl.config.gates import FaceGateConfig
from gatectl.config.run import RunConfig
from gatectl.control.clock import CLOCK_TRUST_REQUESTS, ClockJump, boot_id
from gatectl.core.safe_text import shown
from gatectl.gates.base import FaceSource, Gate
from gatectl.hw.display import PrivacyNotice
from gatectl.hw.osdp.panel import Sink
from gatectl.runtime.app import App
from gatectl.runtime.health import TOP_LEVEL, HealthCollector
from gatectl.runtime.heap import HeapTrimmer
from gatectl.runtime.readers import Readers
from gatectl.runtime.status_view import start_status
from gatectl.runtime.systemd import sd_notify, watchdog_interval
from gatectl.sources.camera import CameraGrabber, FrameReader
from gatectl.sources.motion import MotionFilter
from gatectl.store.db import StoreError
from gatectl.store.recorder import free_disk_mb
from gatectl.store.salvage import quarantine_if_corrupt, salvage
from gatectl.vision.face.detect import FrameFaces

if TYPE_CHECKING:  # for annotations: the MQTT stack loads only when configured
    from gatectl.sync.client import SyncClient
    from gatectl.web.server import HttpServer
    from gatectl.web.status import StatusServer

log = logging.getLogger("gatectl.run")

RETENTION_EVERY_S = 3600.0
DOOR_POLL_S = 0.05  # door contact / exit button / fire alarm reaction time
SUPERVISE_EVERY_S = 0.25  # how often the workers and grab threads are checked
FIRST_RESTART_S = 1.0  # the first wait before a restart; doubled per restart
HEALTHY_RESET_S = 60.0  # a gate up this long since its last restart starts again at 1 s
MAX_ABANDONED = 3  # hung threads of one gate left behind before only a process restart helps
LOG_EVERY_ERRORS = 100  # a gate failing on every frame logs its first error, then every 100th
CAMERA_FIELDS = ("state", "fps", "frames", "dropped_stale", "outages")
BOARD_FIELDS = (
    "driver", "state", "last_error", "timeouts", "bad_frames", "commands_failed", "reconnects"
)


class FrameObserver(Protocol):
    """An analyser fed the frames a gate worker pulls (`analysis.tailgate.TailgateWatch`), with
    the faces the gate found in that frame when it is a `FaceSource`."""

    name: str

    def process(self, image: np.ndarray, t: float, faces: FrameFaces | None = None) -> object: ...

    def health(self) -> dict[str, Any]: ...


OBSERVER_LOG_EVERY_S = 60.0  # an analyser failing on every frame: one line a minute, counted


class GateWorker:
    """Pulls the newest frame of its camera and runs one gate on it, at most ``max_fps`` times
    a second and only for frames the motion filter wants; supervised by the `Runner`.

    ``build`` makes a fresh gate: the first one, and each one after a restart. A restart retires
    the running thread by its generation: a thread hung inside a frame is left behind (Python
    cannot stop it) and, should it ever return, exits without touching the worker's state.
    """

    def __init__(
        self,
        build: Callable[[], Gate],
        reader: FrameReader,
        stop: threading.Event,
        run: RunConfig | None = None,
    ):
        self.run = run or RunConfig()
        self._build = build
        self.observers: list[FrameObserver] = []  # analysers on the same camera's frames
        self.observer_errors = 0
        self._observer_logged = -OBSERVER_LOG_EVERY_S
        self.gate = build()
        self.name = self.gate.cfg.name
        self.reader = reader
        self.stop = stop
        self.motion = MotionFilter(self.run.motion)
        self.period_s = 1.0 / self.run.fps_of(self.name)
        self.heartbeat = time.monotonic()
        self.errors = 0
        self.in_a_row = 0  # frames raising since the last good one
        self.last_error: str | None = None
        self.failing_since: float | None = None  # first failure of the current run of failures
        self.analysed = 0
        self.restarts = 0
        self.abandoned = 0  # threads of this gate left hung in a frame
        self.state = "running"  # running | down | restarted (until it works again)
        self.down_since: float | None = None
        self.restart_at = 0.0
        self.backoff_s = FIRST_RESTART_S
        self.up_since = time.monotonic()
        self._generation = 0
        self.thread = self._new_thread()

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(
            target=self._loop, args=(self._generation,), name=f"gate-{self.name}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def _loop(self, generation: int) -> None:
        next_due = 0.0
        while not self.stop.is_set() and generation == self._generation:
            self.heartbeat = time.monotonic()
            wait = next_due - self.heartbeat
            if wait > 0:  # over max_fps: the frames the camera delivers meanwhile are skipped
                self.stop.wait(min(wait, 0.5))
                continue
            if self.in_a_row >= self.run.restart_after_errors:
                self.stop.wait(0.05)  # known broken: no more frames until the supervisor acts
                continue
            frame = self.reader.get(timeout=0.5)
            if frame is None:
                if self.reader.camera.finished:  # stopped or ended: nothing will come; no spin
                    self.stop.wait(0.5)
                continue
            if not self.motion.wants(frame.image, frame.t_capture):
                continue
            next_due = time.monotonic() + self.period_s
            gate = self.gate
            try:
                gate.process(frame.image, frame.t_capture)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not take the gate down
                if generation != self._generation:
                    return
                self._failed(exc, frame.seq)
                continue
            if generation != self._generation:
                return  # retired while this frame ran: the new thread owns the counters
            self.analysed += 1
            self.in_a_row = 0
            self.failing_since = None
            self._observe(frame.image, frame.t_capture, frame.seq)

    def _observe(self, image: np.ndarray, t: float, seq: int) -> None:
        """The analysers watching this camera (a tailgate watch), after the gate; one failing
        is counted and logged once a minute, never held against the gate."""
        gate = self.gate
        faces = gate.frame_faces() if isinstance(gate, FaceSource) else None
        for obs in self.observers:
            try:
                obs.process(image, t, faces)
            except Exception:  # an analyser's failure is not the gate's
                self.observer_errors += 1
                if time.monotonic() - self._observer_logged >= OBSERVER_LOG_EVERY_S:
                    self._observer_logged = time.monotonic()
                    log.exception("%s: frame %d failed (%d failures so far)", obs.name, seq,
                                  self.observer_errors)

    def _failed(self, exc: Exception, seq: int) -> None:
        self.errors += 1
        self.in_a_row += 1
        self.last_error = shown(f"{type(exc).__name__}: {exc}", 200)
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        if self.in_a_row == 1 or self.errors % LOG_EVERY_ERRORS == 0:
            log.exception("gate %s: frame %d failed (%d so far)", self.name, seq, self.errors)

    def health(self) -> dict[str, Any]:
        """The gate's own counters and the worker's: frames that raised, failing right now,
        frames analysed and skipped (over max_fps or while busy; for want of motion)."""
        failing = self.failing_since is not None
        return {
            **self.gate.health(),
            "errors": self.errors,
            "failing": failing,
            "state": self.state,
            "analysed": self.analysed,
            "skipped": self.reader.missed,
            "skipped_motion": self.motion.spared,
            "restarts": self.restarts,
        }

    def problem(self, now: float) -> str | None:
        """Why this worker is not doing its job (None: it is): its thread ended, it is hung
        in a frame, or its frames keep raising."""
        stall_s = self.run.stall_s
        if not self.thread.is_alive():
            return "worker thread ended"
        if now - self.heartbeat > stall_s:
            return f"no progress for {now - self.heartbeat:.0f} s (hung in a frame)"
        if self.in_a_row >= self.run.restart_after_errors:
            return f"{self.in_a_row} frames in a row raised (last: {self.last_error})"
        if self.failing_since is not None and now - self.failing_since > stall_s:
            return f"failing on every frame for {now - self.failing_since:.0f} s"
        return None

    def stalled(self, now: float) -> bool:
        """Not doing its job right now: down, restarted but not yet shown to work (a gate that
        fails at once after every restart must not pet the watchdog in between), or a problem
        the supervisor has yet to act on."""
        return self.state != "running" or self.problem(now) is not None

    def retire(self, now: float) -> None:
        """Take the running thread out of service: it exits at its next check, or is left
        behind if hung; the restart waits ``backoff_s`` (doubled for the next time)."""
        self._generation += 1
        if self.thread.is_alive():
            self.abandoned += 1 if now - self.heartbeat > self.run.stall_s else 0
        self.state = "down"
        self.down_since = now
        self.restart_at = now + self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, self.run.restart_backoff_max_s)

    def revive(self, now: float) -> None:
        """A fresh gate on a new thread (raises what building the gate raises)."""
        self.gate = self._build()
        self.in_a_row, self.failing_since, self.last_error = 0, None, None
        self.heartbeat = now
        self.restarts += 1
        self.state = "restarted"
        self.up_since = now
        self._generation += 1
        self.thread = self._new_thread()
        self.thread.start()

    def recovered(self, now: float, analysed_at_restart: int) -> bool:
        """After a restart: a frame went through, or it ran without a problem for stall_s (a
        camera that is down itself gives no frame, and that is the camera's outage)."""
        return self.analysed > analysed_at_restart or now - self.up_since > self.run.stall_s


class Runner:
    def __init__(
        self, app: App, stop: threading.Event | None = None, config_path: Path | None = None,
        sink_for: Callable[[str], Sink] | None = None,
    ):
        """``config_path``: the file a reload (SIGHUP, remote `config.reload`) re-reads (None:
        built-in defaults). ``sink_for(door)``: the access decision the door's card and PIN
        readers hand their credentials to (default: the door's `AccessPoint`, as for faces)."""
        self.app = app
        sinks = sink_for or (lambda door: app.access_point(door).present)
        self.readers = Readers(app.cfg.readers, sinks, lambda: app.recorder)
        self.notice = PrivacyNotice(
            app.display, app.cfg.privacy,
            sorted({g.door for g in app.cfg.gates if isinstance(g, FaceGateConfig)}),
            time.monotonic,
        )
        self.stop = stop or threading.Event()
        self.config_path = config_path
        self.reexec = False  # a reload: the CLI starts gatectl again after a clean stop
        self.sync: SyncClient | None = None
        self.grabbers: dict[str, CameraGrabber] = {}  # one per camera, whatever its gates
        self.push: HttpServer | None = None
        self.workers: list[GateWorker] = []
        self.status: StatusServer | None = None  # the status page, when [status] enables it
        self.started = time.monotonic()
        self._retention_held = False
        self._trust_seen = 0  # the trust requests counted when we last looked
        self._reload_asked = False  # set by SIGHUP's handler, acted on by the supervisor
        self._analysis: threading.Thread | None = None  # the rules' run in progress
        self._analysed_at_restart: dict[str, int] = {}
        self._camera_restart_at: dict[str, float] = {}
        self._camera_backoff: dict[str, float] = {}
        self.heap = HeapTrimmer(self.app.cfg.run.trim_heap_s)

    def health(self) -> dict[str, Any]:
        """What an operator needs to see from afar: the status line, the status topic."""
        return self.collector().collect()

    def collector(self) -> HealthCollector:
        """Every I/O owner of this run, once: the cameras, the gates' workers, the boards, the
        controls, the event recorder, the clock watch."""
        c = HealthCollector()
        c.value("uptime_s", lambda: round(time.monotonic() - self.started))
        c.section("cameras")
        for name, grabber in self.grabbers.items():
            c.add("cameras", grabber, name, CAMERA_FIELDS)
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
            c.add("gates", w, w.name)
        c.value("liveness_refused", self._liveness_refused)
        for door, point in self.app.access_points.items():  # decisions per credential, by door
            c.add("access", point, door)
        c.add("readers", self.readers)
        c.add("heap", self.heap)
        return c

    def _liveness_refused(self) -> dict[str, int]:
        """Passes refused for liveness (spoof or too close) per face gate, from each gate's
        health: a rise means attacks, or a camera framed so that residents are refused
        (issue 20). Also under ``gates``; kept at the top level where operators read it."""
        out = {}
        for w in self.workers:
            n = w.gate.health().get("liveness_refused")
            if n is not None:
                out[w.name] = n
        return out

    def request_reload(self) -> None:
        """SIGHUP: only sets a flag (a signal handler must not take locks); the supervisor
        validates and applies the file on its next tick."""
        self._reload_asked = True

    def run(self) -> None:
        app = self.app
        app.store_hold.acquire("gatectl run")  # released by App.close(); a restore checks it
        self._recover_store()
        self._start_clock()
        if app.cfg.sync.enabled:  # first: bad keys, certificates or password files stop us here
            self.sync = app.sync_client(self.health, self._reload)
        app.outputs.all_off()
        app.controls.poll()  # the starting input states (an active fire alarm acts at once)
        app.directory.start()
        if self.sync is not None:
            self.sync.start()
        try:  # from here on, whatever fails (a taken address, a model) ends in _shutdown
            if app.cfg.push.enabled and app.cfg.push.cameras:
                self.push = app.push_server()
                self.push.start()
                log.info("camera pushes on %s:%d", app.cfg.push.host, self.push.port)
            self._start_gates()
            self.status = start_status(app, self.collector, lambda: [w.gate for w in self.workers],
                                       self.sync)
            sd_notify("READY=1")
            log.info("running %d gate(s) on %d camera(s): %s", len(self.workers),
                     len(self.grabbers), ", ".join(w.name for w in self.workers))
            self._supervise()
        finally:
            self._shutdown()

    def _start_gates(self) -> None:
        """One grabber per camera that a gate uses, one supervised worker per gate. Published
        whole at the end: the sync thread reads the health while the models load."""
        app = self.app
        grabbers: dict[str, CameraGrabber] = {}
        workers: list[GateWorker] = []
        for gate_cfg in app.cfg.gates:
            if gate_cfg.camera not in grabbers:
                grabbers[gate_cfg.camera] = CameraGrabber(
                    app.cfg.camera(gate_cfg.camera),
                    on_event=camera_events(app, gate_cfg.camera),
                )
            reader = grabbers[gate_cfg.camera].reader()
            workers.append(
                GateWorker(partial(app.gate, gate_cfg), reader, self.stop, app.cfg.run)
            )
        self._attach_tailgate_watches(workers)  # opens their models: may refuse the start
        self.grabbers, self.workers = grabbers, workers
        for grabber in grabbers.values():
            grabber.start()
        for w in workers:
            w.start()
        self.readers.start()

    def _shutdown(self) -> None:
        """Doors locked and holds released first (nothing may wait for that), then the push
        listener, workers, cameras and directory stopped and the outbox flushed within
        stop_timeout_s; outputs off once more after the workers are gone (one may have been
        mid-decision)."""
        app = self.app
        deadline = time.monotonic() + app.cfg.run.stop_timeout_s
        sd_notify("STOPPING=1")
        self.stop.set()
        self.readers.stop()  # no card or PIN decides anything from here on
        app.outputs.all_off()
        if self.push is not None:  # before the second all_off: a late push could hold a car
            self.push.stop()
        if self.status is not None:
            self.status.stop()
        for w in self.workers:
            w.thread.join(timeout=max(0.0, min(5.0, deadline - time.monotonic())))
        for grabber in self.grabbers.values():
            grabber.stop()
        app.outputs.all_off()
        if self._analysis is not None:
            self._analysis.join(timeout=max(0.0, min(5.0, deadline - time.monotonic())))
        app.directory.stop()
        if self.sync is not None:
            self._flush_outbox(deadline)
            self.sync.stop(timeout=max(0.5, min(5.0, deadline - time.monotonic())))
        log.info("stopped; outputs off")

    def _flush_outbox(self, deadline: float) -> None:
        """Let the sync thread (still running) send what is queued, until it is empty, the
        broker is away (nothing would leave anyway), or the stop timeout is spent."""
        if self.sync is None:
            return
        sync = self.sync
        while time.monotonic() < deadline and sync.connected.is_set():
            try:
                pending = self.app.store.outbox_stats()["pending"]
            except StoreError:
                return
            if pending == 0:
                return
            time.sleep(0.05)
        log.warning("outbox not flushed before the stop timeout: the rest goes on the next start")

    def _attach_tailgate_watches(self, workers: list[GateWorker]) -> None:
        """Each door's tailgate watch rides on the worker of the gate on its camera (the config
        refuses a tailgate camera no gate uses: `Config._analysis_refs`)."""
        for watch in self.app.tailgate_watches():
            for w in workers:
                if w.gate.cfg.camera == watch.camera:
                    w.observers.append(watch)
                    break  # one worker per watch, even where gates share the camera

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

    def _config_problem(self) -> str | None:
        """The first reason the config file cannot replace the running one (one line, the
        count of the others after it), or None when it may."""
        from gatectl.config import load_config
        from gatectl.config.base import ConfigError

        if self.config_path is None:
            return "running on built-in defaults: no config file to reload"
        try:
            lines = load_config(self.config_path).startup_problems()
        except ConfigError as exc:
            lines = exc.lines
        if not lines:
            return None
        more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
        return f"{self.config_path}: {lines[0]}{more}"

    def _reload(self) -> str:
        """Remote config.reload: only a config that validates replaces the running one."""
        from gatectl.sync.commands import CommandFailed

        problem = self._config_problem()
        if problem is not None:
            raise CommandFailed(problem)
        self.reexec = True
        threading.Timer(0.5, self.stop.set).start()  # after the response has gone out
        return f"{self.config_path} is valid; restarting with it"

    def _sighup(self) -> None:
        """SIGHUP (systemd's ExecReload): a bad file is refused in one line and the running
        config kept; a good one is applied by a clean stop and a re-exec (same process id)."""
        self._reload_asked = False
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        problem = self._config_problem()
        if problem is not None:
            log.error("config reload refused, the running config is kept: %s", shown(problem, 400))
            sd_notify("READY=1")
            return
        log.warning("config reload: %s is valid; restarting with it", self.config_path)
        self.reexec = True
        self.stop.set()

    def _supervise(self) -> None:
        """Door inputs every DOOR_POLL_S; gates and cameras every SUPERVISE_EVERY_S; watchdog,
        status and retention on slower clocks."""
        slow_every = min(watchdog_interval() or 5.0, 5.0)
        next_slow = next_check = time.monotonic()
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
            if self._reload_asked:
                self._sighup()
            now = time.monotonic()
            if now >= next_check:
                next_check = now + SUPERVISE_EVERY_S
                self._check_gates(now)
                self._check_cameras(now)
            if now < next_slow:
                continue
            next_slow = now + slow_every
            self._trust_requests()
            self.notice.tick()
            if now >= next_report:
                next_report = now + RETENTION_EVERY_S
                self._report_clock()
            why = self.cannot_work(now)
            if why is not None:
                log.error("%s; withholding the watchdog", why)
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
            self.heap.maybe_trim(now)
            h = self.health()
            sd_notify("STATUS=" + ", ".join(
                [f"{g}: {c['state']} {c['fps']:.1f} fps" for g, c in h["cameras"].items()]
                + [f"relay {b}: {st['state']}" for b, st in h["boards"].items()]))

    def cannot_work(self, now: float) -> str | None:
        """Why the daemon as a whole cannot do its job, so that only a restart of the process
        helps (the watchdog is withheld); None while it can (see the module's docstring)."""
        if self.workers and all(w.stalled(now) for w in self.workers):
            return "every gate is down: " + ", ".join(w.name for w in self.workers)
        hung = [w.name for w in self.workers if w.abandoned >= MAX_ABANDONED]
        if hung:
            return f"gate(s) {', '.join(hung)} left {MAX_ABANDONED}+ threads hung in a frame"
        dead = self.readers.dead()  # a reader bus thread gone: a restart brings its readers back
        if dead:
            return f"reader bus(es) {', '.join(dead)} dead"
        return None

    def _check_gates(self, now: float) -> None:
        """Retire a worker with a problem, restart it when its backoff is over, tell when it
        works again: each outage is two ``system`` events, never a silent loop."""
        for w in self.workers:
            if w.state == "down":
                if now >= w.restart_at:
                    self._restart(w, now)
                continue
            problem = w.problem(now)
            if problem is not None:
                w.retire(now)
                reason = f"gate {w.name} down: {problem}; restarting in {w.restart_at - now:.0f} s"
                log.error("%s", reason)
                self.app.recorder.record(w.name, "system", None, reason)
            elif w.state == "restarted" and w.recovered(now, self._analysed_at_restart[w.name]):
                w.state = "running"
                since = now - (w.down_since or now)
                reason = f"gate {w.name} running again after {since:.1f} s down"
                log.warning("%s (restart %d)", reason, w.restarts)
                self.app.recorder.record(w.name, "system", None, reason)
            elif w.state == "running" and now - w.up_since > HEALTHY_RESET_S:
                w.backoff_s = FIRST_RESTART_S

    def _restart(self, w: GateWorker, now: float) -> None:
        self._analysed_at_restart[w.name] = w.analysed
        try:
            w.revive(now)
        except Exception as exc:  # noqa: BLE001 - a gate that cannot be built: wait longer
            w.restart_at = now + w.backoff_s
            w.backoff_s = min(w.backoff_s * 2, w.run.restart_backoff_max_s)
            log.error("gate %s: restart failed (%s); next try in %.0f s",
                      w.name, shown(f"{type(exc).__name__}: {exc}", 200), w.restart_at - now)
            return
        log.warning("gate %s: restarted (restart %d)", w.name, w.restarts)

    def _check_cameras(self, now: float) -> None:
        """A grab thread killed by a bug (not a source outage): restarted with backoff, as a
        ``camera`` event, so the gates on that camera do not stay blind."""
        for name, grabber in self.grabbers.items():
            if not grabber.crashed():
                continue
            at = self._camera_restart_at.get(name)
            if at is None:
                delay = self._camera_backoff.get(name, FIRST_RESTART_S)
                self._camera_restart_at[name] = now + delay
                self._camera_backoff[name] = min(delay * 2, self.app.cfg.run.restart_backoff_max_s)
                log.error("camera '%s': capture thread died; restarting in %.0f s", name, delay)
                camera_events(self.app, name)("capture_died", f"restarting in {delay:.0f} s")
            elif now >= at:
                del self._camera_restart_at[name]
                grabber.restart()

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
