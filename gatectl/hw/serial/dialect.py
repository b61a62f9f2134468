"""What a relay dialect is: one board family's frames, the checks on its replies, what it can do.

The port thread (`port.SerialBoard`) owns everything that is the same for every board on a
serial line - the queue, timeouts, retries, reconnects, input polling, software relocks and
the safe state after every (re)connect - and asks a `Dialect` only pure questions: which bytes
switch a relay, how long a reply is, whether a reply may be believed.

A dialect ``x`` is the module ``gatectl.hw.serial.x`` (its frames and ``DIALECT = XDialect``)
and its board settings, a `config.SerialBoardConfig` subclass tagged ``driver = "x"`` on the
`config.BOARD_DRIVERS` line that puts it in the [[boards]] union; nothing else names it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import ClassVar, Protocol

from gatectl.config.hardware import SerialBoardConfig


class FrameError(ValueError):
    """A reply that must not be believed (short, garbled, bad checksum, someone else's)."""


class Refused(Exception):
    """The board understood a request and refused it. A dialect's subclass says whether asking
    again can help (``final``) and whether the board simply lacks the command (``unsupported``:
    the port thread then falls back, e.g. from "all relays off" to one relay at a time)."""

    @property
    def final(self) -> bool:
        return False

    @property
    def unsupported(self) -> bool:
        return False


class Dialect(Protocol):
    """One board family, built from its board's config. Pure: no I/O, no clock, no state the port
    thread would have to reset after a reconnect.

    Subclass it to inherit the answers of a blind, latch-only family without inputs (LCUS):
    a dialect that ``answers`` overrides the reply methods, one with ``hw_pulse`` ``flash``, one
    with ``inputs`` ``read_inputs``; the port thread calls nothing a dialect says it cannot do."""

    driver: ClassVar[str]  # its [[boards]] entries' ``driver = "..."``, and its module's name
    cfg: SerialBoardConfig
    hw_pulse: bool = False  # the board ends a pulse itself ("flash on"): relocks if gatectl dies
    answers: bool = False  # it replies to every request: writes confirmed, relays read back
    inputs: int = 0  # discrete inputs it reports (0: none to poll)

    def __init__(self, cfg: SerialBoardConfig) -> None:
        """Every dialect defines its own (a protocol's ``__init__`` is not inherited on 3.10)."""

    def switch(self, channel: int, on: bool) -> bytes:
        """The request that latches one relay (0-based) on or off."""
        ...

    def all_off(self) -> bytes | None:
        """The request that opens every relay at once; None: one ``switch`` per relay."""
        return None

    def flash(self, channel: int, seconds: float) -> tuple[bytes, float]:
        """With ``hw_pulse``: the request for a board-timed pulse, and the length the board will
        really time (its units round)."""
        raise NotImplementedError(f"{self.driver} boards cannot time a pulse")

    def read_relays(self) -> bytes:
        """With ``answers``: the request whose reply is every relay's state."""
        raise NotImplementedError(f"{self.driver} boards cannot report their relays")

    def read_inputs(self) -> bytes:
        """With ``inputs``: the request whose reply is every input's state."""
        raise NotImplementedError(f"{self.driver} boards have no inputs")

    def reply_length(self, request: bytes) -> int:
        """With ``answers``: bytes of the normal reply to ``request`` (its wire time counts
        towards the timeout)."""
        return 0

    def read_reply(self, request: bytes, read: Callable[[int], bytes]) -> bytes:
        """With ``answers``: one reply, read with ``read(n)`` (at most n bytes, fewer at the
        deadline), stopping early when the first bytes say it is a short (error) reply."""
        return read(self.reply_length(request))

    def parse(self, request: bytes, reply: bytes) -> list[bool] | None:
        """With ``answers``: the bits a read request asked for, None for a confirmed write.
        Raises FrameError for anything that is not exactly the reply ``request`` asks for,
        Refused (a subclass) for the board's refusal."""
        raise NotImplementedError(f"{self.driver} boards never reply")

    def describe(self, request: bytes) -> str:
        """``request`` for a log line or an error: its bytes (and whom it was for)."""
        return hexs(request)


def hexs(frame: bytes) -> str:
    """``01 05 00 00 FF 00 8C 3A``: how board manuals and our logs spell frames."""
    return frame.hex(" ").upper()


def wire_time_s(nbytes: int, baud: int) -> float:
    """Time ``nbytes`` take on the wire at ``baud`` with 8N1 framing (10 bits per byte)."""
    return nbytes * 10 / baud


def frame_gap_s(baud: int) -> float:
    """The silence kept before every frame: Modbus RTU's 3.5 character times (11 bits each),
    fixed 1.75 ms above 19200 baud. Shorter gaps can make a board merge two requests into one
    garbled frame; every dialect gets it (a few ms at a few commands a minute)."""
    return 3.5 * 11 / baud if baud <= 19200 else 0.00175


def dialect_for(cfg: SerialBoardConfig) -> Dialect:
    """The dialect a board's config asks for: ``DIALECT`` of `gatectl.hw.serial.<driver>`, built
    from that config (the module is imported on first use). ``driver`` is one of the config's
    tags, never free text."""
    module = importlib.import_module(f"{__package__}.{cfg.driver}")
    dialect = getattr(module, "DIALECT", None)
    if dialect is None or dialect.driver != cfg.driver:
        raise TypeError(f"{module.__name__} declares no DIALECT for driver '{cfg.driver}'")
    return dialect(cfg)
