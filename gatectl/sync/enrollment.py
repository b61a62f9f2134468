"""Residents and watchlist entries between the centre and the devices.

Authority lies with the centre. Every change that reaches a device's store over MQTT carries
the centre's Ed25519 signature (`signing.sign_change`: same canonical form and pinned keys as
commands) over everything in it - uid, version, op, type, fields, templates and the target
site/device - and is verified here before anything is read from or written to the store. A
change made on a device (`gatectl enroll`, `residents remove`, suspend/reactivate) applies to
that device at once and goes up on ``enroll/up`` as a *request*; the centre decides, signs and
publishes the authoritative change, so no device can make another change its residents.

A device applies a change only when its version is newer than what it holds (resident,
watchlist entry or tombstone), so re-delivered, reordered or retained messages are harmless.
Versions are the centre's issue time in milliseconds (kept increasing per uid) and bounded:
no higher than the device's clock plus ``sync.clock_skew_s`` and never beyond `MAX_VERSION`,
so no message can pin a record forever. A deletion leaves a tombstone and erases the templates
and snapshots at once. Templates travel as float32 vectors with the id of the model that made
them; a template from another model is refused, and a resident's templates pass the same
duplicate-face rule as a local enrollment (`gatectl.people.enroll.check_duplicate`).

Payload (JSON), resident::

    {"v": 1, "type": "resident", "op": "upsert" | "delete", "uid": "...", "version": 1795000000123,
     "name": "...", "unit": "...", "status": "active" | "suspended",
     "templates": [{"model": "mobilefacenet-...", "dim": 128, "quality": 0.9,
                    "emb": "<base64 f32 LE>"}],
     "origin": "<device id or 'central'>", "site": "garden", "device": "*", "kid": "central-1",
     "sig": "..."}

Watchlist entries use ``"type": "watchlist"`` with ``name``, ``reason`` and ``templates``.
A resident's ``templates`` go up only with consent scope ``site``; ``"templates": []`` erases
them (a withdrawn consent) and keeps the resident. A request carries the person's consent scope
(``"consent": "local" | "site"``): the centre replicates the resident by it (``local``: back to
this device only, and the centre holds no face; ``site``: every device of the site).
A resident's other credentials are not face data and travel whatever the face consent:
``"cards": [{"number": "1A2B3C", "bits": 26}]`` (the store's form), ``"pin"`` (the scrypt
hash, never the digits) and ``"totp"`` (the secret). A change with ``cards`` carries the whole
set: it replaces the cards held, and a PIN or secret it leaves out is removed; a change
without ``cards`` leaves the held credentials as they are (but a ``totp`` it names). While a
change made here to the resident waits in the outbox, the credentials held here are kept: the
centre's change answers an earlier request, and the pending one carries them up. A card the
change gives the resident is theirs here even if another resident held it (logged): the
centre's signed set decides, and refusing the change would refuse the rest of it too.
Requests from a device have the same shape without ``site``/``device``/``kid``/``sig``.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gatectl.core.safe_text import shown
from gatectl.domain.consent import ConsentRecord, ConsentScope
from gatectl.people.directory import Directory
from gatectl.store import Store
from gatectl.store.migrations import MAX_VERSION
from gatectl.sync.signing import CommandRejected, verify_change

log = logging.getLogger("gatectl.sync")

__all__ = [
    "MAX_VERSION",
    "DuplicateRule",
    "EnrollRejected",
    "Replicator",
    "check_version",
    "credentials_payload",
    "decode_templates",
    "encode_templates",
    "resident_payload",
]


class EnrollRejected(Exception):
    """A change this device cannot apply; one line saying why."""


def encode_templates(templates: list[tuple[np.ndarray, float]], model_id: str) -> list[dict]:
    return [
        {
            "model": model_id,
            "dim": int(v.shape[0]),
            "quality": round(float(q), 4),
            "emb": base64.b64encode(np.asarray(v, "<f4").tobytes()).decode(),
        }
        for v, q in templates
    ]


def decode_templates(items: object, model_id: str, dim: int) -> list[tuple[np.ndarray, float]]:
    if not isinstance(items, list):
        raise EnrollRejected("templates must be a list")
    out = []
    for i, t in enumerate(items):
        if not isinstance(t, dict):
            raise EnrollRejected(f"templates[{i}] must be an object")
        if t.get("model") != model_id:
            raise EnrollRejected(
                f"templates[{i}]: made by model '{shown(t.get('model'), 60)}', this device uses "
                f"'{model_id}'; re-enroll from photos"
            )
        try:
            v = np.frombuffer(base64.b64decode(t["emb"], validate=True), "<f4")
            q = float(t.get("quality", 1.0))
        except (KeyError, ValueError, TypeError) as exc:
            raise EnrollRejected(f"templates[{i}]: bad embedding ({shown(exc, 80)})") from None
        if v.shape[0] != dim or not np.all(np.isfinite(v)):
            raise EnrollRejected(
                f"templates[{i}]: {v.shape[0]} values, expected {dim} finite floats"
            )
        out.append((v / max(float(np.linalg.norm(v)), 1e-12), q))
    return out


def check_version(version: object, now: float, skew_s: float) -> int:
    """``version`` if a signed change may carry it: an integer from 1 to the device's clock plus
    the skew (in ms), and never beyond MAX_VERSION; else EnrollRejected saying which bound."""
    if not isinstance(version, int) or isinstance(version, bool):
        raise EnrollRejected("bad version: not an integer")
    if not 1 <= version <= MAX_VERSION:
        raise EnrollRejected(f"bad version {shown(version, 24)}: outside 1..{MAX_VERSION}")
    limit = int((now + skew_s) * 1000)
    if version > limit:
        raise EnrollRejected(
            f"bad version {version}: {(version - limit) / 1000:.0f} s beyond this device's "
            f"clock + {skew_s:g} s skew"
        )
    return version


def resident_payload(store: Store, uid: str, origin: str) -> dict | None:
    """The current state of a resident (or its tombstone), as a request going up; None if
    unknown. Templates go up only with the person's consent for the site (`domain.consent`):
    without it the request carries none (the face stays on this device, and the request asks
    for scope ``local``: see `consent_scope`); after a withdrawal of site consent it
    carries an empty list, which the centre signs and every device applies as the erasure of
    the templates. Cards, the PIN hash and the TOTP secret are not face data: they go up
    whatever the consent (`credentials_payload`)."""
    r = store.resident_by_uid(uid)
    if r is not None:
        version = store.version_of(uid)[1]
        body = {
            "v": 1,
            "type": "resident",
            "op": "upsert",
            "uid": r.uid,
            "version": version,
            "name": r.name,
            "unit": r.unit,
            "status": r.status,
            "origin": origin,
            **credentials_payload(store, r.id),
        }
        consent = store.consent_of(r.id)
        if consent is not None and consent.replicated:
            templates = store.templates_of(("resident", r.id))
            model = templates[0][2] if templates else ""
            body["templates"] = encode_templates([(v, q) for v, q, _ in templates], model)
        elif consent is not None and consent.scope == "site":
            body["templates"] = []  # withdrawn: erased wherever they were replicated
        body["consent"] = consent_scope(consent)
        return body
    tombstone = store.tombstone_version(uid)
    if tombstone is None:
        return None
    return {
        "v": 1,
        "type": "resident",
        "op": "delete",
        "uid": uid,
        "version": tombstone,
        "origin": origin,
    }


def consent_scope(consent: ConsentRecord | None) -> ConsentScope:
    """The scope a request asks the centre to replicate the resident by: the person's own
    (`domain.consent`; none recorded counts as ``local``). A withdrawn ``site`` consent stays
    ``site``: the resident stays on the site's devices, the erasure of the face with them."""
    return "local" if consent is None else consent.scope


def credentials_payload(store: Store, rid: int) -> dict:
    """A resident's cards, PIN hash and TOTP secret as a change carries them: ``cards`` always
    (the whole set: an empty list removes the cards elsewhere), ``pin`` and ``totp`` when set."""
    body: dict = {"cards": [{"number": c["number"], "bits": c["bits"]}
                            for c in store.cards_of(rid)]}
    pin = store.pin_hashes(rid).get(rid)
    if pin is not None:
        body["pin"] = pin
    secret = store.totp_secret(rid)
    if secret is not None:
        body["totp"] = secret
    return body


def held_credentials(store: Store, body: dict, rid: int | None) -> tuple[list, str | None,
                                                                          str | None] | None:
    """(cards, PIN hash, TOTP secret) a resident change makes the resident's, or None when it
    carries no set (no ``cards``) and no secret: what is held stays. Without ``cards`` a
    ``totp`` replaces the secret alone (changes from before cards were replicated)."""
    if "cards" in body:
        return ([(c["number"], c["bits"]) for c in body["cards"]], body.get("pin"),
                body.get("totp"))
    if not body.get("totp"):
        return None
    held = [] if rid is None else [(c["number"], c["bits"]) for c in store.cards_of(rid)]
    pin = None if rid is None else store.pin_hashes(rid).get(rid)
    return held, pin, str(body["totp"])


class DuplicateRule:
    """The enrollment duplicate-face rule (`gatectl.people.enroll.check_duplicate`, the one rule for
    every way a template arrives) for changes from the centre, on a directory of the sync
    thread's own. It is reloaded from the store only when something other than this replicator
    changed it; the replicator's own changes update it in place, so a resync of N residents
    costs N gallery updates rather than N reloads (170 ms each at 5,000 residents)."""

    def __init__(self, directory: Directory, threshold: float):
        self.directory = directory
        self.threshold = threshold

    def check(self, templates: list[tuple[np.ndarray, float]], uid: str) -> None:
        """EnrollRejected if the face is someone else's here; the line names no one (it is
        logged)."""
        from gatectl.people.enroll import (  # the vision stack: only on a device
            DuplicateFace,
            check_duplicate,
        )

        own = self.directory.store.resident_by_uid(uid)
        try:
            check_duplicate(
                self.directory,
                templates,
                self.threshold,
                None if own is None else ("resident", own.id),
            )
        except DuplicateFace as exc:
            whose = f"{exc.owner[0]} #{exc.owner[1]}" if exc.owner else "another enrolled person"
            raise EnrollRejected(
                f"resident {shown(uid, 40)}: this face already belongs to {whose} here "
                f"(similarity {exc.score:.2f}); the same duplicate rule as `gatectl enroll`"
            ) from None

    def applied(
        self, templates: list[tuple[np.ndarray, float]], rid: int, rev_before: int, rev_after: int
    ) -> None:
        """After this replicator stored resident ``rid`` with ``templates``: update in place
        when the directory was current until then, else leave it for a reload."""
        d = self.directory
        if rev_before != d.rev:
            return
        owner = ("resident", rid)
        d.gallery.remove(owner)
        d.gallery.add(owner, np.stack([v for v, _ in templates]))
        d.residents[rid] = d.store.resident(rid)
        d.rev = rev_after


class Replicator:
    """Verifies enrollment changes from the centre and applies them to this device's store."""

    def __init__(
        self,
        store: Store,
        model_id: str,
        dim: int,
        delete_files: Callable[[list[Path]], None],
        *,
        keys: dict[str, Ed25519PublicKey],
        site: str,
        device: str,
        duplicates: DuplicateRule | None = None,
        clock: Callable[[], float] = time.time,
        skew_s: float = 30.0,
    ):
        """``duplicates``: the duplicate-face rule for arriving templates (None: no rule)."""
        self.store = store
        self.model_id = model_id
        self.dim = dim
        self.delete_files = delete_files
        self.keys = keys
        self.site = site
        self.device = device
        self.duplicates = duplicates
        self.clock = clock
        self.skew_s = skew_s

    def receive(self, body: dict) -> str:
        """'applied' | 'ignored: ...' for a change from an enrollment topic (schema-checked by
        `inbound.enrollment`); EnrollRejected for anything not signed by a pinned key for this
        site and device, before the store is touched."""
        try:
            verify_change(self.keys, body, site=self.site, device=self.device)
        except CommandRejected as exc:
            raise EnrollRejected(
                f"{body['type']} {shown(body['uid'], 40)} v{shown(body['version'], 24)}: {exc}"
            ) from None
        return self.apply(body)

    def apply(self, body: dict) -> str:
        """'applied' or 'ignored: ...' for a change already verified (by `receive`, or as part
        of a signed command); raises EnrollRejected for a change that cannot be used."""
        uid = body["uid"]
        version = check_version(body["version"], self.clock(), self.skew_s)
        held_kind, held = self.store.version_of(uid)
        if held_kind not in (None, "tombstone", body["type"]):
            raise EnrollRejected(
                f"uid {shown(uid, 40)} is a {held_kind} here, not a {body['type']}"
            )
        if version <= held:
            return f"ignored: version {version} is not newer than {held}"
        if body["op"] == "delete":
            self._delete(body["type"], uid, version)
            return "applied"
        templates = (
            decode_templates(body["templates"], self.model_id, self.dim)
            if "templates" in body
            else None
        )
        if body["type"] == "resident":
            own = self.store.resident_by_uid(uid) if held_kind == "resident" else None
            if templates and own is not None and self.store.refuses_face(own.id):
                templates = None  # they refused face recognition here: the rest of it applies
            credentials = held_credentials(self.store, body, None if own is None else own.id)
            if held_kind != "resident" and not templates and not (
                credentials and any(credentials)
            ):
                raise EnrollRejected(f"new resident {shown(uid, 40)} has no credential at all")
            if credentials is not None and self.store.request_pending(uid):
                # a card or PIN set here since is newer than this answer to an earlier request:
                # kept, it goes up with the pending request and comes back signed
                credentials = None
            status = body.get("status", "active")
            if status not in ("active", "suspended"):
                raise EnrollRejected(f"unknown status {shown(status, 20)!r}")
            if templates and self.duplicates is not None:
                self.duplicates.check(templates, uid)
            with self.store.write():  # the resident and their credentials, or neither
                applied = self.store.replicate_resident(
                    uid,
                    version,
                    str(body.get("name", "")),
                    str(body.get("unit", "")),
                    status,
                    templates,
                    self.model_id,
                )
                moved = (
                    [] if credentials is None
                    else self.store.replicate_credentials(applied[0], *credentials)
                )
            for number, bits, before in moved:
                log.warning("card %s/%d of resident #%d here is resident #%d's by the centre's "
                            "signed change", number, bits, before, applied[0])
            if templates and self.duplicates is not None:
                self.duplicates.applied(templates, *applied)
        else:
            if not templates:
                raise EnrollRejected(f"watchlist entry {shown(uid, 40)} has no templates")
            self.store.replicate_watch(
                uid,
                version,
                str(body.get("name", "")),
                str(body.get("reason", "")),
                templates,
                self.model_id,
            )
        return "applied"

    def _delete(self, kind: str, uid: str, version: int) -> None:
        if kind == "resident":
            r = self.store.resident_by_uid(uid)
            if r is not None:
                self.delete_files(self.store.remove_resident(r.id, publish=False))
        else:
            w = self.store.watch_by_uid(uid)
            if w is not None:
                self.store.remove_watch(w.id)
        self.store.tombstone(uid, kind, version)
