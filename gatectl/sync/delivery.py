"""Delivery confirmed by the centre, not by the broker: the receipt (``ack``) payload.

A broker's PUBACK only says the broker has the message; a broker that crashes without its
persistence file loses everything queued for an offline centre. So a device deletes an outbox
row only when the centre says it has stored what the row carried: events and snapshots by
event id, requests (``enroll/up``, ``resync``) by the device's outbox ``seq``. The centre sends
receipts in batches on ``<site>/<device>/ack``; the device sends rows again that were PUBACKed
but not confirmed within ``sync.ack_timeout_s`` (doubling per attempt), and the centre drops
duplicates by event id. Payload::

    {"v": 1, "events": ["01JD3W..."], "snapshots": ["01JD3W..."], "requests": [1234],
     "refused": [{"seq": 1234, "why": "card 1A2B3C/26 already belongs to another resident"}]}

``refused`` (optional) says why the centre refused a confirmed request, so the device can log
it: the request is done either way (asking again would not change the answer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

MAX_IDS = 1000  # per list and receipt: a receipt costs bounded work
MAX_ID_LEN = 64
MAX_WHY = 200  # a refusal's reason, printable text


class BadAck(ValueError):
    """A receipt that is not one; one line."""


@dataclass
class Ack:
    events: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # request seq -> why

    def __len__(self) -> int:
        return len(self.events) + len(self.snapshots) + len(self.requests)

    def payload(self) -> bytes:
        body: dict = {"v": 1, "events": self.events, "snapshots": self.snapshots,
                      "requests": self.requests}
        if self.refused:
            body["refused"] = [{"seq": s, "why": w[:MAX_WHY]} for s, w in self.refused.items()]
        return json.dumps(body).encode()


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
    out.refused = _refused(body.get("refused", []))
    return out


def _refused(items: object) -> dict[int, str]:
    """The receipt's ``refused`` list as seq -> why, or BadAck."""
    if not isinstance(items, list) or len(items) > MAX_IDS:
        raise BadAck(f"'refused' must be a list of at most {MAX_IDS}")
    out: dict[int, str] = {}
    for item in items:
        seq = item.get("seq") if isinstance(item, dict) else None
        why = item.get("why") if isinstance(item, dict) else None
        if not (isinstance(seq, int) and not isinstance(seq, bool) and 0 < seq < 2**63
                and isinstance(why, str) and len(why) <= MAX_WHY and why.isprintable()):
            raise BadAck("'refused' holds an entry that is not {seq, why}")
        out[seq] = why
    return out
