"""What a controller asks the outside world to do; applied by `control.controls`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pulse:
    """Energise an output for ``seconds``; the board (or the driver's deadline) ends it."""

    output: str
    seconds: float


@dataclass(frozen=True)
class Latch:
    """Hold an output on, or switch it off now. ``on=True`` is only for states that must
    outlive any pulse (a fail-safe door released by the fire alarm), never for a lift."""

    output: str
    on: bool


@dataclass(frozen=True)
class Alarm:
    """Something a person must look at: recorded as an ``alert`` event at once."""

    kind: str
    detail: str = ""


@dataclass(frozen=True)
class Notice:
    """Something the log must explain later (an exit request, a hold that ended)."""

    kind: str
    detail: str = ""


Action = Pulse | Latch | Alarm | Notice
