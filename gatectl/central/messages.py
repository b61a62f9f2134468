"""What the centre accepts from a device's topics: sizes per topic kind and the field checks
every consumer of device messages shares (the reference tool and the ingest workers). Anything
else is `Malformed`: one counted, rate-limited line, never an exception that ends a worker."""

from __future__ import annotations

from typing import Literal, overload

from gatectl.sync.inbound import Credentials, Refused, load_json, validated

MAX_SIZE = {"events": 64 * 1024, "status": 256 * 1024, "enroll/up": 256 * 1024, "resync": 4096,
            "cmd/resp": 64 * 1024, "snapshots": 8 * 1024 * 1024}
CONSENT_SCOPES = ("none", "device", "building", "site")
# a device's own consent scopes (`gatectl.domain.consent`) as the registry's: ``local`` is the
# home device only with no face held at the centre (``none``); ``site`` is the site
DEVICE_CONSENT = {"local": "none"}
MAX_TEXT = 200  # names, units
MAX_TEMPLATES = 20


class Malformed(ValueError):
    """A message from a device that is not what its topic carries; one line, counted."""


def json_object(payload: bytes | bytearray) -> dict:
    """The payload as a JSON object, its depth bounded before it is parsed (the devices' own
    check, `gatectl.sync.inbound.load_json`)."""
    try:
        body = load_json(payload)
    except Refused as exc:
        raise Malformed(str(exc)) from None
    if not isinstance(body, dict):
        raise Malformed("not a JSON object")
    return body


@overload
def text(body: dict, key: str, limit: int = ..., optional: Literal[False] = ...) -> str: ...
@overload
def text(body: dict, key: str, limit: int = ..., *, optional: bool) -> str | None: ...
def text(body: dict, key: str, limit: int = MAX_TEXT, optional: bool = False) -> str | None:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit or not value.isprintable():
        raise Malformed(f"field '{key}' missing, not printable text or longer than {limit}")
    return value


def whole(body: dict, key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise Malformed(f"field '{key}' missing or not a non-negative integer")
    return value


def request_fields(body: dict) -> dict:
    """The fields of a device's enrollment request the centre will consider (schema-checked);
    never the message itself: what the centre publishes is built from these and signed."""
    if (
        body.get("v") != 1
        or body.get("type") != "resident"
        or body.get("op") not in ("upsert", "delete")
    ):
        raise Malformed("not a v1 resident upsert/delete request")
    out = {"type": "resident", "op": body["op"], "uid": text(body, "uid", 128)}
    if body["op"] == "delete":
        return out
    status = body.get("status", "active")
    if status not in ("active", "suspended"):
        raise Malformed("field 'status' must be active or suspended")
    out |= {"name": text(body, "name"), "unit": text(body, "unit"), "status": status}
    consent = body.get("consent")
    if isinstance(consent, str):
        consent = DEVICE_CONSENT.get(consent, consent)
    if consent is not None:  # the scope a device asks for (the registry bounds it)
        if consent not in CONSENT_SCOPES:
            raise Malformed(f"field 'consent' must be one of {', '.join(CONSENT_SCOPES)}")
        out["consent"] = consent
    out |= credential_fields(body)
    if "templates" not in body:
        return out  # a change of status, name or unit: the templates stay
    templates = body["templates"]
    if not isinstance(templates, list) or len(templates) > MAX_TEMPLATES:
        raise Malformed(f"field 'templates' must be a list of 0..{MAX_TEMPLATES} (0: erase them)")
    clean = []
    for t in templates:
        if not isinstance(t, dict):
            raise Malformed("a template is not an object")
        dim = whole(t, "dim")
        quality = t.get("quality", 1.0)
        if not 0 < dim <= 2048 or not isinstance(quality, (int, float)) or not 0 <= quality <= 1:
            raise Malformed("a template has a bad dim or quality")
        emb = text(t, "emb", 4 * ((dim * 4 + 2) // 3))
        clean.append({"model": text(t, "model", 128), "dim": dim, "quality": quality, "emb": emb})
    return {**out, "templates": clean}


def credential_fields(body: dict) -> dict:
    """A request's cards, PIN hash and TOTP secret, checked as strictly as a device checks
    them (`gatectl.sync.inbound.Credentials`): only the keys the request carries."""
    given = {k: body[k] for k in ("cards", "pin", "totp") if k in body}
    try:
        checked = validated(Credentials, given)
    except Refused as exc:
        raise Malformed(exc.detail) from None
    return checked.model_dump(include=set(given), exclude_none=True)


def has_credential(request: dict) -> bool:
    """Whether a request gives the resident any way in: templates, a card, a PIN or a code (a
    resident who refused face recognition and has only a card is a resident elsewhere too)."""
    return bool(request.get("templates") or request.get("cards") or request.get("pin")
                or request.get("totp"))
