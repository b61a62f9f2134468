"""A resident's credentials besides the face - cards, the PIN hash, the TOTP secret - replicate
between devices through the centre like templates: set on device A, they go up as a request
whatever the face consent, come back signed by the centre and open device B's door through its
access point (the path an OSDP reader's card takes). Real Mosquitto (tests/broker.py), real
SQLite stores, the reference relay and the registry (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import json
import logging
import threading
import time

import paho.mqtt.client as mqtt
import pyotp
import pytest

from gatectl.access.pins import hash_pin
from gatectl.central.registry import RegistryError
from gatectl.central.tool import Central
from gatectl.config.sync import SyncConfig
from gatectl.domain.credentials import Presented
from gatectl.sync.inbound import Refused, enrollment
from gatectl.sync.signing import generate_private_key, public_key_b64, sign_change
from gatectl.sync.topics import Topics
from tests.central_pg import pg_cluster  # noqa: F401 - the session fixture
from tests.conftest import wait_for
from tests.test_central import db_url, key, worker  # noqa: F401 - the registry's fixtures
from tests.test_enroll_authority import raw_publish, refused
from tests.test_sync import CENTRAL_KEY, CENTRAL_KID, SITE, Device, sync_cfg

CARD, BITS = "1A2B3C4", 26


def door_device(tmp, broker, device: str, keys: dict[str, str] | None = None) -> Device:
    """A device with one door whose readers take a card, a PIN alone or a resident's code;
    returned once the broker has its subscriptions (its retained online status is published
    after them on the same connection), so no change published after this can miss it."""
    cfg = sync_cfg(broker, device, keys)
    cfg |= {"outputs": [{"name": "door"}], "doors": [{"name": "front", "output": "door"}],
            "access": {"doors": [{"door": "front", "policy": "card|pin|totp"}]}}
    dev = Device(tmp, cfg)
    seen = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_message = lambda cl, u, m: json.loads(m.payload).get("state") == "online" and seen.set()
    c.connect(broker.host, broker.port)
    c.subscribe(Topics("gatectl", SITE, device).status, 1)
    c.loop_start()
    try:
        assert seen.wait(15), f"{device} subscribed"
    finally:
        c.disconnect()
        c.loop_stop()
    return dev


def present(dev: Device, kind: str, value: str, bits: int | None = None):
    dev.app.directory.refresh()
    return dev.app.access_point("front").present(
        Presented(kind=kind, door="front", source="reader-1", value=value, t=time.monotonic(),
                  bits=bits))


def unlocks(dev: Device) -> int:
    return len(dev.app.boards["main"].history)


def card_only_resident(dev: Device, card: str = CARD) -> tuple[int, str]:
    """A resident who refused face recognition and has only a card: (id, uid)."""
    store = dev.app.store
    r = store.add_resident("Card Holder", "3-303", [], "none")
    store.refuse_face(r.id)
    store.add_card(r.id, card, BITS)
    return r.id, r.uid


def holds(dev: Device, uid: str, card: str = CARD) -> bool:
    r = dev.app.store.resident_by_uid(uid)
    return r is not None and dev.app.store.card_owner(card, BITS) == r.id


# ---- through the reference relay ----------------------------------------------------------------

def test_a_card_pin_and_code_set_on_device_a_open_the_door_on_device_b(tmp_path, broker):
    relay = Central(SyncConfig(enabled=True, host=broker.host, port=broker.port), SITE, relay=True,
                    key=CENTRAL_KEY, kid=CENTRAL_KID, replicate="site")
    relay.start()
    a = door_device(tmp_path / "a", broker, "dev-a")
    b = door_device(tmp_path / "b", broker, "dev-b")
    try:
        rid, uid = card_only_resident(a)
        a.app.store.set_pin_hash(rid, hash_pin("2468"))
        secret = pyotp.random_base32()
        a.app.store.set_totp_secret(rid, secret)
        wait_for(lambda: holds(b, uid) and b.app.store.totp_secret(
            b.app.store.resident_by_uid(uid).id) == secret and b.app.store.pin_hashes(), 30,
            "the card, PIN and secret on device B")
        rb = b.app.store.resident_by_uid(uid)
        assert rb.name == "Card Holder" and b.app.store.template_count(("resident", rb.id)) == 0
        assert b.app.store.pin_hashes(rb.id)[rb.id] == a.app.store.pin_hashes(rid)[rid]  # the hash
        # a new resident on B with no face at all: the card, the PIN and the code open B's door
        assert present(b, "card", CARD, BITS).granted
        assert not present(b, "pin", "1111").granted
        out = present(b, "pin", "2468")
        assert out.granted and out.resident_id == rb.id
        assert present(b, "totp", f"GT1:{uid}:{pyotp.TOTP(secret).now()}").granted
        assert unlocks(b) >= 3
        granted = [e for e in b.app.store.events(kind="access") if e.decision == "granted"]
        assert {e.credential for e in granted} == {"card", "pin", "totp"}
        assert {e.resident_id for e in granted} == {rb.id}

        # the change's set replaces B's: the card removed on A stops opening B's door
        a.app.store.add_card(rid, "77", BITS)
        a.app.store.remove_card(rid, CARD, BITS)
        wait_for(lambda: holds(b, uid, "77") and not b.app.store.card_owner(CARD, BITS), 30,
                 "the new card set on device B")
        assert present(b, "card", CARD, BITS).reason == "unknown card"

        # a wiped device asks the relay for everything: the cards come back with the resident
        c = door_device(tmp_path / "c", broker, "dev-c")
        try:
            c.app.store.enqueue("resync", "dev-c")
            wait_for(lambda: holds(c, uid, "77"), 30, "the card on the resynced device")
            assert present(c, "card", "77", BITS).granted
        finally:
            c.close()
    finally:
        a.close()
        b.close()
        relay.stop()


# ---- only what the centre signed ---------------------------------------------------------------

def signed(change: dict, site: str = SITE, by=CENTRAL_KEY) -> dict:
    return sign_change(by, CENTRAL_KID, change, site=site)


def test_only_a_signed_change_adds_a_card_and_a_forged_one_changes_nothing(tmp_path, broker,
                                                                          caplog):
    dev = door_device(tmp_path / "d", broker, "dev-a")
    try:
        topic = f"gatectl/v1/{SITE}/enroll"
        v = int(time.time() * 1000)
        base = {"v": 1, "type": "resident", "op": "upsert", "uid": "u-card", "version": v,
                "name": "Card Holder", "unit": "3-303", "status": "active", "origin": "central",
                "cards": [{"number": "C0FFEE", "bits": BITS}]}
        raw_publish(broker, topic, signed(base))
        wait_for(lambda: holds(dev, "u-card", "C0FFEE"), 15, "the signed card applied")
        assert present(dev, "card", "C0FFEE", BITS).granted

        more = {**base, "version": v + 1, "cards": [{"number": "BADC0DE", "bits": 32}],
                "pin": hash_pin("1234")}
        tampered = signed({**base, "version": v + 1})
        tampered["cards"] = more["cards"]  # after signing
        forged = sign_change(generate_private_key(), CENTRAL_KID, more, site=SITE)
        for body in (more, forged, tampered):
            raw_publish(broker, topic, body)
        refused(dev, 3)
        store = dev.app.store
        r = store.resident_by_uid("u-card")
        assert store.version_of("u-card")[1] == v
        assert [c["number"] for c in store.cards_of(r.id)] == ["C0FFEE"] and not store.pin_hashes()
        assert present(dev, "card", "BADC0DE", 32).reason == "unknown card"
        assert present(dev, "card", "C0FFEE", BITS).granted

        # signed, a card another resident holds here: the centre's set decides (a refusal would
        # refuse a suspension in the same change too), and the move is logged
        with caplog.at_level(logging.WARNING, logger="gatectl.sync"):
            raw_publish(broker, topic, signed({**base, "uid": "u-twin", "version": v + 2,
                                               "status": "suspended"}))
            # logged after the commit: wait for the line, not for the row
            wait_for(lambda: any("by the centre's signed change" in m.getMessage()
                                 for m in caplog.records), 15, "the move logged")
        twin = store.resident_by_uid("u-twin")
        assert twin.status == "suspended" and store.card_owner("C0FFEE", BITS) == twin.id
        assert not store.cards_of(r.id)
        assert any(f"resident #{r.id} here is resident #{twin.id}'s" in m.getMessage()
                   for m in caplog.records)
        out = present(dev, "card", "C0FFEE", BITS)
        assert not out.granted and out.resident_id == twin.id and "suspended" in out.reason
    finally:
        dev.close()


@pytest.mark.parametrize("cards, pin", [
    ([{"number": "01A", "bits": 26}], None),  # a leading zero: not the stored form
    ([{"number": "1a", "bits": 26}], None),  # lower case
    ([{"number": "FFFF", "bits": 8}], None),  # more bits than its format
    ([{"number": "1", "bits": 0}], None),
    ([{"number": "1", "bits": 300}], None),
    ([{"number": f"{i + 1:X}", "bits": 26} for i in range(17)], None),  # more than MAX_CARDS
    ([], "1234"),  # a clear PIN, never stored
    ([], "scrypt$16384$8$1$" + "A" * 500),
    ([], "scrypt$16384$8$1$c2FsdA==$ZGlnZXN0"),  # short salt and digest: not our form
])
def test_the_schema_refuses_cards_and_pins_not_in_the_stores_form(cards, pin):
    body = {"v": 1, "type": "resident", "op": "upsert", "uid": "u", "version": 1, "cards": cards}
    if pin is not None:
        body["pin"] = pin
    with pytest.raises(Refused, match="malformed"):
        enrollment(json.dumps(body).encode(), 5)
    ok = {**body, "cards": [{"number": "1A2B3C4", "bits": 26}], "pin": hash_pin("1234")}
    assert enrollment(json.dumps(ok).encode(), 5)["cards"] == ok["cards"]


def test_the_largest_change_fits_the_default_enrollment_size():
    import numpy as np

    from gatectl.sync.enrollment import encode_templates
    from gatectl.sync.inbound import MAX_CARDS, enroll_limit

    templates = encode_templates([(np.ones(128, "f4"), 0.9)] * 10, "m" * 64)
    body = signed({"v": 1, "type": "resident", "op": "upsert", "uid": "u" * 64,
                   "version": 2**52, "name": "\u738b" * 200, "unit": "\u5355" * 64,
                   "status": "suspended", "origin": "d" * 64, "templates": templates,
                   "cards": [{"number": "F" * 64, "bits": 256}] * MAX_CARDS,
                   "pin": hash_pin("1234"), "totp": "A" * 128})
    payload = json.dumps(body).encode()
    assert len(payload) <= enroll_limit(10, 128)
    assert enrollment(payload, 10)["cards"] == body["cards"]


# ---- through the registry --------------------------------------------------------------------

def test_the_registry_sends_a_card_site_wide_and_refuses_it_for_another_resident(
        tmp_path, broker, worker, key, caplog):
    reg = worker.registry
    reg.add_device(SITE, "dev-a")
    reg.add_device(SITE, "dev-b")
    pub = {"k1": public_key_b64(key)}
    a = door_device(tmp_path / "a", broker, "dev-a", pub)
    b = door_device(tmp_path / "b", broker, "dev-b", pub)
    try:
        # no consent to replicate the face: `local`, recorded as `none` (the centre holds no
        # face); the card goes site-wide all the same
        rid, uid = card_only_resident(a)
        a.app.store.set_pin_hash(rid, hash_pin("8642"))
        wait_for(lambda: holds(b, uid) and b.app.store.pin_hashes(), 30, "the card on device B")
        held = reg.resident(uid)
        assert held["owner"] == "dev-a" and held["consent"] == "none" and held["templates"] == 0
        assert reg.credentials_of(uid)["cards"] == [{"number": CARD, "bits": BITS}]
        assert present(b, "card", CARD, BITS).granted
        assert present(b, "pin", "8642").granted
    finally:
        a.close()
        b.close()
    # a device that has not heard of that resident gives the same card to someone else
    c = door_device(tmp_path / "c", broker, "dev-c", pub)
    try:
        with caplog.at_level(logging.WARNING, logger="gatectl.sync"):
            _, other_uid = card_only_resident(c)
            wait_for(lambda: any("already belongs to another resident" in r.getMessage()
                                 for r in caplog.records), 30, "the centre's reason in C's log")
        assert reg.resident(other_uid) is None
        assert not worker.db.query("SELECT 1 FROM changes WHERE ref = ?", [other_uid])
        assert reg.credentials_of(uid)["cards"] == [{"number": CARD, "bits": BITS}]
        assert c.client.counters["requests_refused"] >= 1
    finally:
        c.close()


def test_a_wiped_device_gets_its_residents_cards_back_by_resync(tmp_path, broker, worker, key):
    reg = worker.registry
    reg.add_device(SITE, "dev-a")
    pub = {"k1": public_key_b64(key)}
    secret = pyotp.random_base32()
    reg.enroll(SITE, "u-cards", name="Card Holder", unit="3-303", consent="none",
               home_device="dev-z",
               credentials=[("card", f"{CARD}/{BITS}"), ("card", "5/26"), ("totp", secret)])
    wiped = door_device(tmp_path / "wiped", broker, "dev-a", pub)
    try:
        assert not wiped.app.store.residents()
        wiped.app.store.enqueue("resync", "dev-a")
        wait_for(lambda: holds(wiped, "u-cards") and holds(wiped, "u-cards", "5"), 30,
                 "the cards back by resync")
        assert present(wiped, "card", CARD, BITS).granted
        assert present(wiped, "totp", f"GT1:u-cards:{pyotp.TOTP(secret).now()}").granted
        # the operator takes a card back: the signed change removes it on the device too
        reg.enroll(SITE, "u-cards", name="Card Holder", unit="3-303", consent="none",
                   home_device="dev-z", credentials=[("card", "5/26"), ("totp", secret)])
        wait_for(lambda: not wiped.app.store.card_owner(CARD, BITS), 30, "the card taken back")
        assert present(wiped, "card", CARD, BITS).reason == "unknown card"
        assert present(wiped, "card", "5", BITS).granted
        with pytest.raises(RegistryError, match="already belongs to another resident"):
            reg.enroll(SITE, "u-else", name="E", unit="1", consent="site",
                       credentials=[("card", "5/26")])
        assert reg.resident("u-else") is None
        # erased at the centre: the signed delete reaches the device that held them for a card
        reg.delete_resident("u-cards")
        wait_for(lambda: wiped.app.store.resident_by_uid("u-cards") is None, 30, "the erasure")
        assert present(wiped, "card", "5", BITS).reason == "unknown card"
    finally:
        wiped.close()


def test_an_ack_carries_the_refusal_reason_and_junk_in_it_is_refused():
    from gatectl.sync.delivery import Ack, BadAck, parse_ack

    ack = Ack(requests=[7], refused={7: "card 5/26 already belongs to another resident"})
    assert parse_ack(ack.payload()).refused == ack.refused
    assert parse_ack(Ack(requests=[7]).payload()).refused == {}
    for junk in ([{"seq": 7}], [{"seq": "7", "why": "x"}], [{"seq": 7, "why": "a\nb"}],
                 [{"seq": 7, "why": "x" * 300}], {"7": "x"}):
        with pytest.raises(BadAck):
            parse_ack(json.dumps({"v": 1, "requests": [7], "refused": junk}).encode())


def test_the_credentials_migration_keeps_held_rows_on_either_engine(db_url, tmp_path, monkeypatch):
    """c004 on a registry that already held credentials (the c001 table): each row gets its
    resident's site, a card two residents of a site shared keeps one holder, and from then on
    the index refuses a second holder."""
    import sqlite3

    from gatectl.central import migrations
    from gatectl.central.storage import StorageError

    full = list(migrations.MIGRATIONS)
    monkeypatch.setattr(migrations, "MIGRATIONS", full[:2])
    db = migrations.open_database(db_url, tmp_path)
    try:
        with db.write() as tx:
            for uid in ("u1", "u2"):
                tx.execute("INSERT INTO residents (uid, site, owner, version) "
                           "VALUES (?, ?, 'c', 1)", [uid, SITE])
                tx.execute("INSERT INTO credentials VALUES (?, 'card', '5/26')", [uid])
        monkeypatch.setattr(migrations, "MIGRATIONS", full)
        assert migrations.migrate(db) == [n for n, _ in full[2:]]
        assert db.query("SELECT uid, site FROM credentials") == [("u1", SITE)]
        with pytest.raises((StorageError, sqlite3.IntegrityError)), db.write() as tx:
            tx.execute("INSERT INTO credentials (uid, kind, ref, site) VALUES ('u2', 'card', "
                       "'5/26', ?)", [SITE])
    finally:
        db.close()


def test_the_registry_refuses_credentials_a_device_would_refuse(worker):
    """The operator's credentials are checked by the devices' own schema (`Credentials`): what a
    device would refuse never reaches the signed log (a secret with a final newline included)."""
    reg, good = worker.registry, pyotp.random_base32()
    bad = [[("card", "04A1B2/26")], [("card", "4A1B2")], [("card", "FFFFFFFF/26")],
           [("pin", "1234")], [("pin", hash_pin("1234") + "\n")], [("totp", good + "\n")],
           [("totp", good.lower())], [("pin", hash_pin("1")), ("pin", hash_pin("2"))],
           [("face", "x")]]
    for creds in bad:
        with pytest.raises(RegistryError):
            reg.enroll(SITE, "u-bad", name="B", unit="1", consent="site", credentials=creds)
        assert reg.resident("u-bad") is None, creds
    reg.enroll(SITE, "u-ok", name="O", unit="1", consent="site",
               credentials=[("card", "4A1B2/26"), ("pin", hash_pin("1234")), ("totp", good)])
    held = reg.credentials_of("u-ok")
    assert held["cards"] == [{"number": "4A1B2", "bits": 26}] and held["totp"] == good
