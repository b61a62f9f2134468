"""Plate lists and visitor-pass revocations from the centre (the registry,
`gatectl.central.registry`), on the device's ``lists`` topics (`topics.Topics.lists_site`,
``lists_device``).

Like an enrollment change, each one is checked by `inbound.list_change` (size, depth, strict
schema), then verified with the pinned keys for this site and device (`signing.verify_change`,
the same canonical form) and its version bounded (`enrollment.check_version`) before the store
is touched; an unsigned, forged or retargeted one changes nothing. A change applies only when
it is newer than what the device holds for that plate or pass (`store.lists`).

Payloads (JSON)::

    {"v": 1, "type": "plate", "op": "upsert" | "delete", "plate": "粤B12345",
     "version": 1795000000123, "list": "resident" | "visitor" | "blacklist",
     "resident": "<uid>", "unit": "2-302", "note": "", "valid_from": null, "valid_to": null,
     "site": "garden", "device": "*" | "<device>", "kid": "central-1", "sig": "..."}
    {"v": 1, "type": "pass", "op": "revoke", "pass_id": "...", "version": ..., "site": ...,
     "device": ..., "kid": ..., "sig": ...}

A visitor pass itself is a token signed by the centre and verified offline
(`gatectl.access.passes`): only its revocation has to reach the devices.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gatectl.core.safe_text import shown
from gatectl.store import Store
from gatectl.sync.enrollment import EnrollRejected, check_version
from gatectl.sync.signing import CommandRejected, verify_change


class ListRejected(Exception):
    """A list change this device will not apply; one line saying why (it names no person), and
    ``reason`` a short code for the counters (``unsigned``, ``bad_signature``, ...)."""

    def __init__(self, text: str, reason: str = "rejected"):
        super().__init__(text)
        self.reason = reason


class ListReplicator:
    """Verifies the centre's plate changes and pass revocations and applies them to the store."""

    def __init__(
        self,
        store: Store,
        *,
        keys: dict[str, Ed25519PublicKey],
        site: str,
        device: str,
        clock: Callable[[], float] = time.time,
        skew_s: float = 30.0,
    ):
        self.store = store
        self.keys = keys
        self.site = site
        self.device = device
        self.clock = clock
        self.skew_s = skew_s

    def receive(self, body: dict) -> str:
        """'applied' | 'ignored: ...' for a change checked by `inbound.list_change`;
        ListRejected for anything not signed by a pinned key for this site and device, or
        carrying an impossible version, before the store is touched."""
        what = (f"plate {shown(body['plate'], 16)}" if body["type"] == "plate"
                else f"pass {shown(body['pass_id'], 64)}")
        try:
            verify_change(self.keys, body, site=self.site, device=self.device)
            version = check_version(body["version"], self.clock(), self.skew_s)
        except CommandRejected as exc:
            raise ListRejected(f"{what} v{body['version']}: {exc}", exc.reason) from None
        except EnrollRejected as exc:
            raise ListRejected(f"{what}: {exc}", "bad_version") from None
        if body["type"] == "pass":
            done = self.store.central_revocation(body["pass_id"], version)
        else:
            entry = None if body["op"] == "delete" else {
                "list": body["list"], "unit": body.get("unit", ""), "note": body.get("note", ""),
                "valid_from": body.get("valid_from"), "valid_to": body.get("valid_to")}
            done = self.store.central_plate(body["plate"], version, entry, body.get("resident"))
        return "applied" if done else f"ignored: version {version} is not newer than held"
