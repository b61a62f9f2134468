"""What a credential source hands the access decision: one credential shown at one door.

Every way in - a face the face gate confirmed, a QR code on the door camera, a card or PIN on an
OSDP reader - arrives as a ``Presented`` and leaves as an ``Outcome``, so every credential meets
the same rules (suspended, inactivity, watchlist, anti-passback), one event and the same door
controller. Sources only read and report; they never open a door themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CredentialKind = Literal["face", "card", "pin", "qr", "totp"]


@dataclass(frozen=True)
class Presented:
    """One credential as read, not yet trusted.

    ``value`` is what the source read: a card number as the reader formats it, PIN digits,
    the QR code's text. ``t`` is the monotonic time of the read (card+pin windows compare it).
    ``bits`` is a card format's bit length. ``resident_id`` is set only by the face gate, whose
    match already says who it is."""

    kind: CredentialKind
    door: str
    source: str
    value: str
    t: float
    bits: int | None = None
    resident_id: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What the reader shows: granted (green, door opens), refused with a reason (red), or
    ``pending`` - a first factor of a two-factor policy waiting for the second (amber)."""

    granted: bool
    reason: str
    pending: bool = False
