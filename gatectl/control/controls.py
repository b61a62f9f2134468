"""The device's controllers at run time: doors, barriers and elevator holds wired to the
boards' inputs and outputs and to the event log.

Gate pipelines call `grant`, `open_barrier` and `ebike`; the supervisor calls `poll` every few
tens of milliseconds, which reads the boards' last input snapshots, turns changes into
controller events (door contact, exit button, vehicle guard, fire alarm), feeds an AI camera's
``ebike_detected`` contact (confirmed by `ContactConfirm`) - wired, or a camera's signed HTTP
reports (`camera_report`) - to its elevator's hold like an e-bike gate's frames, and advances
time.
Every action a controller returns is applied here: pulses and latches to the outputs, alarms
and notices to the event log. One lock serialises the callers; the controllers stay pure and
are tested without any of this. A board that refuses a command (offline, queue full) becomes
an ``output_failed`` alert, never an exception in a gate worker.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

import numpy as np

from gatectl.config import Config
from gatectl.config.hardware import InputConfig
from gatectl.control.actions import Action, Alarm, Latch, Notice, Pulse
from gatectl.control.barrier import BarrierController
from gatectl.control.door import DoorController
from gatectl.control.elevator_hold import ContactConfirm, ElevatorHold, ReportConfirm
from gatectl.core.metrics import RELAY_ERRORS
from gatectl.hw.outputs import Outputs
from gatectl.hw.relay import BoardError
from gatectl.store.db import StoreError
from gatectl.store.recorder import EventRecorder

log = logging.getLogger("gatectl.controls")


class Controls:
    def __init__(
        self,
        cfg: Config,
        outputs: Outputs,
        recorder: EventRecorder,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] | None = None,
    ):
        """``clock`` times the controllers (monotonic); ``wall_clock`` (default: the recorder's)
        stamps what must outlive the process, such as anti-passback passes."""
        self.outputs = outputs
        self.recorder = recorder
        self.clock = clock
        self.wall_clock = wall_clock or recorder.clock
        self.doors = {d.name: DoorController(d) for d in cfg.doors}
        self.barriers = {
            b.name: BarrierController(
                b.open_output,
                b.close_output,
                pulse_s=b.pulse_s,
                auto_close_s=b.auto_close_s,
                closing_s=b.closing_s,
            )
            for b in cfg.barriers
        }
        self.elevators = {
            e.name: ElevatorHold(
                e.hold_output,
                e.alarm_output,
                pulse_s=e.pulse_s,
                renew_s=e.renew_s,
                release_after_s=e.release_after_s,
                cap_s=e.cap_s,
                episode_gap_s=e.episode_gap_s,
                cooldown_s=e.cooldown_s,
            )
            for e in cfg.elevators
        }
        self.inputs: list[InputConfig] = list(cfg.inputs)
        # an AI camera's alarm contact: (input, elevator, its confirmation), read every poll
        self._ebike_contacts = [
            (i.name, i.elevator, ContactConfirm(i.confirm_s))
            for i in cfg.inputs
            if i.role == "ebike_detected" and i.elevator is not None
        ]
        # a camera that pushes its detections over HTTP: camera -> (elevator, its reports)
        self._pushers = {
            c.name: (c.elevator, ReportConfirm(c.confirm_s, c.active_s)) for c in cfg.push.cameras
        }
        self._guards = {b.guard_input: b.name for b in cfg.barriers if b.guard_input}
        self._last: dict[str, bool] = {}  # input name -> last active state seen
        self._lock = threading.Lock()
        # board -> (state, reconnects) last seen
        self._boards: dict[str, tuple[str | None, int]] = {}
        self._boards_down: set[str] = set()  # boards whose outage was recorded
        self._door_frames: dict[str, Callable[[], np.ndarray | None]] = {}
        self._grants: dict[str, int] = {}  # door -> grants so far (the tailgate watch's count)
        self._restore_anti_passback()

    def _restore_anti_passback(self) -> None:
        """Passes stored before a restart, moved onto this process's monotonic clock (a pass
        stamped in the future by a clock set back counts as now)."""
        now, wall = self.clock(), self.wall_clock()
        for name, door in self.doors.items():
            window = door.cfg.anti_passback_s
            if window <= 0:
                continue
            try:
                passes = self.recorder.store.recent_passes(name, wall - window)
            except (StoreError, sqlite3.Error) as exc:
                log.error(
                    "door %s: stored anti-passback not read (%s); starting without it", name, exc
                )
                continue
            door.restore_passes({rid: now - max(wall - ts, 0.0) for rid, ts in passes.items()})

    # ---- called by gate pipelines --------------------------------------------------------

    def anti_passback_ok(self, door: str, resident_id: int | None) -> bool:
        with self._lock:
            return self.doors[door].anti_passback_ok(resident_id, self.clock())

    def grant(self, door: str, resident_id: int | None = None, *, why: str | None = None) -> None:
        """Unlock ``door``. A gate records its decision (with the snapshot) before it calls;
        a caller that recorded nothing (a remote command) gives ``why``, recorded here as a
        ``control`` event before the door moves - the same order for every way in."""
        with self._lock:
            ctl = self.doors[door]
            self._grants[door] = self._grants.get(door, 0) + 1
            self._apply(door, _explained(ctl.grant(self.clock(), resident_id), "door_opened", why))
            if resident_id is not None and ctl.cfg.anti_passback_s > 0:
                try:  # after the door opened: a store problem must not keep anyone out
                    self.recorder.store.note_pass(
                        door, resident_id, self.wall_clock(), ctl.cfg.anti_passback_s
                    )
                except (StoreError, sqlite3.Error) as exc:
                    log.error(
                        "door %s: anti-passback pass of resident #%d not stored: %s",
                        door,
                        resident_id,
                        exc,
                    )

    def exit_request(self, door: str) -> None:
        with self._lock:
            self._apply(door, self.doors[door].exit_request(self.clock()))

    def open_barrier(self, barrier: str, *, why: str | None = None) -> None:
        """Raise the arm; ``why`` as for `grant` (a lane records its decision itself)."""
        with self._lock:
            actions = self.barriers[barrier].open(self.clock())
            self._apply(barrier, _explained(actions, "barrier_opened", why))

    def ebike(
        self, elevator: str, image: np.ndarray | None = None, detail: str = "e-bike in the car"
    ) -> None:
        """A confirmed e-bike in the car on this frame; ``image`` becomes the snapshot of the
        ``ebike_in_car`` alert that starts an episode."""
        with self._lock:
            self._apply(elevator, self.elevators[elevator].ebike(self.clock(), detail), image)

    def release_elevator(self, elevator: str, who: str = "remote") -> None:
        with self._lock:
            self._apply(elevator, self.elevators[elevator].release(self.clock(), who))

    def camera_report(self, camera: str, seen: bool) -> None:
        """An authenticated report of a pushing camera (`web.push`), confirmed by
        `ReportConfirm`; the next `poll` holds the car, as for a wired contact."""
        with self._lock:
            self._pushers[camera][1].report(self.clock(), seen)

    def door_view(self, door: str) -> tuple[str, int]:
        """A door's state word (`DoorController.state`) and its grants so far: what the
        tailgate watch counts the people crossing against."""
        with self._lock:
            return self.doors[door].state(self.clock()), self._grants.get(door, 0)

    def set_door_camera(self, door: str, recent_frame: Callable[[], np.ndarray | None]) -> None:
        """Where a door's alerts (forced, held open) take their snapshot from: the newest frame
        of the gate watching it, or None when it has none recent enough."""
        self._door_frames[door] = recent_frame

    # ---- called by the supervisor --------------------------------------------------------

    def input_states(self) -> dict[str, bool | None]:
        """Active state of every configured input (None: its board is unreachable)."""
        out: dict[str, bool | None] = {}
        snapshots = {name: board.inputs() for name, board in self.outputs.boards.items()}
        for inp in self.inputs:
            raw = snapshots.get(inp.board)
            out[inp.name] = (
                None if raw is None or inp.index >= len(raw) else raw[inp.index] != inp.active_low
            )
        return out

    def poll(self) -> None:
        """Feed input changes and the passing of time to every controller."""
        states = self.input_states()
        with self._lock:
            now = self.clock()
            for inp in self.inputs:
                active = states[inp.name]
                if active is None or self._last.get(inp.name) == active:
                    continue
                first = inp.name not in self._last
                self._last[inp.name] = active
                # the first reading is the state we start in, not an event - except a fire
                # alarm that is already active, which must release fail-safe doors at once
                if first and not (inp.role == "fire_alarm" and active):
                    continue
                self._dispatch(inp, active, now)
            for name, elevator, contact in self._ebike_contacts:
                # a level, not an edge: a contact already closed at start is a car with an
                # e-bike in it; the hold machine ignores it while the fire alarm is active
                if contact.update(now, bool(states[name])):
                    detail = f"e-bike reported by input {name}"
                    self._apply(elevator, self.elevators[elevator].ebike(now, detail))
            for name, (elevator, reports) in self._pushers.items():
                if reports.update(now):
                    detail = f"e-bike reported by camera {name}"
                    self._apply(elevator, self.elevators[elevator].ebike(now, detail))
            for board in self._watch_boards():
                self._restore(board, now)
            for name, door in self.doors.items():
                self._apply_door(name, door.tick(now))
            for group in (self.barriers, self.elevators):
                for name, ctl in group.items():
                    self._apply(name, ctl.tick(now))

    def _watch_boards(self) -> list[str]:
        """Boards that (re)connected since the last poll; their outages become ``system``
        events. A reconnect is told by the driver's reconnect counter, so an outage shorter than
        a poll period is not missed; the first connect at start-up is no outage."""
        back = []
        for name, board in self.outputs.boards.items():
            st = board.health()
            state, error, n = st.get("state"), st.get("last_error"), int(st.get("reconnects") or 0)
            prev_state, prev_n = self._boards.get(name, (None, n))
            self._boards[name] = (state, n)
            connecting = state != "online" and error in (None, "connecting")
            if state != "online" and not connecting and name not in self._boards_down:
                self._boards_down.add(name)
                self._system(name, f"relay_board_offline: {error}")
            if state == "online" and (n != prev_n or prev_state not in (None, "online")):
                if n != prev_n and name not in self._boards_down:
                    self._boards_down.add(name)
                    self._system(name, "relay_board_offline: brief outage")  # between two polls
                if name in self._boards_down:
                    self._boards_down.discard(name)
                    self._system(name, "relay_board_online")
                back.append(name)
        return back

    def _restore(self, board: str, now: float) -> None:
        """A board that came back starts all off: give it what the controllers want now (a
        fail-safe door released by an active fire alarm, a running elevator hold)."""
        for group in (self.doors, self.elevators):
            for name, ctl in group.items():
                self._apply(
                    name,
                    [
                        a
                        for a in ctl.restore(now)
                        if isinstance(a, (Pulse, Latch))
                        and self.outputs.board_of(a.output) == board
                    ],
                )

    def _system(self, source: str, reason: str) -> None:
        self.recorder.record(source, "system", None, reason)

    def health(self) -> dict[str, str]:
        """One word per controller, for `doctor` and the status topic."""
        now = self.clock()
        with self._lock:
            out = {f"door:{n}": c.state(now) for n, c in self.doors.items()}
            out.update({f"barrier:{n}": c.state for n, c in self.barriers.items()})
            out.update({f"elevator:{n}": c.state for n, c in self.elevators.items()})
        return out

    def _dispatch(self, inp: InputConfig, active: bool, now: float) -> None:
        if inp.role == "fire_alarm":
            log.warning("fire alarm input %s %s", inp.name, "ACTIVE" if active else "cleared")
            for group in (self.doors, self.elevators):
                for name, ctl in group.items():
                    self._apply(name, ctl.fire_alarm(now, active))
        elif inp.role == "door_contact" and inp.door:
            self._apply_door(inp.door, self.doors[inp.door].contact(now, active))
        elif inp.role == "exit_button" and inp.door and active:
            self._apply(inp.door, self.doors[inp.door].exit_request(now))
        elif inp.role == "vehicle_guard" and inp.name in self._guards:
            name = self._guards[inp.name]
            self._apply(name, self.barriers[name].guard(now, active))

    def _apply_door(self, door: str, actions: list[Action]) -> None:
        """A door's actions; its alerts carry a frame of the door's camera when there is one."""
        image = None
        frame = self._door_frames.get(door)
        if frame is not None and any(isinstance(a, Alarm) for a in actions):
            try:
                image = frame()
            except Exception:  # a snapshot is a bonus: the alert goes out regardless
                log.exception("door %s: no snapshot for the alert", door)
        self._apply(door, actions, image)

    def _apply(self, source: str, actions: list[Action], image: np.ndarray | None = None) -> None:
        """Every controller action goes through here, in one order: the events first (alerts
        and notices: the exit button's ``exit_request``, an elevator's ``hold_released``), then
        the outputs - so no output moves without a record of why, whatever asked for it (the
        gates record their decision before calling in). ``image`` is the snapshot of the alerts
        among ``actions`` (of the notices when there is no alert: one photo per occurrence)."""
        notice_image = None if any(isinstance(a, Alarm) for a in actions) else image
        for a in actions:
            if isinstance(a, Alarm):
                log.warning("%s: %s %s", source, a.kind, a.detail)
                self.recorder.record(source, "alert", "alert", _reason(a), image)
            elif isinstance(a, Notice):
                self.recorder.record(source, "control", None, _reason(a), notice_image)
        for a in actions:
            try:
                if isinstance(a, Pulse):
                    self.outputs.pulse(a.output, a.seconds)
                elif isinstance(a, Latch):
                    self.outputs.set(a.output, a.on)
            except BoardError as exc:
                log.error("%s: %s not carried out: %s", source, a, exc)
                RELAY_ERRORS.labels(source).inc()
                self.recorder.record(source, "alert", "alert", f"output_failed: {exc}")


def _reason(a: Alarm | Notice) -> str:
    return f"{a.kind}: {a.detail}" if a.detail else a.kind


def _explained(actions: list[Action], kind: str, why: str | None) -> list[Action]:
    """``actions`` led by a notice saying why, when there is a why and something moves."""
    if why is None or not any(isinstance(a, (Pulse, Latch)) for a in actions):
        return actions
    return [Notice(kind, why), *actions]
