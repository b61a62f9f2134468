"""What a credential source hands the access decision: one credential shown at one door.

Every way in - a face the face gate confirmed, a QR code on the door camera, a card or PIN on an
OSDP reader - arrives as a ``Presented`` and leaves as an ``Outcome``, so every credential meets
the same rules (suspended, inactivity, watchlist, anti-passback), one event and the same door
controller. Sources only read and report; they never open a door themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gatectl.domain.records import Event

_HEX = re.compile(r"^[0-9A-F]{1,64}$")
MAX_CARD_BITS = 256

CredentialKind = Literal["face", "card", "pin", "qr", "totp"]


@dataclass(frozen=True)
class Presented:
    """One credential as read, not yet trusted.

    ``value`` is what the source read: a card number as the reader formats it, PIN digits,
    the QR code's text. ``t`` is the monotonic time of the read (``time.monotonic()``, the
    clock the face gate's frames are stamped with in `gatectl run`): card+pin windows and the
    wrong-PIN lockout compare it across sources.
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
    ``pending`` - a first factor of a two-factor policy waiting for the second (amber).
    ``alert``: refused because the person is on the watchlist (the guard is called).
    ``event``: the decision's record (None while pending); ``resident_id``: who it named."""

    granted: bool
    reason: str
    pending: bool = False
    alert: bool = False
    event: Event | None = None
    resident_id: int | None = None

    @property
    def decision(self) -> str:
        """The event's decision word: granted, denied, alert, or pending."""
        if self.pending:
            return "pending"
        return "granted" if self.granted else "alert" if self.alert else "denied"


def card_number(text: str, bits: int | None) -> str | None:
    """A card number in the one stored form - upper-case hex of its value (the raw card data,
    most significant bit first, as OSDP and Wiegand readers hand it over), no ``0x``, no
    leading zeros (readers pad differently) - or None if it cannot be a card of ``bits``
    bits. The bit length is kept beside it: the same digits in another format are another
    card."""
    number = text.strip().upper().removeprefix("0X")
    if not _HEX.match(number):
        return None
    value = int(number, 16)
    if bits is not None and not (1 <= bits <= MAX_CARD_BITS and value < 2**bits):
        return None
    return f"{value:X}"
