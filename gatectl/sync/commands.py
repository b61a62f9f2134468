"""Signed commands from the centre: verified first, executed at most once, always answered.

The signature, expiry and nonce checks live in `signing`; the nonce is claimed in SQLite
before anything runs, so a command re-delivered by the broker after a reconnect (or after a
crash of gatectl) is answered ``replayed`` and never acted on twice. Every verified command
leaves a ``command`` event; a refused one leaves an event, a log line and a response only within
the refusal budget (`core.refusals.Refusals`), so junk cannot grow the database or the log. The
arguments of each command are checked against its schema (`inbound`) once the signature is.

Each command is a `CommandSpec` in ``COMMANDS``: adding one is its argument model (`inbound`),
a function ``(CommandContext, args) -> result`` and one line there; verification is the same
for every command and never depends on the spec.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from gatectl.config.hardware import DisplayConfig
from gatectl.control.clock import CLOCK_TRUST_REQUESTS
from gatectl.control.controls import Controls
from gatectl.core.refusals import Refusals
from gatectl.core.safe_text import shown
from gatectl.hw.display import Display
from gatectl.store import Store
from gatectl.store.recorder import EventRecorder
from gatectl.sync.enrollment import EnrollRejected, Replicator
from gatectl.sync.inbound import (
    AnnounceArgs,
    BarrierArgs,
    DoorArgs,
    ElevatorArgs,
    InboundModel,
    NoArgs,
    Refused,
    StatusArgs,
    WatchAddArgs,
    WatchRemoveArgs,
    validated,
)
from gatectl.sync.signing import CommandRejected, Verifier

log = logging.getLogger("gatectl.sync")


class CommandFailed(Exception):
    """A verified command that could not be carried out; one line."""


Effect = Literal["actuates", "access", "none"]
"""What a command may change: ``actuates`` (a relay moves: a door, a barrier, a car), ``access``
(who gets in: residents, the watchlist, the config), ``none`` (neither); logged with each run."""

A = TypeVar("A", bound=InboundModel)


@dataclass(frozen=True)
class CommandContext:
    """The parts of the device a command may use (passed in, not looked up)."""

    store: Store
    controls: Controls
    replicator: Replicator
    display: Display
    reload: Callable[[], str]
    clock: Callable[[], float]


@dataclass(frozen=True)
class CommandSpec(Generic[A]):
    """One command: its name on the wire, the strict model of its ``args`` (checked once the
    signature is), what runs it (returns the response's ``result``, raises CommandFailed), and
    what it may change."""

    name: str
    args: type[A]
    run: Callable[[CommandContext, A], str]
    effect: Effect


def _known(name: str, kind: str, known: Collection[str]) -> str:
    """``name`` when it is a configured door / barrier / elevator; else why not."""
    if name not in known:
        names = ", ".join(known) or "none"
        raise CommandFailed(f"args.{kind}: unknown {kind} {name!r} ({kind}s: {names})")
    return name


def door_open(ctx: CommandContext, args: DoorArgs) -> str:
    door = _known(args.door, "door", ctx.controls.doors)
    ctx.controls.grant(door, why="remote door.open from the centre")
    return f"door {door} unlocked"


def barrier_open(ctx: CommandContext, args: BarrierArgs) -> str:
    """The guard on duty lets an unknown vehicle in from the centre's console."""
    barrier = _known(args.barrier, "barrier", ctx.controls.barriers)
    ctx.controls.open_barrier(barrier, why="remote barrier.open from the centre")
    return f"barrier {barrier} opened"


def elevator_release(ctx: CommandContext, args: ElevatorArgs) -> str:
    """Property staff release an e-bike hold they judge a false alarm (field practice)."""
    elevator = _known(args.elevator, "elevator", ctx.controls.elevators)
    ctx.controls.release_elevator(elevator, "central")
    return f"elevator {elevator} released"


def announce(ctx: CommandContext, args: AnnounceArgs) -> str:
    if not args.text.strip():
        raise CommandFailed("args.text: text required, not only spaces")
    until = None if args.seconds is None else ctx.clock() + args.seconds
    aid = ctx.store.announce(args.text.strip(), args.door, until)
    result = ctx.display.show(args.text.strip(), args.door, until)  # the reply says what happened
    return f"announcement {aid} {result.detail}" if result.ok else \
        f"announcement {aid} stored, not shown: {result.detail}"


def watch_add(ctx: CommandContext, args: WatchAddArgs) -> str:
    return _replicate(ctx, {**args.model_dump(), "type": "watchlist", "op": "upsert"})


def watch_remove(ctx: CommandContext, args: WatchRemoveArgs) -> str:
    return _replicate(ctx, {**args.model_dump(), "type": "watchlist", "op": "delete"})


def resident_status(ctx: CommandContext, args: StatusArgs) -> str:
    r = ctx.store.resident_by_uid(args.uid)  # by uid only, never an id or a name
    if r is None:
        raise CommandFailed(f"args.uid: no resident {shown(args.uid, 40)!r} on this device")
    return _replicate(ctx, {"uid": r.uid, "version": args.version, "type": "resident",
                            "op": "upsert", "name": r.name, "unit": r.unit, "status": args.status})


def _replicate(ctx: CommandContext, body: dict) -> str:
    return ctx.replicator.apply({"v": 1, **body})


def config_reload(ctx: CommandContext, args: NoArgs) -> str:
    return ctx.reload()


def clock_trust(ctx: CommandContext, args: NoArgs) -> str:
    """The centre vouches for the device clock after a jump. Verified means its signed issue
    time agreed with this clock (within the skew and the command's TTL), so the clock it
    confirms is the centre's; the daemon applies it as `gatectl clock trust`."""
    ctx.store.bump_meta(CLOCK_TRUST_REQUESTS)
    return "clock trust requested: the daemon applies it within seconds (`gatectl clock status`)"


# The commands a device carries out: one line each.
COMMANDS: dict[str, CommandSpec] = {spec.name: spec for spec in (
    CommandSpec("door.open", DoorArgs, door_open, "actuates"),
    CommandSpec("barrier.open", BarrierArgs, barrier_open, "actuates"),
    CommandSpec("elevator.release", ElevatorArgs, elevator_release, "actuates"),
    CommandSpec("display.announce", AnnounceArgs, announce, "none"),
    CommandSpec("watchlist.add", WatchAddArgs, watch_add, "access"),
    CommandSpec("watchlist.remove", WatchRemoveArgs, watch_remove, "access"),
    CommandSpec("resident.status", StatusArgs, resident_status, "access"),
    CommandSpec("config.reload", NoArgs, config_reload, "access"),
    CommandSpec("clock.trust", NoArgs, clock_trust, "access"),
)}


class CommandHandler:
    """Verifies a command, then runs its spec from ``COMMANDS``; records and answers either way."""

    def __init__(self, verifier: Verifier, store: Store, recorder: EventRecorder,
                 controls: Controls, replicator: Replicator, reload: Callable[[], str],
                 clock: Callable[[], float], refusals: Refusals | None = None,
                 display: Display | None = None):
        """``display``: where announcements are shown (None: nowhere; they are stored only)."""
        self.verifier = verifier
        self.recorder = recorder
        self.clock = clock
        self.refusals = refusals or Refusals()
        self.context = CommandContext(store, controls, replicator,
                                      display or Display(DisplayConfig()), reload, clock)

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
            spec = COMMANDS.get(name)
            if spec is None:
                raise CommandFailed(f"unknown command '{name}' (known: {', '.join(COMMANDS)})")
            try:
                args = validated(spec.args, body["args"], "args")
            except Refused as exc:
                raise CommandFailed(exc.detail) from None
            result = spec.run(self.context, args)
        except (CommandFailed, EnrollRejected) as exc:
            log.warning("command %s failed: %s", what, shown(exc))
            self.recorder.record("sync", "command", "denied", shown(f"{what}: {exc}", 500))
            return {"id": body["id"], "ok": False, "error": shown(exc, 500)}
        log.info("command %s (%s): %s", what, spec.effect, shown(result))
        self.recorder.record("sync", "command", "granted", shown(f"{what}: {result}", 500))
        return {"id": body["id"], "ok": True, "result": result}
