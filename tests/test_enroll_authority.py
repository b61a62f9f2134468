"""Enrollment authority against a real Mosquitto (tests/broker.py): every change that can grant
or deny access must carry the centre's Ed25519 signature over uid, version, op, type and its
site/device target, with a bounded version, and is checked before it touches the store. A
device's own changes go up as requests that the centre decides and signs; a device cannot make
another device change its residents. Protocol code finds residents by uid only, and a template
arriving from the centre passes the same duplicate-face rule as a local enrollment."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gatectl.config.sync import SyncConfig
from gatectl.domain.consent import Consent
from gatectl.people.enroll import Sample
from gatectl.central.tool import Central
from gatectl.sources.media import read_image
from gatectl.sync.enrollment import MAX_VERSION, encode_templates
from gatectl.sync.signing import (
    generate_private_key,
    public_key_b64,
    save_private_key,
    sign_change,
    sign_command,
)
from gatectl.sync.topics import Topics
from tests.broker import Broker
from tests.conftest import FACES, run_cli, wait_for
from tests.test_sync import SITE, Device, sync_cfg, toml

KID = "k1"


def raw_publish(broker: Broker, topic: str, payload: bytes | dict, *, retain: bool = False,
                props: Properties | None = None) -> None:
    """What an attacker with broker access sends: bytes, no signature unless the test adds one."""
    data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        c.publish(topic, data, qos=1, retain=retain, properties=props).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def templates(app, photo: str) -> list[dict]:
    t = app.enroller().templates([Sample(photo, read_image(FACES / photo))])
    return encode_templates(t, app.embedder.model_id)


def change(uid: str, version: int, op: str = "upsert", kind: str = "resident", **fields) -> dict:
    return {"v": 1, "type": kind, "op": op, "uid": uid, "version": version, "origin": "central", **fields}


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def key():
    return generate_private_key()


@pytest.fixture
def dev(tmp_path, broker, key):
    d = Device(tmp_path / "d", sync_cfg(broker, "dev-a", {KID: public_key_b64(key)}))
    yield d
    d.close()


def refused(dev: Device, n: int = 1) -> None:
    """``n`` enrollment messages refused: by the authority (signature, version) or by the schema."""
    def count() -> int:
        schema = sum(v for k, v in dev.client.refusals.counts().items() if k.startswith("refused_enroll") and not k.endswith("_rejected"))
        return dev.client.counters["enroll_rejected"] + schema
    wait_for(lambda: count() >= n, 10, f"{n} refusal(s)")


# ---- unsigned, badly signed, mistargeted, impossible versions -----------------------------------

CASES = ["unsigned", "unknown_key", "bad_signature", "wrong_site", "wrong_device", "tampered_uid",
         "tampered_version", "op_flipped", "version_future", "version_int64_max", "version_2_64",
         "version_zero", "version_float", "not_json", "kid_not_text"]


@pytest.mark.parametrize("case", CASES)
def test_a_change_not_signed_by_the_centre_for_this_device_is_refused_and_never_applied(
        dev, broker, key, case, caplog):
    """The stranger's own template, unsigned, opened the door 0.9 s later (issue 12)."""
    caplog.set_level(logging.INFO, "gatectl.sync")
    t = Topics("gatectl", SITE, "dev-a")
    good = change("u-stranger", now_ms(), name="Stranger", unit="0-0", status="active",
                  templates=templates(dev.app, "lin_manuel_miranda_01.png"))
    topic = t.enroll_site
    if case == "unsigned":
        body = good
    elif case == "unknown_key":
        body = sign_change(key, "k9", good, site=SITE)
    elif case == "bad_signature":
        body = sign_change(generate_private_key(), KID, good, site=SITE)
    elif case == "wrong_site":
        body = sign_change(key, KID, good, site="other-site")
    elif case == "wrong_device":
        body, topic = sign_change(key, KID, good, site=SITE, device="dev-b"), t.enroll_device
    elif case == "tampered_uid":
        body = {**sign_change(key, KID, good, site=SITE), "uid": "u-other"}
    elif case == "tampered_version":
        body = {**sign_change(key, KID, good, site=SITE), "version": good["version"] + 1}
    elif case == "op_flipped":
        body = {**sign_change(key, KID, change("u-stranger", now_ms(), "delete"), site=SITE), "op": "upsert",
                "templates": good["templates"], "name": "Stranger", "unit": "0-0"}
    elif case == "version_future":
        body = sign_change(key, KID, {**good, "version": now_ms() + 3_600_000}, site=SITE)
    elif case == "version_int64_max":
        body = sign_change(key, KID, {**good, "version": 2**63 - 1}, site=SITE)
    elif case == "version_2_64":
        body = sign_change(key, KID, {**good, "version": 2**64}, site=SITE)
    elif case == "version_zero":
        body = sign_change(key, KID, {**good, "version": 0}, site=SITE)
    elif case == "version_float":
        body = sign_change(key, KID, {**good, "version": float(good["version"])}, site=SITE)
    elif case == "kid_not_text":
        body = {**sign_change(key, KID, good, site=SITE), "kid": ["k1"]}
    else:
        body = b'{"v": 1, "type": "resident", "op": "upsert", "uid": "u-stranger", '
    raw_publish(broker, topic, body)
    refused(dev)
    assert dev.app.store.version_of("u-stranger") == (None, 0)
    assert dev.app.store.residents() == [] and dev.app.store.tombstone_version("u-stranger") is None
    # the counter moves just before the line is written (another thread): wait for the line
    lines = wait_for(lambda: [r.getMessage() for r in caplog.records if "refused" in r.getMessage()], 10,
                     "the refusal's log line")
    assert len(lines) == 1 and "\n" not in lines[0], lines

    # the same change, signed by the pinned key for this site, is applied: the refusal was the signature
    ok = sign_change(key, KID, {**good, "version": now_ms()}, site=SITE)
    raw_publish(broker, t.enroll_site, ok)
    wait_for(lambda: dev.app.store.version_of("u-stranger")[0] == "resident", 10, "the signed change")


def test_a_signature_covers_watchlist_and_status_changes_too(dev, broker, key):
    """The enrollment channel overrode the signed watchlist.add and resident.status commands."""
    r = dev.app.enroller().enroll_resident("Rose Leslie", "2-302", [Sample("r", read_image(FACES / "rose_leslie_01.jpg"))])
    t = Topics("gatectl", SITE, "dev-a")
    before = dev.app.store.templates_of(("resident", r.id))
    takeover = change(r.uid, now_ms(), name="Rose Leslie", unit="2-302", status="active",
                      templates=templates(dev.app, "lin_manuel_miranda_01.png"))
    raw_publish(broker, t.enroll_site, takeover)  # a stranger's face under Rose's uid
    raw_publish(broker, t.enroll_site, change(r.uid, now_ms(), name="Rose Leslie", unit="2-302", status="suspended"))
    raw_publish(broker, t.enroll_device, change("w-1", now_ms(), kind="watchlist", name="Someone", reason="x",
                                               templates=templates(dev.app, "obama_01.jpg")))
    refused(dev, 3)
    after = dev.app.store.templates_of(("resident", r.id))
    assert len(after) == len(before) and float(after[0][0] @ before[0][0]) > 0.9999
    assert dev.app.store.resident(r.id).status == "active" and dev.app.store.watch_entries() == []


def test_a_retained_malicious_enrollment_is_refused_by_a_device_that_starts_later(tmp_path, broker, key):
    t = Topics("gatectl", SITE, "dev-late")
    scratch = Device(tmp_path / "scratch", sync_cfg(broker, "dev-scratch"))
    tpl = templates(scratch.app, "lin_manuel_miranda_01.png")
    scratch.close()
    raw_publish(broker, t.enroll_site, change("u-ret", now_ms(), name="R", unit="0", templates=tpl), retain=True)
    raw_publish(broker, t.enroll_device, sign_change(key, KID, change("u-ret2", now_ms(), name="R", unit="0",
                                                                      templates=tpl), site="elsewhere"), retain=True)
    late = Device(tmp_path / "late", sync_cfg(broker, "dev-late", {KID: public_key_b64(key)}))
    try:
        refused(late, 2)
        assert late.app.store.residents() == []
    finally:
        late.close()
        raw_publish(broker, t.enroll_site, b"", retain=True)
        raw_publish(broker, t.enroll_device, b"", retain=True)


# ---- versions: bounded, refused with a reason, never crash the CLI --------------------------------

def test_impossible_versions_are_refused_and_residents_remove_still_works(tmp_path, broker, key):
    cfg = sync_cfg(broker, "dev-v", {KID: public_key_b64(key)})
    cfg_file = tmp_path / "dev.toml"
    cfg_file.write_text(toml(cfg))
    dev = Device(tmp_path / "state", cfg)
    t = Topics("gatectl", SITE, "dev-v")
    try:
        r = dev.app.enroller().enroll_resident("Kit Harington", "2-301",
                                              [Sample("k", read_image(FACES / "kit_harington_01.jpeg"))])
        held = dev.app.store.version_of(r.uid)
        # a delete with version 2**62 erased a resident and blocked re-adding; 2**63-1 made
        # `residents remove` crash with OverflowError
        for version in (2**62, 2**63 - 1):
            raw_publish(broker, t.enroll_site, sign_change(key, KID, change(r.uid, version, "delete"), site=SITE))
            raw_publish(broker, t.enroll_site, sign_change(key, KID, change(r.uid, version, name="K", unit="1",
                                                                           status="suspended"), site=SITE))
        refused(dev, 4)
        assert dev.app.store.version_of(r.uid) == held and dev.app.store.resident(r.id).status == "active"
        # a signed command carries a version too: bounded the same way
        cmd = sign_command(key, KID, "dev-v", "resident.status", {"uid": r.uid, "status": "suspended",
                                                                    "version": 2**63 - 1}, now=time.time())
        assert "version" in dev.client.on_command(json.dumps(cmd).encode())["error"]
        assert dev.app.store.resident(r.id).status == "active"
    finally:
        dev.close()
    res = run_cli("residents", "remove", str(r.id), config=cfg_file, data=tmp_path / "state")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "removed resident" in res.stdout


def test_a_store_poisoned_by_an_older_version_is_repaired_at_start(tmp_path):
    """Versions above MAX_VERSION (year 2100 in ms) can only come from the unsigned channel of
    an older gatectl: the store resets them, so the centre can correct those records again."""
    from gatectl.store import Store

    store = Store(tmp_path / "g.db")
    r = store.add_resident("A", "1", [(np.ones(128, "f4") / np.sqrt(128), 0.9)], "m")
    store.db.execute("UPDATE residents SET version = ? WHERE id = ?", [2**63 - 1, r.id])
    store.db.execute("INSERT INTO tombstones VALUES ('u-gone', 'resident', ?, 0)", [2**62])
    files = store.remove_resident(r.id)  # never an OverflowError
    assert files == [] and store.tombstone_version(r.uid) == MAX_VERSION
    store.db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm006_authority'")  # as before this version
    store.close()
    store = Store(tmp_path / "g.db")
    assert store.tombstone_version("u-gone") == 0 and store.tombstone_version(r.uid) == 0
    store.close()


# ---- uid only, and the duplicate-face rule for every template that arrives ----------------------

def test_a_centre_delete_for_an_id_or_a_name_erases_nobody(dev, broker, key):
    e = dev.app.enroller()
    a = e.enroll_resident("Barack Obama", "1-101", [Sample("o", read_image(FACES / "obama_01.jpg"))])
    b = e.enroll_resident("Wang Fang", "3-2-1201", [Sample("b", read_image(FACES / "biden_01.jpg"))])
    assert b.id == 2
    t = Topics("gatectl", SITE, "dev-a")
    for uid in ("2", "Wang Fang", str(a.id)):
        raw_publish(broker, t.enroll_site, sign_change(key, KID, change(uid, now_ms(), "delete"), site=SITE))
    refused(dev)  # "Wang Fang" is not even a uid (refused by the schema); "2" and "1" are tombstones only
    wait_for(lambda: dev.client.counters["enroll_applied"] >= 2, 10, "the other two deletions")
    assert [r.name for r in dev.app.store.residents()] == ["Barack Obama", "Wang Fang"]
    raw_publish(broker, t.enroll_site, sign_change(key, KID, change(b.uid, now_ms(), "delete"), site=SITE))
    wait_for(lambda: [r.name for r in dev.app.store.residents()] == ["Barack Obama"], 10, "the real deletion")


def test_a_centre_push_of_an_enrolled_face_under_another_name_is_refused(tmp_path, dev, broker, key):
    """`central enroll --name "Kit Central" --photo <photo of a suspended resident>` was applied."""
    kit = dev.app.enroller().enroll_resident("Kit Harington", "2-301",
                                            [Sample("k", read_image(FACES / "kit_harington_01.jpeg"))])
    dev.app.store.set_status(kit.id, "suspended")
    keyfile = tmp_path / "central.key"
    save_private_key(key, keyfile)
    r = run_cli("central", "enroll", "--site", SITE, "--port", str(broker.port), "--key", str(keyfile),
                "--kid", KID, "--name", "Kit Central", "--unit", "9-9", "--photo", str(FACES / "kit_harington_02.jpeg"))
    assert r.returncode == 0, r.stderr
    uid = json.loads(r.stdout)["uid"]
    refused(dev)
    assert dev.app.store.version_of(uid) == (None, 0)
    assert [(x.name, x.status) for x in dev.app.store.residents()] == [("Kit Harington", "suspended")]
    # the same person's own record may be updated with their own face
    t = Topics("gatectl", SITE, "dev-a")
    upd = change(kit.uid, now_ms(), name="Kit Harington", unit="2-302", status="active",
                 templates=templates(dev.app, "kit_harington_02.jpeg"))
    raw_publish(broker, t.enroll_site, sign_change(key, KID, upd, site=SITE))
    wait_for(lambda: dev.app.store.resident(kit.id).unit == "2-302", 10, "the update of Kit's own record")


# ---- a device's own changes are requests; the centre decides and signs ----------------------------

@pytest.fixture
def signing_centre(broker, key):
    c = Central(SyncConfig(enabled=True, host=broker.host, port=broker.port), SITE, relay=True,
                client_id="central-auth", key=key, kid=KID)
    c.start()
    yield c
    c.stop()


def test_device_enrollments_are_requests_the_centre_signs_and_no_device_changes_another(
        tmp_path, broker, key, signing_centre):
    pub = {KID: public_key_b64(key)}
    seen: list[dict] = []
    obs = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    obs.on_message = lambda c, u, m: seen.append(json.loads(m.payload))
    obs.on_subscribe = lambda *_: subscribed.set()
    obs.connect(broker.host, broker.port)
    obs.subscribe(f"gatectl/v1/{SITE}/dev-a/enroll", qos=1)
    obs.loop_start()
    assert subscribed.wait(15), "observer subscribed"  # before anything is published
    a = Device(tmp_path / "a", sync_cfg(broker, "dev-a", pub))
    b = Device(tmp_path / "b", sync_cfg(broker, "dev-b", pub))
    try:
        r = a.app.enroller().enroll_resident("Barack Obama", "1-101", [Sample("o", read_image(FACES / "obama_01.jpg"))], Consent("site", "test"))
        assert a.app.store.resident(r.id).name == "Barack Obama"  # applied at once on the operator's device
        published = wait_for(lambda: [m for m in seen if m.get("uid") == r.uid], 15, "the signed change seen")
        assert all(m.get("sig") and m.get("kid") == KID and m.get("site") == SITE and m.get("device") == "dev-a"
                   for m in published)  # back to the device it came from, not the whole site
        wait_for(lambda: a.app.store.version_of(r.uid)[1] == published[-1]["version"], 15,
                 "the centre's signed version on device A")
        assert not b.app.store.find_residents(r.uid)

        # the centre's own resident: device A asks to erase it (its up topic), nobody erases it
        kit = change("u-kit", now_ms(), name="Kit Harington", unit="2-301", status="active",
                     templates=templates(b.app, "kit_harington_01.jpeg"))
        signing_centre.push(kit)
        wait_for(lambda: b.app.store.find_residents("u-kit") and a.app.store.find_residents("u-kit"), 15,
                 "the centre's resident on both devices")
        ta = Topics("gatectl", SITE, "dev-a")
        raw_publish(broker, ta.enroll_up, change("u-kit", now_ms() + 1000, "delete", origin="dev-a"))
        raw_publish(broker, ta.enroll_up, change("u-kit", now_ms() + 1000, name="Kit", unit="2-301",
                                                 status="suspended", origin="dev-a"))
        # device B's resident, asked to be suspended by device A
        rb = b.app.enroller().enroll_resident("Rose Leslie", "2-302", [Sample("r", read_image(FACES / "rose_leslie_01.jpg"))], Consent("site", "test"))
        wait_for(lambda: signing_centre.owners.get(rb.uid) == "dev-b", 15, "B's resident at the centre")
        raw_publish(broker, ta.enroll_up, change(rb.uid, now_ms() + 1000, name="Rose Leslie", unit="2-302",
                                                 status="suspended", origin="dev-b"))
        wait_for(lambda: signing_centre.counters["requests_refused"] >= 3, 10, "the centre's refusals")
        assert b.app.store.find_residents("u-kit")[0].status == "active"
        assert b.app.store.find_residents(rb.uid)[0].status == "active"

        # device A's own removal goes up as a request and becomes the centre's signed delete
        a.app.store.remove_resident(r.id)
        wait_for(lambda: signing_centre.residents[r.uid]["op"] == "delete", 15, "the centre's delete")
    finally:
        a.close()
        b.close()
        obs.disconnect()
        obs.loop_stop()


def test_an_enrollment_made_offline_applies_locally_and_goes_up_later(tmp_path, key):
    broker = Broker(tmp_path / "broker")
    broker.start()
    pub = {KID: public_key_b64(key)}
    a = Device(tmp_path / "a", sync_cfg(broker, "dev-a", pub))
    b = Device(tmp_path / "b", sync_cfg(broker, "dev-b", pub))
    centre = Central(SyncConfig(enabled=True, host=broker.host, port=broker.port), SITE, client_id="c-off",
                     key=key, kid=KID)
    try:
        broker.stop()
        r = a.app.enroller().enroll_resident("Rose Leslie", "2-302", [Sample("r", read_image(FACES / "rose_leslie_01.jpg"))], Consent("site", "test"))
        assert a.app.store.resident(r.id).status == "active"
        broker.start()
        centre.start()
        wait_for(lambda: centre.owners.get(r.uid) == "dev-a", 30, "the offline enrollment at the centre")
    finally:
        a.close()
        b.close()
        centre.stop()
        broker.stop(kill=True)


def test_a_response_topic_outside_the_devices_own_answers_is_not_used(dev, broker, key):
    """An unsigned command with ResponseTopic pointing at a device's events topic made the
    device write its refusal there (which killed the reference centre)."""
    t = Topics("gatectl", SITE, "dev-a")
    got: list[tuple[str, bytes]] = []
    obs = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    obs.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    obs.connect(broker.host, broker.port)
    obs.subscribe(f"gatectl/v1/{SITE}/#", qos=1)
    obs.loop_start()
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = Topics("gatectl", SITE, "dev-b").events
        props.CorrelationData = b"x"
        raw_publish(broker, t.cmd, {"v": 1, "cmd": "door.open", "args": {"door": "front"}, "device": "dev-a",
                                    "id": "c1", "nonce": "n1", "kid": KID, "iat": time.time(),
                                    "exp": time.time() + 30}, props=props)
        wait_for(lambda: any(topic == t.cmd_resp for topic, _ in got), 10, "the answer on the device's own topic")
        wait_for(lambda: any(topic == t.events for topic, _ in got), 10, "the device's own command event")
        assert not any(topic == Topics("gatectl", SITE, "dev-b").events for topic, _ in got)
        assert all("id" in json.loads(p) for topic, p in got if topic.endswith("/events"))
    finally:
        obs.disconnect()
        obs.loop_stop()


def test_sqlite_never_holds_an_impossible_version(tmp_path):
    from gatectl.store import Store

    store = Store(tmp_path / "g.db")
    with pytest.raises(ValueError):
        store.tombstone("u", "resident", 2**63 - 1)
    with pytest.raises(ValueError):
        store.replicate_resident("u", MAX_VERSION + 1, "n", "u", "active",
                                 [(np.ones(128, "f4") / np.sqrt(128), 0.9)], "m")
    assert store.version_of("u") == (None, 0)
    store.close()
    assert sqlite3.connect(tmp_path / "g.db").execute("SELECT count(*) FROM residents").fetchone()[0] == 0


def test_the_duplicate_rule_sees_each_change_of_a_resync_and_anyone_elses(tmp_path):
    """Changes applied one after the other (a resync) are checked against each other without a
    reload each; a resident added meanwhile by another connection (the CLI) is seen too."""
    from gatectl.people.directory import Directory
    from gatectl.store import Store
    from gatectl.sync.enrollment import DuplicateRule, EnrollRejected, Replicator

    rng = np.random.default_rng(7)

    def face() -> np.ndarray:
        v = rng.standard_normal(128).astype("f4")
        return v / np.linalg.norm(v)

    store = Store(tmp_path / "g.db")
    key = generate_private_key()
    rule = DuplicateRule(Directory(store, "m", 128), 0.4)
    rep = Replicator(store, "m", 128, lambda files: None, keys={KID: key.public_key()}, site=SITE, device="d",
                     duplicates=rule)
    faces = [face() for _ in range(3)]
    version = [now_ms()]

    def push(uid: str, vec: np.ndarray) -> str:
        version[0] += 1
        body = sign_change(key, KID, change(uid, version[0], name=uid, unit="1", templates=encode_templates(
            [(vec, 0.9)], "m")), site=SITE)
        return rep.receive(body)

    assert push("a", faces[0]) == "applied" and push("b", faces[1]) == "applied"
    reloads = rule.directory.rev
    with pytest.raises(EnrollRejected, match="already belongs to resident #1"):
        push("a-again", faces[0] + 0.01 * face())  # the first change of the batch, seen in place
    assert push("b", faces[1]) == "applied"  # b's own face for b: fine
    cli = Store(tmp_path / "g.db")  # another connection, as `gatectl enroll` would be
    other = cli.add_resident("C", "2", [(faces[2], 0.9)], "m")
    with pytest.raises(EnrollRejected, match=f"resident #{other.id}"):
        push("c-copy", faces[2])
    assert rule.directory.rev > reloads
    cli.close()
    store.close()


def test_a_restarted_centre_remembers_who_added_each_resident(tmp_path, broker, key):
    """Without its state a restarted centre would take device A's request for the centre's own
    resident as a new resident, and publish A's face under that uid to every device."""
    cfg = SyncConfig(enabled=True, host=broker.host, port=broker.port)
    state = tmp_path / "central.db"
    c = Central(cfg, SITE, key=key, kid=KID, state=state)
    c.start()
    tpl = [{"model": "m", "dim": 4, "quality": 0.9, "emb": "AACAPwAAgD8AAIA/AACAPw=="}]
    c.push(change("u-kit", now_ms(), name="Kit", unit="1", status="active", templates=tpl))
    c.stop()
    c = Central(cfg, SITE, key=key, kid=KID, state=state)
    c.start()
    try:
        assert c.owners == {"u-kit": "central"} and c.residents["u-kit"]["sig"]
        ta = Topics("gatectl", SITE, "dev-a")
        raw_publish(broker, ta.enroll_up, change("u-kit", 1, name="Kit", unit="1", status="active", templates=tpl,
                                                 origin="dev-a", seq=7))
        raw_publish(broker, ta.enroll_up, change("u-new", 1, name="New", unit="2", status="active", templates=tpl,
                                                 origin="dev-a", seq=8))
        wait_for(lambda: c.counters["requests_refused"] == 1 and c.counters["requests_accepted"] == 1, 10,
                 "the decisions")
        assert c.owners == {"u-kit": "central", "u-new": "dev-a"}
    finally:
        c.stop()
