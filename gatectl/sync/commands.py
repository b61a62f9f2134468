"""Signed commands from the centre: verified first, executed at most once, always answered.

The signature, expiry and nonce checks live in `signing`; the nonce is claimed in SQLite
before anything runs, so a command re-delivered by the broker after a reconnect (or after a
crash of gatectl) is answered ``replayed`` and never acted on twice. Every verified command
leaves a ``command`` event; a refused one leaves an event, a log line and a response only within
the refusal budget (`inbound.Refusals`), so junk cannot grow the database or the log. The
arguments of each command are checked against its schema (`inbound`) once the signature is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gatectl.clock import CLOCK_TRUST_REQUESTS
from gatectl.config import DisplayConfig
from gatectl.display import Display
from gatectl.events import EventRecorder
from gatectl.safe_text import shown
from gatectl.service.controls import Controls
from gatectl.store import Store
from gatectl.sync.enrollment import EnrollRejected, Replicator
from gatectl.sync.inbound import (AnnounceArgs, BarrierArgs, DoorArgs, ElevatorArgs, NoArgs, Refusals, Refused,
                                  StatusArgs, WatchAddArgs, WatchRemoveArgs, validated)
from gatectl.sync.signing import CommandRejected, Verifier

log = logging.getLogger("gatectl.sync")


class CommandFailed(Exception):
    """A verified command that could not be carried out; one line."""


class CommandHandler:
    def __init__(self, verifier: Verifier, store: Store, recorder: EventRecorder, controls: Controls,
                 replicator: Replicator, reload: Callable[[], str], clock: Callable[[], float],
                 refusals: Refusals | None = None, display: Display | None = None):
        """``display``: where announcements are shown (None: nowhere; they are stored only)."""
        self.display = display or Display(DisplayConfig())
        self.verifier = verifier
        self.store = store
        self.recorder = recorder
        self.controls = controls
        self.replicator = replicator
        self.reload = reload
        self.clock = clock
        self.refusals = refusals or Refusals()
        # command -> (schema of its args, what runs it)
        self._run = {
            "door.open": (DoorArgs, self._door_open),
            "barrier.open": (BarrierArgs, self._barrier_open),
            "elevator.release": (ElevatorArgs, self._elevator_release),
            "display.announce": (AnnounceArgs, self._announce),
            "watchlist.add": (WatchAddArgs, self._watch_add),
            "watchlist.remove": (WatchRemoveArgs, self._watch_remove),
            "resident.status": (StatusArgs, self._resident_status),
            "config.reload": (NoArgs, lambda args: self.reload()),
            "clock.trust": (NoArgs, self._clock_trust),
        }

    def handle(self, payload: bytes) -> dict | None:
        """The response body: ``{"id", "ok", "result" | "error"}``; None for a refusal beyond
        the refusal budget (counted only: no event, no log line, no answer)."""
        try:
            body = self.verifier.verify(payload, self.clock())
        except CommandRejected as exc:
            if not self.refusals.refuse("cmd", exc.reason, str(exc)):
                return None
            self.recorder.record("sync", "command", "denied", f"rejected: {exc}")
            return {"id": exc.cmd_id, "ok": False, "error": f"rejected: {exc}"}
        name = body["cmd"]
        what = f"{name} ({body['id']}, key {body['kid']})"  # each a short ASCII token (schema)
        try:
            if name not in self._run:
                raise CommandFailed(f"unknown command '{name}' (known: {', '.join(self._run)})")
            schema, run = self._run[name]
            try:
                args = validated(schema, body["args"], "args")
            except Refused as exc:
                raise CommandFailed(exc.detail) from None
            result = run(args)
        except (CommandFailed, EnrollRejected) as exc:
            log.warning("command %s failed: %s", what, shown(exc))
            self.recorder.record("sync", "command", "denied", shown(f"{what}: {exc}", 500))
            return {"id": body["id"], "ok": False, "error": shown(exc, 500)}
        log.info("command %s: %s", what, shown(result))
        self.recorder.record("sync", "command", "granted", shown(f"{what}: {result}", 500))
        return {"id": body["id"], "ok": True, "result": result}

    @staticmethod
    def _target(name: str, kind: str, known: dict) -> str:
        """``name`` when it is a configured door / barrier / elevator; else why not."""
        if name not in known:
            raise CommandFailed(f"args.{kind}: unknown {kind} {name!r} ({kind}s: {', '.join(known) or 'none'})")
        return name

    def _door_open(self, args: DoorArgs) -> str:
        door = self._target(args.door, "door", self.controls.doors)
        self.controls.grant(door)
        return f"door {door} unlocked"

    def _barrier_open(self, args: BarrierArgs) -> str:
        """The guard on duty lets an unknown vehicle in from the centre's console."""
        barrier = self._target(args.barrier, "barrier", self.controls.barriers)
        self.controls.open_barrier(barrier)
        return f"barrier {barrier} opened"

    def _elevator_release(self, args: ElevatorArgs) -> str:
        """Property staff release an e-bike hold they judge a false alarm (field practice)."""
        elevator = self._target(args.elevator, "elevator", self.controls.elevators)
        self.controls.release_elevator(elevator, "central")
        return f"elevator {elevator} released"

    def _announce(self, args: AnnounceArgs) -> str:
        if not args.text.strip():
            raise CommandFailed("args.text: text required, not only spaces")
        until = None if args.seconds is None else self.clock() + args.seconds
        aid = self.store.announce(args.text.strip(), args.door, until)
        result = self.display.show(args.text.strip(), args.door, until)  # the reply says what really happened
        return f"announcement {aid} {result.detail}" if result.ok else \
            f"announcement {aid} stored, not shown: {result.detail}"

    def _watch_add(self, args: WatchAddArgs) -> str:
        return self._replicate({**args.model_dump(), "type": "watchlist", "op": "upsert"})

    def _watch_remove(self, args: WatchRemoveArgs) -> str:
        return self._replicate({**args.model_dump(), "type": "watchlist", "op": "delete"})

    def _resident_status(self, args: StatusArgs) -> str:
        r = self.store.resident_by_uid(args.uid)  # by uid only, never an id or a name
        if r is None:
            raise CommandFailed(f"args.uid: no resident {shown(args.uid, 40)!r} on this device")
        return self._replicate({"uid": r.uid, "version": args.version, "type": "resident", "op": "upsert",
                                "name": r.name, "unit": r.unit, "status": args.status})

    def _clock_trust(self, args: NoArgs) -> str:
        """The centre vouches for the device clock after a jump. Verified means its signed
        issue time agreed with this clock (within the skew and the command's TTL), so the
        clock it confirms is the centre's; the daemon applies it as `gatectl clock trust`."""
        self.store.bump_meta(CLOCK_TRUST_REQUESTS)
        return "clock trust requested: the daemon applies it within seconds (`gatectl clock status`)"

    def _replicate(self, body: dict) -> str:
        return self.replicator.apply({"v": 1, **body})
