"""Delivery confirmed by the centre, not by the broker: the receipt (``ack``) payload.

A broker's PUBACK only says the broker has the message; a broker that crashes without its
persistence file loses everything queued for an offline centre. So a device deletes an outbox
row only when the centre says it has stored what the row carried: events and snapshots by
event id, requests (``enroll/up``, ``resync``) by the device's outbox ``seq``. The centre sends
receipts in batches on ``<site>/<device>/ack``; the device sends rows again that were PUBACKed
but not confirmed within ``sync.ack_timeout_s`` (doubling per attempt), and the centre drops
duplicates by event id. Payload::

    {"v": 1, "events": ["01JD3W..."], "snapshots": ["01JD3W..."], "requests": [1234]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

MAX_IDS = 1000  # per list and receipt: a receipt costs bounded work
MAX_ID_LEN = 64


class BadAck(ValueError):
    """A receipt that is not one; one line."""


@dataclass
class Ack:
    events: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events) + len(self.snapshots) + len(self.requests)

    def payload(self) -> bytes:
        return json.dumps({"v": 1, "events": self.events, "snapshots": self.snapshots,
                           "requests": self.requests}).encode()


def parse_ack(payload: bytes | bytearray) -> Ack:
    """The receipt, or BadAck: a JSON object, lists of at most MAX_IDS ids (text of at most
    MAX_ID_LEN characters; requests: positive integers)."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadAck("not JSON") from None
    if not isinstance(body, dict) or body.get("v") != 1:
        raise BadAck("not a v1 receipt")
    out = Ack()
    for name, kind in (("events", str), ("snapshots", str), ("requests", int)):
        values = body.get(name, [])
        if not isinstance(values, list) or len(values) > MAX_IDS:
            raise BadAck(f"'{name}' must be a list of at most {MAX_IDS}")
        for v in values:
            ok = (isinstance(v, str) and 0 < len(v) <= MAX_ID_LEN) if kind is str else (
                isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**63)
            if not ok:
                raise BadAck(f"'{name}' holds a value that is not an id")
        setattr(out, name, values)
    return out
