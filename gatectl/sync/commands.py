"""Signed commands from the centre: verified first, executed at most once, always answered.

The signature, expiry and nonce checks live in `signing`; the nonce is claimed in SQLite
before anything runs, so a command re-delivered by the broker after a reconnect (or after a
crash of gatectl) is answered ``replayed`` and never acted on twice. Every command, accepted or
not, leaves a ``command`` event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from gatectl.config import DisplayConfig
from gatectl.display import Display
from gatectl.events import EventRecorder
from gatectl.service.controls import Controls
from gatectl.store import Store
from gatectl.sync.enrollment import EnrollRejected, Replicator
from gatectl.sync.signing import CommandRejected, Verifier

log = logging.getLogger("gatectl.sync")

MAX_ANNOUNCEMENT = 500


class CommandFailed(Exception):
    """A verified command that could not be carried out; one line."""


class CommandHandler:
    def __init__(self, verifier: Verifier, store: Store, recorder: EventRecorder, controls: Controls,
                 replicator: Replicator, reload: Callable[[], str], clock: Callable[[], float],
                 display: Display | None = None):
        """``display``: where announcements are shown (None: nowhere; they are stored only)."""
        self.display = display or Display(DisplayConfig())
        self.verifier = verifier
        self.store = store
        self.recorder = recorder
        self.controls = controls
        self.replicator = replicator
        self.reload = reload
        self.clock = clock
        self._run = {
            "door.open": self._door_open,
            "barrier.open": self._barrier_open,
            "elevator.release": self._elevator_release,
            "display.announce": self._announce,
            "watchlist.add": self._watch_add,
            "watchlist.remove": self._watch_remove,
            "resident.status": self._resident_status,
            "config.reload": lambda args: self.reload(),
        }

    def handle(self, payload: bytes) -> dict:
        """The response body: ``{"id", "ok", "result" | "error"}``."""
        try:
            body = self.verifier.verify(payload, self.clock())
        except CommandRejected as exc:
            log.warning("command rejected: %s", exc)
            self.recorder.record("sync", "command", "denied", f"rejected: {exc}")
            return {"id": _id_of(payload), "ok": False, "error": f"rejected: {exc}"}
        name, args = body["cmd"], body["args"]
        what = f"{name} ({body['id']}, key {body['kid']})"
        try:
            run = self._run.get(name)
            if run is None:
                raise CommandFailed(f"unknown command '{name}' (known: {', '.join(self._run)})")
            result = run(args)
        except (CommandFailed, EnrollRejected) as exc:
            log.warning("command %s failed: %s", what, exc)
            self.recorder.record("sync", "command", "denied", f"{what}: {exc}")
            return {"id": body["id"], "ok": False, "error": str(exc)}
        log.info("command %s: %s", what, result)
        self.recorder.record("sync", "command", "granted", f"{what}: {result}")
        return {"id": body["id"], "ok": True, "result": result}

    @staticmethod
    def _target(args: dict, kind: str, known: dict) -> str:
        """``args[kind]`` when it names a configured door / barrier / elevator; else why not."""
        name = args.get(kind)
        if name not in known:
            raise CommandFailed(f"args.{kind}: unknown {kind} {name!r} ({kind}s: {', '.join(known) or 'none'})")
        return name

    def _door_open(self, args: dict) -> str:
        door = self._target(args, "door", self.controls.doors)
        self.controls.grant(door)
        return f"door {door} unlocked"

    def _barrier_open(self, args: dict) -> str:
        """The guard on duty lets an unknown vehicle in from the centre's console."""
        barrier = self._target(args, "barrier", self.controls.barriers)
        self.controls.open_barrier(barrier)
        return f"barrier {barrier} opened"

    def _elevator_release(self, args: dict) -> str:
        """Property staff release an e-bike hold they judge a false alarm (field practice)."""
        elevator = self._target(args, "elevator", self.controls.elevators)
        self.controls.release_elevator(elevator, "central")
        return f"elevator {elevator} released"

    def _announce(self, args: dict) -> str:
        text = args.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_ANNOUNCEMENT:
            raise CommandFailed(f"args.text: 1..{MAX_ANNOUNCEMENT} characters of text required")
        seconds = args.get("seconds")
        if seconds is not None and (not isinstance(seconds, (int, float)) or seconds <= 0):
            raise CommandFailed("args.seconds: a positive number")
        until = None if seconds is None else self.clock() + float(seconds)
        door = args.get("door")
        if door is not None and (not isinstance(door, str) or not 0 < len(door) <= 64):
            raise CommandFailed("args.door: a door name (1..64 characters)")
        aid = self.store.announce(text.strip(), door, until)
        result = self.display.show(text.strip(), door, until)  # the reply says what really happened
        return f"announcement {aid} {result.detail}" if result.ok else \
            f"announcement {aid} stored, not shown: {result.detail}"

    def _watch_add(self, args: dict) -> str:
        return self._replicate({**args, "type": "watchlist", "op": "upsert"})

    def _watch_remove(self, args: dict) -> str:
        return self._replicate({**args, "type": "watchlist", "op": "delete"})

    def _resident_status(self, args: dict) -> str:
        uid = args.get("uid")
        found = self.store.find_residents(uid) if isinstance(uid, str) else []
        if not found:
            raise CommandFailed(f"args.uid: no resident {uid!r} on this device")
        r = found[0]
        return self._replicate({"uid": r.uid, "version": args.get("version"), "type": "resident", "op": "upsert",
                                "name": r.name, "unit": r.unit, "status": args.get("status")})

    def _replicate(self, body: dict) -> str:
        if not isinstance(body.get("uid"), str) or not isinstance(body.get("version"), int):
            raise CommandFailed("args: uid (text) and version (integer) are required")
        return self.replicator.apply({"v": 1, **body})


def _id_of(payload: bytes) -> str | None:
    """The command id of a rejected message, when it can be read, so the sender can match it."""
    try:
        body = json.loads(payload)
        return body.get("id") if isinstance(body, dict) and isinstance(body.get("id"), str) else None
    except (ValueError, UnicodeDecodeError):
        return None
