"""The registry: the centre's source of truth for who may pass where, and the only place that
signs it.

It holds residents (fields, consent scope, credentials and - only when consent allows
replication - their face templates), plate lists, visitor passes, devices with their site,
building and doors, and the public halves of the signing keys. Every change gets a version
(milliseconds, always above the last one of the same record), is signed with
`gatectl.sync.signing.sign_change` and is published to exactly the devices that need it:

    consent ``site``      the site topic, signed for every device (``*``)
    consent ``building``  each registered device of the resident's building, signed for it
    consent ``device``    the resident's home device only (where they were enrolled)
    consent ``none``      the home device only, and without templates (none are held here)

A narrower consent sends signed deletes to the devices that fall out of it. Every signed
publication is kept in ``changes`` (the audit log) until the resident is erased or withdraws
consent to replication (their earlier bodies held the name and the face). A resync (a new or
wiped device asking) is built from the registry's current state for that device, not from the
log, so a device added to a building later gets the building's residents too.

Requests from devices (``enroll/up``) are decided here: a device may add residents and change
or remove only those it added (``owner``); a new face is refused when it is someone else's
across the whole site (`gatectl.domain.face_match.duplicate_of`, the devices' own rule); the
consent a device asks for is bounded by ``max_device_consent``.

Plate lists and visitor-pass revocations are versioned and signed the same way and published on
the devices' ``lists`` topics (`gatectl.sync.lists`, whose schema they follow) to the devices of
their scope: the site (signed for ``*``), one building's devices or one device (each signed for
it); a narrower scope sends signed removals to the devices it leaves, and a resync sends a
device its current lists. A visitor pass itself is the token the visitor holds (signed by
`gatectl central pass issue`): its fields stay in the log, only its revocation travels.

A resident's cards, PIN hash and TOTP secret are not face data: they are in every upsert
(``cards`` always, the whole set), and every device of the site outside the face's targets gets
the change too, without templates (``"templates": []``), so a card opens every door of the site
whatever the face consent. A card belongs to one resident of a site: a request giving another
resident's card is refused before anything is signed.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gatectl.central.messages import CONSENT_SCOPES, has_credential
from gatectl.central.storage import Database, Tx
from gatectl.core.errors import GatectlError
from gatectl.domain import plate_format
from gatectl.domain.face_match import Match, duplicate_of
from gatectl.sync.inbound import Credentials, PlateList, Refused, is_token, validated
from gatectl.sync.signing import public_key_b64, sign_change
from gatectl.sync.topics import VERSION

SCOPES = CONSENT_SCOPES
MAX_TEMPLATES = 20
PLATE_LISTS: tuple[str, ...] = get_args(PlateList)  # the devices' lists (`store.vehicles`)
Publish = Callable[[str, bytes], None]


class RegistryError(GatectlError):
    """A change the registry refuses (unknown record, bad field); one line."""


@dataclass(frozen=True)
class Decision:
    accepted: bool
    why: str = ""


def _now_ms(clock: Callable[[], float]) -> int:
    return int(clock() * 1000)


def _vectors(templates: list[dict]) -> np.ndarray:
    rows = []
    for t in templates:
        v = np.frombuffer(base64.b64decode(t["emb"], validate=True), "<f4")
        if v.shape[0] != t["dim"] or not np.all(np.isfinite(v)):
            raise RegistryError("a template's values do not match its dim")
        rows.append(v / max(float(np.linalg.norm(v)), 1e-12))
    return np.stack(rows)


def _down_topic(body: dict) -> str | None:
    """The device topic a signed change goes out on (`gatectl.sync.topics`): residents on
    ``enroll``, plate changes and pass revocations on ``lists``; None for what stays in the
    log (a pass's own fields: the pass is the signed token its visitor holds)."""
    if body["type"] == "resident":
        return "enroll"
    if body["type"] == "plate" or (body["type"] == "pass" and body["op"] == "revoke"):
        return "lists"
    return None


def _fields_of(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """(kind, ref) pairs as a change carries them: ``cards`` (always: the whole set, each ref
    ``NUMBER/BITS``), ``pin`` and ``totp`` when held."""
    out: dict[str, Any] = {"cards": []}
    for kind, ref in pairs:
        if kind == "card":
            number, _, bits = ref.partition("/")
            out["cards"].append({"number": number, "bits": int(bits) if bits.isdigit() else 0})
        else:
            out[kind] = ref
    return out


def _credential_pairs(request: dict) -> list[tuple[str, str]] | None:
    """A checked request's credentials as (kind, ref) pairs; None when it carries no set."""
    if "cards" not in request:
        return None
    pairs = [("card", f"{c['number']}/{c['bits']}") for c in request["cards"]]
    return pairs + [(k, request[k]) for k in ("pin", "totp") if request.get(k)]


def _taken(run: Callable[[str, list], Any], site: str, uid: str,
           pairs: list[tuple[str, str]]) -> str | None:
    cards = sorted({ref for kind, ref in pairs if kind == "card"})
    if not cards:
        return None
    rows = run(f"SELECT ref FROM credentials WHERE site = ? AND kind = 'card' AND uid <> ? "
               f"AND ref IN ({', '.join('?' * len(cards))}) ORDER BY ref", [site, uid, *cards])
    return str(rows[0][0]) if rows else None


def _credential_fields(run: Callable[[str, list], Any], uid: str) -> dict[str, Any]:
    """``cards`` (always: the whole set), ``pin`` and ``totp`` when held."""
    return _fields_of(run("SELECT kind, ref FROM credentials WHERE uid = ? ORDER BY kind, ref",
                          [uid]))


def _without_face(body: dict) -> dict:
    """A resident change for a device outside the face's consent: no templates, and the
    erasure of any it holds (consent narrowed)."""
    return {**body, "templates": []} if body.get("op") == "upsert" else body


class Registry:
    """Over a `Database` (the schema of `gatectl.central.migrations`). ``publish(topic,
    payload)`` hands a signed change to the broker (QoS 1); without a ``key`` nothing is
    signed or published (a read-only registry for the operator's listings)."""

    def __init__(
        self,
        db: Database,
        prefix: str = "gatectl",
        key: Ed25519PrivateKey | None = None,
        kid: str = "central-1",
        publish: Publish | None = None,
        *,
        duplicate_threshold: float = 0.40,
        max_device_consent: str = "site",
        clock: Callable[[], float] = time.time,
    ):
        self.db = db
        self.prefix = prefix
        self.key = key
        self.kid = kid
        self.publish = publish
        self.duplicate_threshold = duplicate_threshold
        self.max_device_consent = max_device_consent
        self.clock = clock
        self._outgoing: list[tuple[str, bytes]] | None = None  # of the open transaction
        if key is not None:
            self.add_key(kid, public_key_b64(key))

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        """A transaction whose signed changes are published once it has committed: nothing
        reaches a device that the registry (and its log) does not hold."""
        outgoing: list[tuple[str, bytes]] = []
        self._outgoing = outgoing
        try:
            with self.db.write() as tx:
                yield tx
        finally:
            self._outgoing = None
        if self.publish is not None:
            for topic, payload in outgoing:
                self.publish(topic, payload)

    # ---- keys and devices -------------------------------------------------------------------

    def add_key(self, kid: str, public_key: str) -> None:
        with self._write() as tx:
            tx.execute(
                "INSERT INTO signing_keys (kid, public_key, added_at) VALUES (?, ?, ?) "
                "ON CONFLICT (kid) DO NOTHING",
                [kid, public_key, self.clock()],
            )

    def add_device(
        self, site: str, device: str, building: str | None = None, doors: Iterable[str] = ()
    ) -> None:
        """Register (or move) a device; its building decides which residents it holds."""
        with self._write() as tx:
            tx.execute(
                "INSERT INTO devices (site, device, building, doors, added_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (site, device) DO UPDATE SET "
                "building = excluded.building, doors = excluded.doors",
                [site, device, building, json.dumps(list(doors)), self.clock()],
            )

    def seen(self, tx: Tx, site: str, device: str) -> None:
        """A device that speaks is known (building unset until the operator places it)."""
        tx.execute(
            "INSERT INTO devices (site, device, added_at, last_seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (site, device) DO UPDATE SET last_seen = excluded.last_seen",
            [site, device, self.clock(), self.clock()],
        )

    def devices(self, site: str | None = None) -> list[dict[str, Any]]:
        cols = ("site", "device", "building", "doors", "state", "state_at", "last_seen",
                "pending", "lag_s")
        rows = self.db.query(
            f"SELECT {', '.join(cols)} FROM devices"
            + (" WHERE site = ?" if site else "") + " ORDER BY site, device",
            [site] if site else [],
        )
        return [dict(zip(cols, r)) | {"doors": json.loads(r[3])} for r in rows]

    def _site_devices(self, tx: Tx, site: str, building: str | None = None) -> list[str]:
        if building is None:
            rows = tx.execute("SELECT device FROM devices WHERE site = ?", [site])
        else:
            rows = tx.execute(
                "SELECT device FROM devices WHERE site = ? AND building = ?", [site, building]
            )
        return sorted(r[0] for r in rows)

    # ---- residents --------------------------------------------------------------------------

    def residents(self, site: str | None = None) -> list[dict[str, Any]]:
        cols = ("uid", "site", "building", "home_device", "name", "unit", "status", "consent",
                "owner", "version", "deleted")
        rows = self.db.query(
            f"SELECT {', '.join(cols)} FROM residents"
            + (" WHERE site = ?" if site else "") + " ORDER BY uid",
            [site] if site else [],
        )
        out = [dict(zip(cols, r)) for r in rows]
        counts: dict[str, int] = dict(
            self.db.query("SELECT uid, count(*) FROM templates GROUP BY uid")
        )
        for r in out:
            r["templates"] = int(counts.get(r["uid"], 0))
        return out

    def resident(self, uid: str) -> dict[str, Any] | None:
        found = [r for r in self.residents() if r["uid"] == uid]
        return found[0] if found else None

    def enroll(
        self,
        site: str,
        uid: str,
        *,
        name: str,
        unit: str,
        status: str = "active",
        consent: str = "site",
        templates: list[dict] | None = None,
        home_device: str | None = None,
        building: str | None = None,
        owner: str = "central",
        credentials: Iterable[tuple[str, str]] | None = None,
    ) -> int:
        """Add or change a resident and publish it where its consent allows; the version.
        ``credentials``: (kind, ref) pairs - ``card`` ``NUMBER/BITS``, ``pin`` the hash,
        ``totp`` the secret - that replace the resident's (None keeps them)."""
        if consent not in SCOPES:
            raise RegistryError(f"consent must be one of {', '.join(SCOPES)}")
        if consent in ("device", "none") and home_device is None:
            held = self.resident(uid)
            home_device = held["home_device"] if held else None
            if home_device is None:
                raise RegistryError(f"consent '{consent}' needs the resident's home device")
        with self._write() as tx:
            before = self._targets(tx, uid)
            before_elsewhere = self._credential_targets(tx, site, uid, before)
            row = tx.execute("SELECT version, owner FROM residents WHERE uid = ?", [uid])
            version = max(_now_ms(self.clock), row[0][0] + 1 if row else 0)
            tx.execute(
                "INSERT INTO residents (uid, site, building, home_device, name, unit, status, "
                "consent, owner, version, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0) "
                "ON CONFLICT (uid) DO UPDATE SET site = excluded.site, building = "
                "excluded.building, home_device = excluded.home_device, name = excluded.name, "
                "unit = excluded.unit, status = excluded.status, consent = excluded.consent, "
                "version = excluded.version, deleted = 0",
                [uid, site, building, home_device, name, unit, status, consent,
                 row[0][1] if row else owner, version],
            )
            if templates is not None or consent == "none":
                tx.execute("DELETE FROM templates WHERE uid = ?", [uid])
            if consent == "none":  # consent withdrawn: no copy of the face in the log either
                tx.execute("DELETE FROM changes WHERE kind = 'resident' AND ref = ?", [uid])
            if templates and consent != "none":
                for i, t in enumerate(templates[:MAX_TEMPLATES]):
                    tx.execute(
                        "INSERT INTO templates VALUES (?, ?, ?, ?, ?, ?)",
                        [uid, i, t["model"], t["dim"], float(t.get("quality", 1.0)), t["emb"]],
                    )
            if credentials is not None:
                self._keep_credentials(tx, site, uid, list(credentials))
            after = self._targets(tx, uid)
            body = self._resident_change(tx, uid, with_templates=True)
            self._send(tx, site, "resident", uid, version, body, after)
            elsewhere = self._credential_targets(tx, site, uid, after)
            self._send(tx, site, "resident", uid, version, _without_face(body), elsewhere)
            gone = (self._devices_of(tx, site, before) | set(before_elsewhere)) - (
                self._devices_of(tx, site, after) | set(elsewhere))
            if gone:
                delete = {"v": 1, "type": "resident", "op": "delete", "uid": uid,
                          "version": version, "origin": "central"}
                self._send(tx, site, "resident", uid, version, delete, sorted(gone))
        return version

    def set_consent(self, uid: str, consent: str) -> int:
        r = self.resident(uid)
        if r is None or r["deleted"]:
            raise RegistryError(f"resident {uid}: not in the registry")
        return self.enroll(r["site"], uid, name=r["name"], unit=r["unit"], status=r["status"],
                           consent=consent, home_device=r["home_device"], building=r["building"])

    def delete_resident(self, uid: str) -> int:
        """Erase a resident everywhere it was sent: templates and credentials gone here, a
        signed delete to each target (devices keep a tombstone)."""
        with self._write() as tx:
            row = tx.execute("SELECT site, version FROM residents WHERE uid = ?", [uid])
            if not row:
                raise RegistryError(f"resident {uid}: not in the registry")
            site, held = row[0]
            targets = self._targets(tx, uid)
            targets += self._credential_targets(tx, site, uid, targets)  # held for a card
            version = max(_now_ms(self.clock), held + 1)
            tx.execute("DELETE FROM templates WHERE uid = ?", [uid])
            tx.execute("DELETE FROM credentials WHERE uid = ?", [uid])
            # the log's earlier bodies carry the name and the face: erasure leaves nothing
            tx.execute("DELETE FROM changes WHERE kind = 'resident' AND ref = ?", [uid])
            tx.execute(
                "UPDATE residents SET deleted = 1, version = ?, name = '', unit = '' "
                "WHERE uid = ?", [version, uid])
            delete = {"v": 1, "type": "resident", "op": "delete", "uid": uid,
                      "version": version, "origin": "central"}
            self._send(tx, site, "resident", uid, version, delete, targets)
            self._remove_plates_of(tx, site, uid)
        return version

    def _targets(self, tx: Tx, uid: str) -> list[str]:
        """'*' or the device ids a resident's changes go to, by consent."""
        row = tx.execute(
            "SELECT site, building, home_device, consent, deleted FROM residents WHERE uid = ?",
            [uid],
        )
        if not row or row[0][4]:
            return []
        site, building, home, consent, _ = row[0]
        if consent == "site":
            return ["*"]
        if consent == "building" and building is not None:
            return sorted(set(self._site_devices(tx, site, building)) | ({home} if home else set()))
        return [home] if home else []

    def _devices_of(self, tx: Tx, site: str, targets: list[str]) -> set[str]:
        return set(self._site_devices(tx, site)) if "*" in targets else set(targets)

    def _resident_change(self, tx: Tx, uid: str, with_templates: bool) -> dict:
        name, unit, status, owner, version, deleted = tx.execute(
            "SELECT name, unit, status, owner, version, deleted FROM residents "
            "WHERE uid = ?", [uid])[0]
        if deleted:
            return {"v": 1, "type": "resident", "op": "delete", "uid": uid, "version": version,
                    "origin": "central"}
        body: dict[str, Any] = {"v": 1, "type": "resident", "op": "upsert", "uid": uid,
                                "version": version, "name": name, "unit": unit,
                                "status": status, "origin": owner}
        body |= _credential_fields(tx.execute, uid)
        rows = tx.execute(
            "SELECT model, dim, quality, emb FROM templates WHERE uid = ? ORDER BY idx", [uid]
        )
        if with_templates and rows:
            body["templates"] = [
                {"model": m, "dim": d, "quality": q, "emb": e} for m, d, q, e in rows
            ]
        return body

    def _send(
        self, tx: Tx, site: str, kind: str, ref: str, version: int, body: dict, targets: list[str]
    ) -> None:
        """Sign ``body`` for each target, log it, and publish it once the transaction has
        committed (`_write`; a publish that is lost is repaired by the device's next resync)."""
        if self.key is None:
            return
        for target in targets:
            signed = sign_change(self.key, self.kid, body, site=site, device=target)
            payload = json.dumps(signed).encode()
            tx.execute(
                "INSERT INTO changes (site, kind, ref, target, version, body, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [site, kind, ref, target, version, payload.decode(), self.clock()],
            )
            leaf = _down_topic(body)
            if self._outgoing is not None and leaf is not None:
                root = f"{self.prefix}/{VERSION}/{site}"
                topic = f"{root}/{leaf}" if target == "*" else f"{root}/{target}/{leaf}"
                self._outgoing.append((topic, payload))

    # ---- what a device asks ------------------------------------------------------------------

    def decide(self, site: str, device: str, request: dict) -> Decision:
        """A device's schema-checked request (`tool._request`'s fields, plus an optional
        ``consent``): accepted ones are signed and published; refusals say why."""
        uid = request["uid"]
        r = self.resident(uid)
        if r is not None and r["site"] != site:
            return Decision(False, "a resident of another site")
        if r is not None and r["owner"] != device:
            return Decision(False, "not this device's resident")
        if request["op"] == "delete":
            if r is None or r["deleted"]:
                return Decision(False, "unknown resident")
            self.delete_resident(uid)
            return Decision(True)
        templates = request.get("templates")
        asked = request.get("consent") or (r["consent"] if r else "device")
        if asked not in SCOPES:
            return Decision(False, "unknown consent scope")
        # a person whose face stays on the device (``local``: ``none`` here) is recorded
        # without one, for their home device only; anyone else needs a way in
        if (r is None or r["deleted"]) and not has_credential(request) and asked != "none":
            return Decision(False, "a new resident needs a credential")
        credentials = _credential_pairs(request)
        taken = self.card_taken(site, uid, credentials)
        if taken is not None:
            return Decision(False, f"card {taken} already belongs to another resident of "
                                   "this site")
        consent = min(asked, self.max_device_consent, key=SCOPES.index)
        if templates:
            _vectors(templates)  # each decodes to its dim of finite floats, or RegistryError
            twin = self.duplicate(site, uid, templates)
            if twin is not None:
                return Decision(False, f"this face already belongs to resident {twin} here")
        with self._write() as tx:
            self.seen(tx, site, device)
            building = tx.execute(
                "SELECT building FROM devices WHERE site = ? AND device = ?", [site, device]
            )[0][0]
        self.enroll(site, uid, name=request["name"], unit=request["unit"],
                    status=request.get("status", "active"), consent=consent,
                    templates=templates, home_device=device if r is None else r["home_device"],
                    building=building if r is None else r["building"], owner=device,
                    credentials=credentials)
        return Decision(True)

    def duplicate(self, site: str, uid: str, templates: list[dict]) -> str | None:
        """The uid of another resident of ``site`` whose face this is (the devices' rule over
        every template the registry holds for the site), or None."""
        model = templates[0]["model"]
        rows = self.db.query(
            "SELECT t.uid, t.dim, t.emb FROM templates t JOIN residents r ON r.uid = t.uid "
            "WHERE r.site = ? AND r.deleted = 0 AND t.uid <> ? AND t.model = ?",
            [site, uid, model],
        )
        if not rows:
            return None
        query = _vectors(templates)
        owners = sorted({u for u, _, _ in rows})
        best: dict[str, float] = {}
        for u, dim, emb in rows:
            v = _vectors([{"dim": dim, "emb": emb}])[0]
            best[u] = max(best.get(u, -1.0), float(np.max(query @ v)))
        ranked = sorted(((s, owners.index(u)) for u, s in best.items()), reverse=True)
        m = Match(("resident", ranked[0][1]), ranked[0][0],
                  ranked[1][0] if len(ranked) > 1 else -1.0)
        hit = duplicate_of(m, self.duplicate_threshold)
        return owners[hit[0][1]] if hit is not None and hit[0] is not None else None

    def resync(self, site: str, device: str) -> int:
        """Every resident this device should hold (and a delete for each erased one it may
        still hold), then its plate lists and pass revocations (`_resync_lists`), signed for it
        and published on its own topics; the number sent."""
        sent = 0
        with self._write() as tx:
            self.seen(tx, site, device)
            for (uid,) in tx.execute("SELECT uid FROM residents WHERE site = ?", [site]):
                row = tx.execute(
                    "SELECT deleted, version, home_device FROM residents WHERE uid = ?", [uid]
                )[0]
                if row[0]:
                    body = self._resident_change(tx, uid, with_templates=False)
                elif device in self._devices_of(tx, site, self._targets(tx, uid)):
                    body = self._resident_change(tx, uid, with_templates=True)
                    if "templates" not in body and row[2] != device and not has_credential(body):
                        continue  # no consent to replicate: nothing a device elsewhere can use
                elif device in self._credential_targets(tx, site, uid, self._targets(tx, uid)):
                    body = _without_face(self._resident_change(tx, uid, with_templates=False))
                else:
                    continue
                self._send(tx, site, "resident", uid, row[1], body, [device])
                sent += 1
            sent += self._resync_lists(tx, site, device)
        return sent

    # ---- credentials besides the face -------------------------------------------------------

    def _keep_credentials(self, tx: Tx, site: str, uid: str, pairs: list[tuple[str, str]]) -> None:
        """Make ``pairs`` the resident's credentials; RegistryError for a card another resident
        of the site holds (the unique index holds it against a concurrent worker too), or for
        what a device's schema (`Credentials`) would refuse: a card not in the stored form, a
        PIN that is not its hash, a second PIN or secret."""
        kinds = [kind for kind, _ in pairs]
        if any(k not in ("card", "pin", "totp") for k in kinds) or kinds.count("pin") > 1 \
                or kinds.count("totp") > 1:
            raise RegistryError("credentials: cards, at most one pin and one totp")
        try:
            validated(Credentials, _fields_of(pairs), "credentials")
        except Refused as exc:
            raise RegistryError(exc.detail) from None
        taken = _taken(tx.execute, site, uid, pairs)
        if taken is not None:
            raise RegistryError(f"card {taken} already belongs to another resident of this site")
        tx.execute("DELETE FROM credentials WHERE uid = ?", [uid])
        for kind, ref in dict.fromkeys(pairs):
            tx.execute("INSERT INTO credentials (uid, kind, ref, site) VALUES (?, ?, ?, ?)",
                       [uid, kind, ref, site])

    def card_taken(self, site: str, uid: str, pairs: list[tuple[str, str]] | None) -> str | None:
        """The first card of ``pairs`` that another resident of ``site`` holds, or None."""
        return None if not pairs else _taken(self.db.query, site, uid, pairs)

    def credentials_of(self, uid: str) -> dict[str, Any]:
        """A resident's cards, PIN hash and TOTP secret as a change carries them."""
        return _credential_fields(self.db.query, uid)

    def _credential_targets(self, tx: Tx, site: str, uid: str, targets: list[str]) -> list[str]:
        """The devices of the site outside the face's ``targets`` that hold the resident for
        their other credentials (none when the resident has none, or goes site-wide)."""
        if "*" in targets or not tx.execute(
            "SELECT 1 FROM credentials c JOIN residents r ON r.uid = c.uid "
            "WHERE c.uid = ? AND r.deleted = 0", [uid]
        ):
            return []
        return sorted(set(self._site_devices(tx, site)) - set(targets))

    # ---- plates and passes ------------------------------------------------------------------

    def set_plate(
        self, site: str, plate: str, list_name: str, note: str = "", *, unit: str = "",
        resident: str | None = None, valid_from: float | None = None,
        valid_to: float | None = None, building: str | None = None, device: str | None = None,
    ) -> int:
        """Put ``plate`` on one of the devices' lists (`PLATE_LISTS`) for the lanes that need
        it - the site's, one ``building``'s or one ``device``'s -, signed and published; the
        devices a narrower scope leaves get a signed removal. ``resident``: the uid whose car it
        is (a suspended resident's car is refused). The version."""
        plate = plate_format.normalise(plate)
        if not plate_format.is_plate(plate):
            raise RegistryError(f"plate {plate!r}: not a Chinese plate (e.g. 粤B12345)")
        if list_name not in PLATE_LISTS:
            raise RegistryError(f"a plate list is one of {', '.join(PLATE_LISTS)}")
        if building is not None and device is not None:
            raise RegistryError("a plate is for a building or for one device, not both")
        if resident is not None and not is_token(resident):
            raise RegistryError("a plate's resident is a uid of at most 64 of A-Z a-z 0-9 _.:-")
        if valid_from is not None and valid_to is not None and valid_to <= valid_from:
            raise RegistryError("a plate's window must end after it starts")
        for what, value, limit in (("note", note, 500), ("unit", unit, 64)):
            if len(value) > limit or not value.isprintable():
                raise RegistryError(f"a plate's {what} is printable text of at most {limit}")
        with self._write() as tx:
            row = tx.execute("SELECT version, building, device, deleted FROM plates "
                             "WHERE site = ? AND plate = ?", [site, plate])
            version = max(_now_ms(self.clock), row[0][0] + 1 if row else 0)
            before = [] if not row or row[0][3] else self._scope(tx, site, row[0][1], row[0][2])
            tx.execute(
                "INSERT INTO plates (site, plate, list, note, version, deleted, building, device, "
                "resident_uid, unit, valid_from, valid_to) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, "
                "?, ?) ON CONFLICT (site, plate) DO UPDATE SET list = excluded.list, note = "
                "excluded.note, version = excluded.version, deleted = 0, building = "
                "excluded.building, device = excluded.device, resident_uid = "
                "excluded.resident_uid, unit = excluded.unit, valid_from = excluded.valid_from, "
                "valid_to = excluded.valid_to",
                [site, plate, list_name, note, version, building, device, resident, unit,
                 valid_from, valid_to],
            )
            after = self._scope(tx, site, building, device)
            self._send(tx, site, "plate", plate, version, self._plate_change(tx, site, plate),
                       after)
            gone = self._devices_of(tx, site, before) - self._devices_of(tx, site, after)
            if gone:
                self._send(tx, site, "plate", plate, version, _plate_removal(plate, version),
                           sorted(gone))
        return version

    def remove_plate(self, site: str, plate: str) -> int:
        """Take ``plate`` off the lists of every device it was sent to (signed); the version."""
        plate = plate_format.normalise(plate)
        with self._write() as tx:
            row = tx.execute("SELECT version, building, device FROM plates WHERE site = ? AND "
                             "plate = ? AND deleted = 0", [site, plate])
            if not row:
                raise RegistryError(f"plate {plate}: on no list of site {site}")
            version = max(_now_ms(self.clock), row[0][0] + 1)
            tx.execute("UPDATE plates SET deleted = 1, version = ? WHERE site = ? AND plate = ?",
                       [version, site, plate])
            self._send(tx, site, "plate", plate, version, _plate_removal(plate, version),
                       self._scope(tx, site, row[0][1], row[0][2]))
        return version

    def _remove_plates_of(self, tx: Tx, site: str, uid: str) -> None:
        """An erased resident's cars off every list they were sent to (a device erasing the
        resident drops its copy of the entry too, which no resync would bring back)."""
        for plate, held, building, device in tx.execute(
            "SELECT plate, version, building, device FROM plates WHERE site = ? AND "
            "resident_uid = ? AND deleted = 0", [site, uid]
        ):
            version = max(_now_ms(self.clock), held + 1)
            tx.execute("UPDATE plates SET deleted = 1, version = ?, resident_uid = NULL "
                       "WHERE site = ? AND plate = ?", [version, site, plate])
            self._send(tx, site, "plate", plate, version, _plate_removal(plate, version),
                       self._scope(tx, site, building, device))

    def _scope(self, tx: Tx, site: str, building: str | None, device: str | None) -> list[str]:
        """'*' or the device ids a plate change or a pass revocation goes to."""
        if device is not None:
            return [device]
        if building is not None:
            return self._site_devices(tx, site, building)
        return ["*"]

    def _plate_change(self, tx: Tx, site: str, plate: str) -> dict:
        version, list_name, resident, unit, note, valid_from, valid_to, deleted = tx.execute(
            "SELECT version, list, resident_uid, unit, note, valid_from, valid_to, deleted "
            "FROM plates WHERE site = ? AND plate = ?", [site, plate])[0]
        if deleted:
            return _plate_removal(plate, version)
        return {"v": 1, "type": "plate", "op": "upsert", "plate": plate, "version": version,
                "list": list_name, "resident": resident, "unit": unit, "note": note,
                "valid_from": valid_from, "valid_to": valid_to}

    def plates(self, site: str) -> list[dict[str, Any]]:
        cols = ("plate", "list", "resident_uid", "unit", "note", "valid_from", "valid_to",
                "building", "device", "version")
        return [dict(zip(cols, r)) for r in self.db.query(
            f"SELECT {', '.join(cols)} FROM plates WHERE site = ? AND deleted = 0 "
            "ORDER BY plate", [site])]

    def add_pass(
        self, site: str, pass_id: str, *, holder: str, valid_from: float, valid_until: float,
        host_uid: str | None = None, building: str | None = None, doors: Iterable[str] = (),
        device: str | None = None,
    ) -> int:
        """A visitor pass's fields, logged (the pass itself is the token `gatectl central pass
        issue` signs); ``building`` / ``device``: where its revocation must reach (default: the
        site). A revoked id is never active again: devices keep revocations for good."""
        if valid_until <= valid_from:
            raise RegistryError("a pass must end after it starts")
        if building is not None and device is not None:
            raise RegistryError("a pass is for a building or for one device, not both")
        if not is_token(pass_id):
            raise RegistryError("a pass id is at most 64 of A-Z a-z 0-9 _.:- (the token's)")
        with self._write() as tx:
            row = tx.execute("SELECT version, status FROM passes WHERE id = ?", [pass_id])
            if row and row[0][1] == "revoked":
                raise RegistryError(f"pass {pass_id}: revoked; a new pass needs a new id")
            version = max(_now_ms(self.clock), row[0][0] + 1 if row else 0)
            doors = list(doors)
            tx.execute(
                "INSERT INTO passes (id, site, building, holder, host_uid, valid_from, "
                "valid_until, doors, status, version, device) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                "'active', ?, ?) ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, "
                "valid_from = excluded.valid_from, valid_until = excluded.valid_until, doors = "
                "excluded.doors, status = 'active', version = excluded.version, building = "
                "excluded.building, device = excluded.device",
                [pass_id, site, building, holder, host_uid, valid_from, valid_until,
                 json.dumps(doors), version, device],
            )
            self._send(tx, site, "pass", pass_id, version,
                       {"v": 1, "type": "pass", "op": "upsert", "uid": pass_id,
                        "version": version, "valid_from": valid_from,
                        "valid_until": valid_until, "doors": doors, "host": host_uid}, ["*"])
        return version

    def revoke_pass(self, pass_id: str) -> int:
        """Refuse the pass at every door it may open: a signed revocation to the devices of its
        scope (kept by them for good); the version."""
        with self._write() as tx:
            row = tx.execute("SELECT site, version, building, device FROM passes WHERE id = ?",
                             [pass_id])
            if not row:
                raise RegistryError(f"pass {pass_id}: not in the registry")
            site, held, building, device = row[0]
            version = max(_now_ms(self.clock), held + 1)
            tx.execute("UPDATE passes SET status = 'revoked', version = ? WHERE id = ?",
                       [version, pass_id])
            self._send(tx, site, "pass", pass_id, version, _revocation(pass_id, version),
                       self._scope(tx, site, building, device))
        return version

    def _resync_lists(self, tx: Tx, site: str, device: str) -> int:
        """A device's plate lists and pass revocations, signed for it: the current entry of
        every plate meant for it, a removal for every other plate of the site (it may hold a
        stale one), the revocation of every pass meant for it that has not expired; the number
        sent."""
        held = tx.execute("SELECT building FROM devices WHERE site = ? AND device = ?",
                          [site, device])
        building = held[0][0] if held else None

        def mine(b: str | None, d: str | None) -> bool:
            return d == device if d is not None else b is None or b == building

        sent = 0
        for plate, version, b, d, deleted in tx.execute(
            "SELECT plate, version, building, device, deleted FROM plates WHERE site = ?", [site]
        ):
            body = (self._plate_change(tx, site, plate) if not deleted and mine(b, d)
                    else _plate_removal(plate, version))
            self._send(tx, site, "plate", plate, version, body, [device])
            sent += 1
        for pass_id, version, b, d in tx.execute(
            "SELECT id, version, building, device FROM passes WHERE site = ? AND "
            "status = 'revoked' AND valid_until > ?", [site, self.clock()]
        ):
            if mine(b, d):
                self._send(tx, site, "pass", pass_id, version, _revocation(pass_id, version),
                           [device])
                sent += 1
        return sent

    def passes(self, site: str) -> list[dict[str, Any]]:
        cols = ("id", "building", "device", "holder", "host_uid", "valid_from", "valid_until",
                "doors", "status", "version")
        return [dict(zip(cols, r)) | {"doors": json.loads(r[7])} for r in self.db.query(
            f"SELECT {', '.join(cols)} FROM passes WHERE site = ? ORDER BY id", [site])]


def _plate_removal(plate: str, version: int) -> dict:
    return {"v": 1, "type": "plate", "op": "delete", "plate": plate, "version": version}


def _revocation(pass_id: str, version: int) -> dict:
    return {"v": 1, "type": "pass", "op": "revoke", "pass_id": pass_id, "version": version}
