"""Every message that arrives from the broker is hostile until this module has checked it.

The checks run cheapest first, each with a cost bounded by the message's size, which is itself
bounded per topic before anything is queued (paho's callback; the broker is also told our
MQTT 5 Maximum Packet Size, so it never sends anything bigger):

1. size per topic (``sync.max_command_bytes``, ``sync.max_enroll_bytes``),
2. JSON nesting depth, counted on the raw bytes before the parser can recurse,
3. JSON itself (``NaN`` / ``Infinity`` literals refused),
4. a strict pydantic schema: no unknown keys, no type coercion, bounded lengths and numbers,
   no lone surrogates or control characters in text that may be stored, logged or displayed.

What is refused costs one counter increment and, within a budget per source topic (a token
bucket, ``sync.refusals_per_s`` / ``sync.refusal_burst``), one escaped log line; beyond the
budget nothing but the counter, and the next line says how many were not logged. Whatever a
caller does for a refusal beyond that (a ``command`` event, a response) it does only when
`core.refusals.Refusals.refuse` returns True, so a flood of junk cannot grow the database or
the log.
Genuine messages are never dropped by a rate limit: a limit on accepted traffic would drop the
centre's signed commands in a flood on their topic just as surely as the junk, and dropped
enrollments would be lost residents. The budget limits what refusals cost, not what arrives.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Any, Literal, TypeGuard, TypeVar

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from gatectl.access.pins import HASH_MAX, HASH_PATTERN
from gatectl.core.safe_text import shown
from gatectl.domain import plate_format
from gatectl.domain.credentials import MAX_CARD_BITS, card_number

log = logging.getLogger("gatectl.sync")

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH = 16
# a JSON string, unrolled (no backtracking)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = np.zeros(256, np.int8)
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1


class Refused(Exception):
    """An inbound message that will not be acted on; ``reason`` is a short code for counters
    and responses, the text one bounded, escaped line."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {shown(detail)}" if detail else reason)


# ---- JSON -------------------------------------------------------------------------------------

def check_depth(payload: bytes | bytearray, max_depth: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than ``max_depth`` without parsing it (json.loads recurses
    once per level and a few thousand ``[`` raise RecursionError). Strings are blanked first so
    brackets inside them do not count; the depth is then the running sum of +1 per opening and
    -1 per closing bracket, computed in numpy: tens of microseconds for a 16 KB payload."""
    brackets = _STRING.sub(b'""', payload).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= max_depth:
        return  # fewer openings than levels allowed: the common case
    depth = int(np.cumsum(_STEP[np.frombuffer(brackets, np.uint8)], dtype=np.int32).max())
    if depth > max_depth:
        raise Refused("too_deep", f"JSON nested {depth} levels deep (at most {max_depth})")


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def load_json(payload: bytes | bytearray, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed payload, or Refused ("too_deep" / "malformed")."""
    check_depth(payload, max_depth)
    try:
        return json.loads(payload, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Refused("malformed", f"not JSON ({str(exc)[:80]})") from None


def validated(model: type[M], data: Any, where: str = "") -> M:
    """``data`` checked against ``model``; the first problem as ``where.field: message``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        first = errors[0]
        loc = ".".join(str(p) for p in (where, *first["loc"]) if p != "")
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise Refused("malformed", f"{loc or 'payload'}: {first['msg']}{more}") from None


# ---- schema building blocks -------------------------------------------------------------------

def _clean_text(text: str) -> str:
    """Text that will be stored, logged or shown: valid UTF-8 and no control characters (a
    lone surrogate cannot be written to SQLite; a newline or escape has no place in a name)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid UTF-8 (lone surrogate)") from None
    if not text.isprintable():
        raise ValueError("text contains control characters")
    return text


class InboundModel(BaseModel):
    """Base of every inbound payload: unknown keys refused, no coercion ("3" is not 3)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


TOKEN_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
_TOKEN = re.compile(TOKEN_PATTERN)
Token = Annotated[str, StringConstraints(pattern=TOKEN_PATTERN)]
"""Ids, nonces, key ids, device, door and model names: short, ASCII, nothing to escape."""


def is_token(value: object) -> TypeGuard[str]:
    """A `Token`, for the checks outside a model (topics, ids, file names). A whole-string match:
    Python's ``$`` also matches before a final newline, so ``re.match`` would take "dev\\n"."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


Text = Annotated[str, AfterValidator(_clean_text)]
Seconds = Annotated[float, Field(ge=0, le=1e11, allow_inf_nan=False)]
"""A wall-clock time (seconds since the epoch, up to the year 5138)."""
Version = Annotated[int, Field(ge=0, lt=2**53)]
"""Fits SQLite's INTEGER and a JSON number exactly; the enrollment authority bounds it further."""


class Command(InboundModel):
    """A signed command's envelope; ``args`` are checked per command once the signature is."""

    v: Literal[1]
    cmd: Token
    args: dict[str, Any]
    device: Token
    id: Token
    iat: Seconds
    exp: Seconds
    nonce: Token
    kid: Token
    sig: Annotated[str, Field(max_length=128)] = ""


class DoorArgs(InboundModel):
    door: Token


class BarrierArgs(InboundModel):
    barrier: Token


class ElevatorArgs(InboundModel):
    elevator: Token


class AnnounceArgs(InboundModel):
    text: Annotated[Text, Field(min_length=1, max_length=500)]
    door: Token | None = None
    seconds: Annotated[float, Field(gt=0, le=30 * 86400, allow_inf_nan=False)] | None = None


class NoArgs(InboundModel):
    pass


class Template(InboundModel):
    model: Token
    dim: Annotated[int, Field(ge=1, le=4096)]
    quality: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 1.0
    emb: Annotated[str, Field(max_length=4 * 4096 * 4 // 3 + 4)]


MAX_CARDS = 16
"""Cards per resident in a change (a household's spare cards, never a list to scan)."""


class Card(InboundModel):
    """A card as the store keeps it (`domain.credentials.card_number`): upper-case hex without
    leading zeros, a value that fits its bit length; any other spelling is refused, not fixed."""

    number: Annotated[str, StringConstraints(pattern=r"^[0-9A-F]{1,64}$")]
    bits: Annotated[int, Field(ge=1, le=MAX_CARD_BITS)]

    @model_validator(mode="after")
    def _stored_form(self) -> Card:
        if card_number(self.number, self.bits) != self.number:
            raise ValueError(f"card {self.number}/{self.bits}: not a {self.bits}-bit number in "
                             "the stored form (upper-case hex, no leading zeros)")
        return self


Cards = Annotated[list[Card], Field(max_length=MAX_CARDS)]
PinHash = Annotated[str, StringConstraints(pattern=HASH_PATTERN, max_length=HASH_MAX)]
"""A PIN as stored: the scrypt hash `access.pins.hash_pin` writes, never the digits."""
TOTP_PATTERN = r"^[A-Z2-7]{16,128}$"
TotpSecret = Annotated[str, StringConstraints(pattern=TOTP_PATTERN)]
"""A resident's TOTP secret (RFC 4648 base32)."""


class Credentials(InboundModel):
    """A resident's credentials besides the face as a device request carries them up (the
    centre checks them with this model before it decides)."""

    cards: Cards | None = None
    pin: PinHash | None = None
    totp: TotpSecret | None = None


class Enrollment(InboundModel):
    """An enrollment change as it arrives (the fields `sync.enrollment.Replicator` uses); the
    signature is checked by the replicator on the dict this validates."""

    v: Literal[1]
    type: Literal["resident", "watchlist"]
    op: Literal["upsert", "delete"]
    uid: Token
    version: Version
    name: Annotated[Text, Field(max_length=200)] = ""
    unit: Annotated[Text, Field(max_length=64)] = ""
    status: Literal["active", "suspended"] = "active"
    reason: Annotated[Text, Field(max_length=500)] = ""
    origin: Token | None = None
    templates: list[Template] | None = None
    # a resident's credentials besides the face, replicated like a template: signed,
    # versioned, site-wide (`sync.enrollment`: with ``cards`` the change is the whole set)
    totp: TotpSecret | None = None
    cards: Cards | None = None
    pin: PinHash | None = None
    # the centre's signature over the change and its target (the enrollment authority's fields)
    site: Token | None = None
    device: Token | Literal["*"] | None = None
    kid: Token | None = None
    sig: Annotated[str, Field(max_length=128)] | None = None


class WatchAddArgs(InboundModel):
    uid: Token
    version: Version
    name: Annotated[Text, Field(max_length=200)] = ""
    reason: Annotated[Text, Field(max_length=500)] = ""
    templates: list[Template]


class WatchRemoveArgs(InboundModel):
    uid: Token
    version: Version


class PassRevokeArgs(InboundModel):
    pass_id: Token


class StatusArgs(InboundModel):
    uid: Token
    status: Literal["active", "suspended"]
    version: Version


def enrollment(payload: bytes | bytearray, max_templates: int, max_depth: int = MAX_DEPTH) -> dict:
    """A checked enrollment change, or Refused. The parsed dict itself is returned, not the
    model's dump: a signature covers the bytes as sent, without defaults filled in."""
    data = load_json(payload, max_depth)
    change = validated(Enrollment, data)
    if change.templates is not None and len(change.templates) > max_templates:
        raise Refused(
            "malformed", f"templates: {len(change.templates)} > {max_templates} per person"
        )
    return data


def enroll_limit(max_templates: int, dim: int) -> int:
    """The default size limit of an enrollment message: ``max_templates`` templates of ``dim``
    float32 values in base64, each with its JSON keys, plus room for names and ids and for
    the other credentials (cards, a PIN hash, a TOTP secret)."""
    return max_templates * (4 * dim * 4 // 3 + 160) + 4096 + MAX_CARDS * 96 + 512


# ---- plate lists and pass revocations (`gatectl.sync.lists`) --------------------------------

MAX_LIST_BYTES = 4096
"""One plate-list change or pass revocation: a plate, a few short fields and a signature."""


def _plate(text: str) -> str:
    if not plate_format.is_plate(text):
        raise ValueError("not a Chinese plate as the lanes read it (e.g. 粤B12345)")
    return text


PlateList = Literal["resident", "visitor", "blacklist"]
"""The devices' plate lists (`gatectl.store.vehicles`)."""


class PlateChange(InboundModel):
    """The centre's entry of one plate (``upsert``: its list and fields; ``delete``: none)."""

    v: Literal[1]
    type: Literal["plate"]
    op: Literal["upsert", "delete"]
    plate: Annotated[str, StringConstraints(max_length=12), AfterValidator(_plate)]
    version: Version
    list: PlateList | None = None
    resident: Token | None = None
    unit: Annotated[Text, Field(max_length=64)] = ""
    note: Annotated[Text, Field(max_length=500)] = ""
    valid_from: Seconds | None = None
    valid_to: Seconds | None = None
    site: Token | None = None
    device: Token | Literal["*"] | None = None
    kid: Token | None = None
    sig: Annotated[str, Field(max_length=128)] | None = None


class PassRevocation(InboundModel):
    """The centre revoked a visitor pass (the pass itself is the signed token the visitor
    holds: only its withdrawal has to reach the devices)."""

    v: Literal[1]
    type: Literal["pass"]
    op: Literal["revoke"]
    pass_id: Token
    version: Version
    site: Token | None = None
    device: Token | Literal["*"] | None = None
    kid: Token | None = None
    sig: Annotated[str, Field(max_length=128)] | None = None


LIST_CHANGES: dict[str, type[InboundModel]] = {"plate": PlateChange, "pass": PassRevocation}


def list_change(payload: bytes | bytearray, max_depth: int = MAX_DEPTH) -> dict:
    """A checked plate change or pass revocation, or Refused; the parsed dict itself (the
    signature covers it as sent), its schema chosen by ``type``."""
    if len(payload) > MAX_LIST_BYTES:
        raise Refused("too_large", f"{len(payload)} bytes > {MAX_LIST_BYTES}")
    data = load_json(payload, max_depth)
    kind = data.get("type") if isinstance(data, dict) else None
    model = LIST_CHANGES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise Refused("malformed", "type: not a plate change or pass revocation")
    change = validated(model, data)
    if isinstance(change, PlateChange) and (change.op == "upsert") != (change.list is not None):
        raise Refused("malformed", "list: an upsert names its list, a delete none")
    return data
