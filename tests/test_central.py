"""The centre (gatectl/central) against a real Mosquitto of the test's own and, parametrized,
on the SQLite default and on a real PostgreSQL (a throwaway cluster, tests/central_pg.py):
ingest workers on one shared subscription split the devices' events, a SIGKILLed worker loses
nothing and nothing is stored twice; malformed messages on every inbound topic are counted and
ignored; the registry signs and targets changes by consent, resyncs a wiped device and takes
the backfill of a device enrolled before sync was on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gatectl.access.pins import hash_pin
from gatectl.central.ingest import IngestWorker, stored_events
from gatectl.central.migrations import MIGRATIONS, migrate, open_database
from gatectl.central.registry import Registry
from gatectl.central.simulate import SimDevice
from gatectl.central.snapshots import FolderStore
from gatectl.config.central import load_central_config
from gatectl.sync.signing import generate_private_key, save_private_key, verify_change
from tests.broker import Broker
from tests.central_pg import pg_cluster  # noqa: F401 - the session fixture
from tests.conftest import REPO, wait_for

SITE = "garden"
TPL = [{"model": "m", "dim": 4, "quality": 0.9, "emb": "AACAPwAAgD8AAIA/AACAPw=="}]
OTHER = [{"model": "m", "dim": 4, "quality": 0.9, "emb": "AACAPwAAgL8AAIA/AACAvw=="}]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    return request.getfixturevalue("pg_cluster").new_database()


@pytest.fixture
def key(tmp_path):
    k = generate_private_key()
    save_private_key(k, tmp_path / "central.key")
    return k


def write_config(tmp_path: Path, broker: Broker, db_url: str, workers: int = 2, http_port: int = 0) -> Path:
    path = tmp_path / "central.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\ndatabase = "{db_url}"\nkey = "{tmp_path / "central.key"}"\n'
        f'kid = "k1"\n[broker]\nport = {broker.port}\n'
        f'[ingest]\nworkers = {workers}\nresync_every_s = 0\nsession_expiry_s = 600\n'
        # a share group of its own: a killed worker's session of an earlier test, still alive on
        # the broker, would otherwise take its share of this test's messages
        f'group = "t-{uuid.uuid4().hex[:12]}"\n'
        f'[http]\nport = {http_port}\n')
    return path


def spawn_worker(config: Path, wid: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gatectl", "central", "worker", "--config", str(config),
                             "--id", wid], cwd=REPO, stdout=subprocess.DEVNULL, stderr=(config.parent / f"{wid}.log").open("ab"))


def count(db, sql: str, params=()) -> int:
    return int(db.query(sql, params)[0][0])


def test_the_schema_migrates_once_on_either_engine(db_url, tmp_path):
    db = open_database(db_url, tmp_path)
    try:
        assert migrate(db) == []
        names = [r[0] for r in db.query("SELECT name FROM central_migrations ORDER BY name")]
        assert names == [n for n, _ in MIGRATIONS]
        assert count(db, "SELECT count(*) FROM events") == 0
    finally:
        db.close()


def test_two_shared_workers_split_the_load_and_a_sigkilled_one_loses_nothing(tmp_path, broker, key, db_url):
    config = write_config(tmp_path, broker, db_url)
    workers = {w: spawn_worker(config, w) for w in ("w1", "w2")}
    devices = [SimDevice(broker.host, broker.port, SITE, f"dev-{i}") for i in range(4)]
    db = open_database(db_url, tmp_path)
    sent: list[str] = []
    try:
        for d in devices:
            d.wait_ready()

        def both_subscribed() -> bool:  # statuses are shared round robin too: each worker gets some
            for d in devices:
                d.client.publish(d.topics.status, d._status("online"), qos=1)
            return {w for (w,) in db.query("SELECT worker FROM counters WHERE name = 'statuses'")} == {"w1", "w2"}

        wait_for(both_subscribed, 60, "both workers subscribed", step=0.3)
        jpeg = b"\xff\xd8" + os.urandom(2000) + b"\xff\xd9"

        def burst(n: int) -> None:
            for _ in range(n):
                d = devices[len(sent) % 4]
                sent.append(d.event(jpeg if len(sent) % 3 == 0 else None))

        burst(200)
        wait_for(lambda: {w for w, v in db.query(
            "SELECT worker, value FROM counters WHERE name = 'events'") if v > 0} == {"w1", "w2"}, 30,
            "both workers to have stored events (the broker shares the load)")
        burst(200)
        workers["w1"].send_signal(signal.SIGKILL)  # mid-stream: what it holds is not acknowledged
        workers["w1"].wait(10)
        burst(100)
        workers["w1"] = spawn_worker(config, "w1")  # the same id: its broker session back
        burst(100)

        def settled() -> bool:
            for d in devices:
                d.resend()
            return all(not d.pending for d in devices)

        wait_for(settled, 120, "every event and snapshot confirmed to its device", step=0.2)
        assert count(db, "SELECT count(*) FROM events") == len(sent) == len(set(sent))
        stored = {r[0] for r in db.query("SELECT id FROM events")}
        assert stored == set(sent)
        assert count(db, "SELECT count(*) FROM snapshots") == 200
        assert all(FolderStore(tmp_path / "state" / "snapshots").get(key_) for (key_,) in
                   db.query("SELECT ref FROM snapshots LIMIT 20"))
    finally:
        for d in devices:
            d.close()
        for p in workers.values():
            p.kill()
            p.wait(10)
        db.close()


@pytest.fixture
def worker(tmp_path, broker, key, db_url):
    """One ingest worker in this process (its counters readable), with a signing registry."""
    cfg = load_central_config(write_config(tmp_path, broker, db_url, workers=1))
    db = open_database(cfg.database, cfg.state_dir)
    reg = Registry(db, "gatectl", key, "k1")
    w = IngestWorker(cfg, db, FolderStore(cfg.snapshot_dir), reg, "w-test")
    w.start()
    yield w
    w.stop()
    db.close()


def publish(broker: Broker, topic: str, payload: bytes | dict) -> None:
    data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        c.publish(topic, data, qos=1).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def test_malformed_messages_on_every_inbound_topic_are_counted_and_ignored(worker, broker):
    base = f"gatectl/v1/{SITE}/dev-x"
    junk = {
        "events": [b"not json", b"[" * 5000, {"v": 1, "id": "../../x", "seq": 1, "ts": 1.0},
                   {"v": 1, "id": "e1", "seq": -1, "ts": 1.0}, {"v": 1, "id": "e2", "seq": 1, "ts": "now"},
                   {"v": 1, "id": "e3", "seq": 1, "ts": 1.0, "device": "dev-y"}, b"x" * (70 * 1024)],
        "snapshots/..": [b"\xff\xd8"],
        "snapshots/ok-id": [b""],
        "status": [b"{}", {"v": 1, "state": "exploded"}, b"\x00\xff"],
        "enroll/up": [{"v": 1, "type": "resident", "op": "upsert", "uid": "u", "seq": 4},
                      {"v": 2}, b"null"],
        "resync": [{"v": 1}, {"v": 1, "seq": "7"}],
    }
    for rest, payloads in junk.items():
        for p in payloads:
            publish(broker, f"{base}/{rest}", p)
    dev = SimDevice(broker.host, broker.port, SITE, "dev-x")
    try:
        dev.wait_ready()
        eid = dev.event(b"\xff\xd8 jpeg")
        wait_for(lambda: not dev.pending, 20, "a genuine event after the junk, stored and confirmed")
        assert count(worker.db, "SELECT count(*) FROM events WHERE id = ?", [eid]) == 1
    finally:
        dev.close()
    c = worker.counters
    expected = {"malformed_events": 7, "malformed_snapshots": 2, "malformed_status": 3,
                "malformed_enroll/up": 3, "malformed_resync": 2}
    # the junk went out on connections of their own: the genuine event can overtake the last
    # of it, so wait for the counts (exact, below) rather than read them at once
    wait_for(lambda: all(c[k] >= n for k, n in expected.items()), 20, "every junk message counted")
    assert c["malformed_events"] == 7
    assert c["malformed_snapshots"] == 2
    assert c["malformed_status"] == 3
    assert c["malformed_enroll/up"] == 3
    assert c["malformed_resync"] == 2
    assert worker.health()["writer_alive"] and worker.health()["connected"]
    assert count(worker.db, "SELECT count(*) FROM events") == 1


class Observer:
    """Every signed change the centre publishes for the site, by topic."""

    def __init__(self, broker: Broker):
        self.seen: list[tuple[str, dict]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = lambda c, u, m: self.seen.append((m.topic, json.loads(m.payload)))
        self.c.on_subscribe = lambda *_: self.ready.set()
        self.c.connect(broker.host, broker.port)
        self.c.subscribe([(f"gatectl/v1/{SITE}/enroll", 1), (f"gatectl/v1/{SITE}/+/enroll", 1)])
        self.c.loop_start()
        assert self.ready.wait(15)

    def of(self, uid: str) -> list[tuple[str, dict]]:
        return [(t, b) for t, b in self.seen if b.get("uid") == uid]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_changes_go_where_consent_allows_and_a_wiped_device_is_resynced(worker, broker, key):
    reg = worker.registry
    reg.add_device(SITE, "dev-a", "b1")
    reg.add_device(SITE, "dev-b", "b1")
    reg.add_device(SITE, "dev-c", "b2")
    obs = Observer(broker)
    pub = {"k1": key.public_key()}
    try:
        reg.enroll(SITE, "u-site", name="S", unit="1", consent="site", templates=TPL)
        reg.enroll(SITE, "u-b1", name="B", unit="2", consent="building", building="b1", templates=OTHER)
        reg.enroll(SITE, "u-own", name="O", unit="3", consent="device", home_device="dev-c", templates=TPL)
        reg.enroll(SITE, "u-none", name="N", unit="4", consent="none", home_device="dev-c", templates=TPL)
        wait_for(lambda: obs.of("u-none"), 10, "the last change published")
        assert [t.rsplit("/", 2)[-2] for t, _ in obs.of("u-site")] == [SITE]
        assert sorted(t.split("/")[-2] for t, _ in obs.of("u-b1")) == ["dev-a", "dev-b"]
        assert [t.split("/")[-2] for t, _ in obs.of("u-own")] == ["dev-c"]
        (t, none), = obs.of("u-none")
        assert t.endswith("/dev-c/enroll") and "templates" not in none  # no consent: no face held
        assert count(worker.db, "SELECT count(*) FROM templates WHERE uid = 'u-none'") == 0
        for topic, body in obs.seen:
            device = topic.split("/")[-2] if topic.count("/") == 4 else "dev-a"
            verify_change(pub, body, site=SITE, device=device)

        # dev-a is wiped and asks for everything: what its building and the site hold, signed for it
        obs.seen.clear()
        publish(broker, f"gatectl/v1/{SITE}/dev-a/resync", {"v": 1, "device": "dev-a", "seq": 9})
        wait_for(lambda: worker.counters["resyncs"] == 1 and len(obs.seen) >= 2, 10, "the resync")
        wait_for(lambda: len(obs.seen) == 2, 2, "nothing more")
        assert {b["uid"] for _, b in obs.seen} == {"u-site", "u-b1"}
        for topic, body in obs.seen:
            assert topic.endswith("/dev-a/enroll")
            verify_change(pub, body, site=SITE, device="dev-a")

        # narrower consent: the devices that fall out get a signed delete
        obs.seen.clear()
        reg.enroll(SITE, "u-b1", name="B", unit="2", consent="device", home_device="dev-a", building="b1")
        wait_for(lambda: any(b["op"] == "delete" for _, b in obs.seen), 10, "the delete")
        assert {(t.split("/")[-2], b["op"]) for t, b in obs.seen} == {("dev-a", "upsert"), ("dev-b", "delete")}
    finally:
        obs.close()


def test_device_requests_are_checked_for_duplicates_across_the_site(worker, broker):
    reg = worker.registry
    reg.enroll(SITE, "u-first", name="F", unit="1", consent="site", templates=TPL)
    up = f"gatectl/v1/{SITE}/dev-b/enroll/up"
    publish(broker, up, {"v": 1, "type": "resident", "op": "upsert", "uid": "u-twin", "version": 1, "name": "T",
                         "unit": "2", "status": "active", "templates": TPL, "origin": "dev-b", "seq": 1})
    publish(broker, up, {"v": 1, "type": "resident", "op": "upsert", "uid": "u-new", "version": 1, "name": "N",
                         "unit": "3", "status": "active", "templates": OTHER, "origin": "dev-b", "seq": 2,
                         "consent": "building"})
    wait_for(lambda: worker.counters["requests_refused"] == 1 and worker.counters["requests_accepted"] == 1, 10,
             "the decisions")
    assert reg.resident("u-twin") is None
    new = reg.resident("u-new")
    assert new["owner"] == "dev-b" and new["consent"] == "building" and new["home_device"] == "dev-b"
    # another device may not remove it
    publish(broker, f"gatectl/v1/{SITE}/dev-c/enroll/up",
            {"v": 1, "type": "resident", "op": "delete", "uid": "u-new", "version": 1, "origin": "dev-c", "seq": 3})
    wait_for(lambda: worker.counters["requests_refused"] == 2, 10, "the refusal")
    assert not reg.resident("u-new")["deleted"]
    # templates that are base64 of the wrong length: refused for good (confirmed), not retried
    receipts: list[dict] = []
    obs = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    ready = threading.Event()
    obs.on_message = lambda c, u, m: receipts.append(json.loads(m.payload))
    obs.on_subscribe = lambda *_: ready.set()
    obs.connect(broker.host, broker.port)
    obs.subscribe(f"gatectl/v1/{SITE}/dev-b/ack", 1)
    obs.loop_start()
    try:
        assert ready.wait(10)
        publish(broker, up, {"v": 1, "type": "resident", "op": "upsert", "uid": "u-bad", "version": 1, "name": "B",
                             "unit": "4", "status": "active", "origin": "dev-b", "seq": 5,
                             "templates": [{"model": "m", "dim": 4, "quality": 0.9, "emb": "AACAPw=="}]})
        wait_for(lambda: any(5 in r["requests"] for r in receipts), 10, "the refusal confirmed")
        assert worker.counters["requests_refused"] == 3 and not worker.counters["errors"]
    finally:
        obs.disconnect()
        obs.loop_stop()


def test_a_device_enrolled_before_sync_backfills_and_is_resynced_when_wiped(tmp_path, worker, key):
    """The real device code: residents enrolled while sync was off go up once sync is on, the
    centre accepts and signs them back; the same device wiped gets them again by resync."""
    from gatectl.config import parse_config
    from gatectl.domain.consent import Consent
    from gatectl.people.enroll import Sample
    from gatectl.runtime.app import App
    from gatectl.sources.media import read_image
    from gatectl.sync.signing import public_key_b64
    from tests.conftest import FACES
    from tests.test_sync import Device, sync_cfg

    broker_port = worker.cfg.broker.port
    broker = type("B", (), {"host": "127.0.0.1", "port": broker_port})()
    offline = App(parse_config({"device": {"id": "dev-old", "site": SITE}}), tmp_path / "old")
    # consent beyond this device: a `local` resident's templates never leave it (the law)
    r = offline.enroller().enroll_resident("Rose Leslie", "2-302", [Sample("r", read_image(FACES / "rose_leslie_01.jpg"))],
                                           Consent("site", "test"))
    offline.close()
    dev = Device(tmp_path / "old", sync_cfg(broker, "dev-old", {"k1": public_key_b64(key)}))
    try:
        got = wait_for(lambda: worker.registry.resident(r.uid), 30, "the backfilled resident at the centre")
        # the request carried the person's consent: the registry replicates them to the site
        assert got["owner"] == "dev-old" and got["templates"] == 1 and got["consent"] == "site"
        wait_for(lambda: dev.app.store.version_of(r.uid)[1] == got["version"], 15,
                 "the centre's signed version back on the device")
    finally:
        dev.close()
    wiped = Device(tmp_path / "wiped", sync_cfg(broker, "dev-old", {"k1": public_key_b64(key)}))
    try:
        assert not wiped.app.store.residents()
        wiped.app.store.enqueue("resync", "dev-old")
        back = wait_for(lambda: wiped.app.store.find_residents(r.uid), 30, "the resynced resident")
        assert back[0].name == "Rose Leslie"
        assert wiped.app.store.template_count(("resident", back[0].id)) == 1
    finally:
        wiped.close()


def test_erasure_leaves_no_name_or_face_in_the_registry_or_its_log(worker, broker):
    reg = worker.registry
    reg.add_device(SITE, "dev-a")
    reg.enroll(SITE, "u-gone", name="Erased Person", unit="9-909", consent="site", templates=TPL,
               credentials=[("card", "4A1B2/26"), ("pin", hash_pin("1234"))])
    reg.enroll(SITE, "u-gone", name="Erased Person", unit="9-910", consent="site")  # a second logged change
    obs = Observer(broker)
    try:
        reg.delete_resident("u-gone")
        wait_for(lambda: any(b["op"] == "delete" for _, b in obs.of("u-gone")), 10, "the signed delete")
    finally:
        obs.close()
    db = worker.db
    for table in ("residents", "changes", "templates", "credentials"):
        for row in db.query(f"SELECT * FROM {table}"):
            text = json.dumps(row, default=str)
            assert "Erased Person" not in text and "9-9" not in text and TPL[0]["emb"] not in text
            assert "4A1B2" not in text and "scrypt" not in text
    assert reg.resident("u-gone")["deleted"] == 1


def message(topic: str, payload: bytes | dict) -> mqtt.MQTTMessage:
    m = mqtt.MQTTMessage(1, topic.encode())
    m.payload = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    m.qos = 1
    return m


@pytest.fixture
def idle_worker(tmp_path, key, db_url):
    """A worker never connected: its batches stored by hand (`_commit`), in this thread."""
    cfg = load_central_config(write_config(tmp_path, Broker(tmp_path / "unused"), db_url, workers=1))
    db = open_database(cfg.database, cfg.state_dir)
    yield IngestWorker(cfg, db, FolderStore(cfg.snapshot_dir), Registry(db, "gatectl", key, "k1"), "w-idle")
    db.close()


def event_body(eid: str, ts: float) -> dict:
    return {"v": 1, "id": eid, "seq": 1, "ts": ts, "gate": "door", "kind": "access", "decision": "granted"}


def test_a_snapshot_stored_before_its_event_is_still_the_events(idle_worker):
    """Two workers of a share group take an event and its snapshot in either order: the
    event's listing shows the snapshot whichever came first."""
    base = f"gatectl/v1/{SITE}/dev-s"
    w = idle_worker
    w._commit(w._check([message(f"{base}/snapshots/e-late", b"\xff\xd8 jpeg")]))
    w._commit(w._check([message(f"{base}/events", event_body("e-late", time.time()))]))
    w._commit(w._check([message(f"{base}/events", event_body("e-first", time.time()))]))
    w._commit(w._check([message(f"{base}/snapshots/e-first", b"\xff\xd8 jpeg")]))
    shown = {e["id"]: e["snapshot"] for e in stored_events(w.db, site=SITE)}
    assert shown["e-late"] and shown["e-first"]
    assert FolderStore(w.cfg.snapshot_dir).get(shown["e-late"]) == b"\xff\xd8 jpeg"


def test_storing_events_never_waits_on_a_device_row(idle_worker, db_url):
    """The device rows (last seen, lag) are the rows every worker's batch would touch: held in
    the batch's transaction they serialise the workers and, locked in different orders,
    deadlock them (measured: 4 PostgreSQL workers fell to a fifth of one). Events commit
    without them; the rows follow within a second, in one short transaction per worker."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time by design")
    import psycopg

    w = idle_worker
    base = f"gatectl/v1/{SITE}"
    w._commit(w._check([message(f"{base}/dev-a/events", event_body("e0", time.time() - 5))]))
    w._flush_seen()
    with psycopg.connect(db_url) as holder:  # another worker's transaction, open on dev-a's row
        holder.execute("SELECT 1 FROM devices WHERE site = %s AND device = 'dev-a' FOR UPDATE", [SITE])
        done = threading.Event()

        def store() -> None:
            w._commit(w._check([message(f"{base}/dev-b/events", event_body("e1", time.time())),
                                message(f"{base}/dev-a/events", event_body("e2", time.time() - 2))]))
            done.set()

        t = threading.Thread(target=store, daemon=True)
        t.start()
        assert done.wait(20), "the events' commit waited on a device row another transaction holds"
        holder.rollback()
    assert count(w.db, "SELECT count(*) FROM events WHERE id IN ('e1', 'e2')") == 2
    w._flush_seen()
    lag = dict(w.db.query("SELECT device, lag_s FROM devices WHERE site = ?", [SITE]))
    assert set(lag) == {"dev-a", "dev-b"} and 1.5 < lag["dev-a"] < 60 and lag["dev-b"] < 30


def test_an_older_sighting_never_overwrites_a_newer_one(idle_worker):
    """Workers flush their sightings of one device in any order: the newest stays."""
    w, base = idle_worker, f"gatectl/v1/{SITE}/dev-c"
    w.clock = lambda: 2000.0
    w._commit(w._check([message(f"{base}/events", event_body("n1", 1990.0))]))
    w._flush_seen()
    w.clock = lambda: 1000.0  # a slower worker's older batch, flushed after
    w._commit(w._check([message(f"{base}/events", event_body("n0", 900.0))]))
    w._flush_seen()
    assert w.db.query("SELECT last_seen, lag_s FROM devices WHERE device = 'dev-c'") == [(2000.0, 10.0)]


def test_a_status_stored_before_the_flush_keeps_the_events_lag(idle_worker):
    """A device's status (stored at once, last seen = its arrival) can reach the database
    between an event's arrival and the worker's flush of that event's sighting: the lag must
    still be written (it was dropped: the flush only wrote over an older last seen)."""
    w, base = idle_worker, f"gatectl/v1/{SITE}/dev-s"
    w.clock = lambda: 2000.0
    w._commit(w._check([message(f"{base}/events", event_body("s1", 1990.0))]))
    w.clock = lambda: 2000.5
    w._commit(w._check([message(f"{base}/status", {"v": 1, "state": "online"})]))
    w._flush_seen()
    assert w.db.query("SELECT last_seen, lag_s FROM devices WHERE device = 'dev-s'") == [(2000.5, 10.0)]
    w.clock = lambda: 1999.0  # a slower worker's older event, flushed after: the newer lag stays
    w._commit(w._check([message(f"{base}/events", event_body("s0", 1900.0))]))
    w._flush_seen()
    assert w.db.query("SELECT last_seen, lag_s FROM devices WHERE device = 'dev-s'") == [(2000.5, 10.0)]


def test_an_id_with_a_trailing_newline_is_not_a_token(idle_worker, key):
    """``^...$`` lets re.match accept "dev\\n" ($ matches before a final newline): a device, event
    or snapshot id with one must be malformed on every topic, and the registry must refuse it."""
    from gatectl.central.registry import RegistryError

    w = idle_worker
    msgs = [message(f"gatectl/v1/{SITE}/dev-n\n/events", event_body("e-n1", time.time())),
            message(f"gatectl/v1/{SITE}/dev-n/events", event_body("e-n2\n", time.time())),
            message(f"gatectl/v1/{SITE}/dev-n/snapshots/e-n3\n", b"\xff\xd8 jpeg"),
            message(f"gatectl/v1/{SITE}/dev-n\n/status", {"v": 1, "state": "online"})]
    w._commit(w._check(msgs))
    assert count(w.db, "SELECT count(*) FROM events") == 0
    assert count(w.db, "SELECT count(*) FROM snapshots") == 0
    assert count(w.db, "SELECT count(*) FROM devices") == 0
    assert (w.counters["malformed_events"], w.counters["malformed_snapshots"], w.counters["malformed_status"]) == (2, 1, 1)
    with pytest.raises(RegistryError):
        w.registry.add_pass(SITE, "p1\n", holder="guest", valid_from=0.0, valid_until=10.0)
