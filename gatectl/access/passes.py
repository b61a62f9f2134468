"""Visitor passes: compact tokens signed by the centre's Ed25519 key, verified offline.

A pass is ``GP1.<kid>.<payload>.<signature>`` (base64url without padding), the payload compact
JSON: ``i`` pass id, ``s`` site, ``d`` doors or door groups (``@name``, `access.door_groups`),
``f``/``t`` valid from/to (epoch seconds), ``u`` uses. The signature covers the bytes before it,
so nothing in a pass can be changed, and the key id is outside the payload so a forged pass is
refused before its JSON is parsed. Around 250 characters: a QR code of version 10-11, which a
phone shows and the door camera reads at 30-50 cm.

Verification is bounded work: length first, then base64, then one signature check, then the
parse of at most 600 bytes of JSON against a strict schema. What only the device knows - uses
and revocations - is the store's (`Store.use_pass`), counted after every other check passed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Annotated

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

PREFIX = "GP1."
MAX_TOKEN = 1024
MAX_PAYLOAD = 600
_TOKEN = re.compile(r"GP1\.([A-Za-z0-9_.:-]{1,64})\.([A-Za-z0-9_-]{1,800})\.([A-Za-z0-9_-]{86})")

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
DoorRef = Annotated[str, StringConstraints(pattern=r"^@?[A-Za-z0-9_.-]{1,64}$")]
Time = Annotated[float, Field(ge=0, le=1e11, allow_inf_nan=False)]


class PassBody(BaseModel):
    """The signed payload, checked strictly (no unknown keys, no coercion)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    i: Id
    s: Id
    d: list[DoorRef] = Field(min_length=1, max_length=16)
    f: Time
    t: Time
    u: Annotated[int, Field(ge=1, le=10_000)]


@dataclass(frozen=True)
class VisitorPass:
    pass_id: str
    site: str
    doors: tuple[str, ...]
    valid_from: float
    valid_to: float
    uses: int
    kid: str


class PassRefused(Exception):
    """Why a pass does not open this door; ``reason`` is what the event says."""

    def __init__(self, reason: str, pass_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.pass_id = pass_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_pass(key: Ed25519PrivateKey, kid: str, *, pass_id: str, site: str, doors: list[str],
               valid_from: float, valid_to: float, uses: int) -> str:
    """The token text (the centre's side). ValueError for a pass that could never verify."""
    try:
        body = PassBody(i=pass_id, s=site, d=doors, f=float(valid_from), t=float(valid_to),
                        u=uses)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = {"i": "id", "s": "site", "d": "door", "f": "from", "t": "to", "u": "uses"}.get(
            str(first["loc"][0]), str(first["loc"][0]))
        raise ValueError(f"pass: --{field}: {first['msg']}") from None
    if body.t <= body.f:
        raise ValueError("pass: --to must be after --from")
    payload = _b64(json.dumps(body.model_dump(), separators=(",", ":")).encode())
    signed = f"{PREFIX}{kid}.{payload}"
    token = f"{signed}.{_b64(key.sign(signed.encode()))}"
    if len(token) > MAX_TOKEN or not _TOKEN.fullmatch(token):
        raise ValueError(f"pass: token too long ({len(token)} > {MAX_TOKEN}): fewer doors")
    return token


def read_pass(token: str, keys: dict[str, Ed25519PublicKey]) -> VisitorPass:
    """The signed pass, or PassRefused ``pass malformed`` / ``pass forged``."""
    m = _TOKEN.fullmatch(token) if len(token) <= MAX_TOKEN else None
    if m is None:
        raise PassRefused("pass malformed")
    kid, payload, sig = m.groups()
    key = keys.get(kid)
    if key is None:
        raise PassRefused("pass forged: unknown key")
    try:
        key.verify(_unb64(sig), f"{PREFIX}{kid}.{payload}".encode())
    except (InvalidSignature, binascii.Error, ValueError):
        raise PassRefused("pass forged") from None
    try:
        raw = _unb64(payload)
        if len(raw) > MAX_PAYLOAD:
            raise ValueError("too long")
        body = PassBody.model_validate(json.loads(raw))
    except (ValueError, ValidationError, binascii.Error):  # signed, but not a pass of ours
        raise PassRefused("pass malformed") from None
    return VisitorPass(body.i, body.s, tuple(body.d), body.f, body.t, body.u, kid)


def check_pass(p: VisitorPass, *, site: str, door: str, door_groups: dict[str, list[str]],
               now: float) -> None:
    """PassRefused unless the pass is for this site and door and valid at ``now`` (uses and
    revocations are the store's)."""
    if p.site != site:
        raise PassRefused("pass for another site", p.pass_id)
    doors = {d for ref in p.doors for d in
             (door_groups.get(ref[1:], []) if ref.startswith("@") else [ref])}
    if door not in doors:
        raise PassRefused("pass not valid at this door", p.pass_id)
    if now < p.valid_from:
        raise PassRefused("pass not yet valid", p.pass_id)
    if now >= p.valid_to:
        raise PassRefused("pass expired", p.pass_id)
