"""Credential kinds as plug-ins: each module ``kinds/<kind>.py`` declares ``KIND``, an object
with ``claim(ctx, presented, expected) -> Claim`` saying whom the credential names (a resident,
a visitor pass) or why it names no one. Kinds never decide access: the rules, the event and the
door are `gatectl.access.point.AccessPoint`'s, the same for all of them. A new kind is its
module, its name in `gatectl.domain.credentials.CredentialKind` and one line in ``KINDS``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gatectl.access.passes import VisitorPass
from gatectl.access.pins import PinGuard
from gatectl.config.access import AccessConfig
from gatectl.domain.credentials import Presented
from gatectl.people.directory import Directory
from gatectl.store import Store

# One line per kind: its name -> the module declaring KIND.
KINDS: dict[str, str] = {
    "face": "gatectl.access.kinds.face",
    "card": "gatectl.access.kinds.card",
    "pin": "gatectl.access.kinds.pin",
    "qr": "gatectl.access.kinds.qr",
    "totp": "gatectl.access.kinds.totp",
}

MAX_VALUE = 1024  # characters of any credential value: a pass token is ~250


@dataclass(frozen=True)
class Claim:
    """Whom a credential names: a resident, a visitor pass, or nobody and why (``refused``)."""

    resident_id: int | None = None
    visitor: VisitorPass | None = None
    refused: str | None = None
    pass_id: str | None = None  # a refused pass, when its id could be read (events name it)


@dataclass(frozen=True)
class KindContext:
    """What a kind may look at (passed in, not looked up): this door, the store, the directory,
    the access settings, the door's PIN guard, the centre's keys, the site and rule time."""

    door: str
    store: Store
    directory: Directory
    access: AccessConfig
    pins: PinGuard
    keys: dict[str, Ed25519PublicKey]
    site: str
    wall: Callable[[], float]
    lock_wait_s: float | None


class CredentialSource(Protocol):
    def claim(self, ctx: KindContext, p: Presented, expected: int | None) -> Claim:
        """Whom ``p`` names; ``expected`` is the resident a pending first factor at this door
        named (a PIN after a card is checked against that resident's PIN only)."""
        ...


@cache
def kind(name: str) -> CredentialSource:
    """The plug-in of credential kind ``name`` (KeyError for one not in ``KINDS``)."""
    source: CredentialSource = importlib.import_module(KINDS[name]).KIND
    return source


def from_code(text: str, door: str, source: str, t: float) -> Presented | None:
    """A QR code's text as a credential: a visitor pass (``GP1.``) or a resident's rotating
    code (``GT1:``); None for any other code (a parcel label, an advert: not ours)."""
    if len(text) > MAX_VALUE:
        return None
    if text.startswith("GP1."):
        return Presented(kind="qr", door=door, source=source, value=text, t=t)
    if text.startswith("GT1:"):
        return Presented(kind="totp", door=door, source=source, value=text, t=t)
    return None
