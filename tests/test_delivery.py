"""Delivery confirmed by the centre, not the broker, and a reference centre that no message can
kill - against a real Mosquitto (tests/broker.py), killed and restarted without its
persistence file where the test says so."""

from __future__ import annotations

import json

import numpy as np

from gatectl.runtime.app import App
from gatectl.config import parse_config
from gatectl.config.sync import SyncConfig
from gatectl.central.tool import Central
from gatectl.sync.topics import Topics
from tests.broker import Broker
from tests.conftest import wait_for
from tests.test_enroll_authority import raw_publish
from tests.test_sync import CENTRAL_KEY, CENTRAL_KID, SITE, Device, sync_cfg


def centre(broker: Broker, client_id: str = "central-d") -> Central:
    c = Central(SyncConfig(enabled=True, host=broker.host, port=broker.port), SITE, client_id=client_id,
                key=CENTRAL_KEY, kid=CENTRAL_KID)
    c.start()
    return c


def test_outbox_rows_stay_until_the_centre_confirms_them_not_the_broker(tmp_path, broker):
    dev = Device(tmp_path / "d", sync_cfg(broker, "dev-ack", ack_timeout_s=1))
    try:
        image = np.full((48, 64, 3), 128, np.uint8)
        ids = [dev.app.recorder.record("lobby", "access", "denied", f"e{i}").id for i in range(20)]
        ids.append(dev.app.recorder.record("lobby", "alert", "alert", "with snapshot", image).id)
        wait_for(lambda: dev.client.counters["published"] >= 22, 10, "the broker's PUBACKs")
        assert dev.app.store.outbox_stats()["pending"] == 22  # 21 events + 1 snapshot: nobody confirmed
        c = centre(broker)
        try:
            wait_for(lambda: dev.app.store.outbox_stats()["pending"] == 0, 20, "the centre's receipts")
            assert set(ids) <= set(c.events) and ids[-1] in c.snapshots
            assert dev.client.counters["resent"] >= 22 and dev.client.counters["confirmed"] == 22
        finally:
            c.stop()
    finally:
        dev.close()


def test_broker_crash_without_its_persistence_file_loses_no_event(tmp_path):
    """Centre offline, the device drains N events (PUBACKed), the broker is killed and comes
    back WITHOUT mosquitto.db, then the centre comes back: every event id arrives."""
    broker = Broker(tmp_path / "broker")
    broker.start()
    n = 2000
    c = centre(broker, "central-crash")  # a persistent session: the broker queues for it
    c.stop()
    cfg = parse_config(sync_cfg(broker, "dev-crash", ack_timeout_s=1))
    app = App(cfg, tmp_path / "d")
    for i in range(n):
        app.recorder.record("lobby", "access", "denied", f"e{i}")
    stored = {r["id"] for r in app.store.db.query("SELECT id FROM events")}
    client = app.sync_client(dict, lambda: "")
    client.start()
    try:
        wait_for(lambda: client.counters["published"] >= n, 60, "every event PUBACKed", step=0.05)
        broker.stop(kill=True)
        broker.db_path.unlink(missing_ok=True)
        broker.start()
        assert not broker.db_path.exists() or broker.db_path.stat().st_size < 10_000
        c = centre(broker, "central-crash")
        try:
            wait_for(lambda: stored <= set(c.events), 90, "every event id at the centre", step=0.1)
            wait_for(lambda: app.store.outbox_stats()["pending"] == 0, 30, "an empty outbox", step=0.1)
            assert len(c.events) == n  # duplicates (re-sent copies) counted, kept once
        finally:
            c.stop()
    finally:
        client.stop()
        app.close()
        broker.stop(kill=True)


JUNK = [b"{}", b"[]", b"null", b"not json", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000,
        json.dumps({"id": 5, "seq": "x"}).encode(), json.dumps({"id": "x" * 10_000, "seq": 1}).encode(),
        json.dumps({"id": "ok", "seq": -1}).encode(), b"{" + b"x" * 70_000 + b"}",
        json.dumps({"v": 1, "type": "resident", "op": "upsert", "uid": "u", "templates": "x"}).encode()]


def test_the_centre_survives_every_malformed_message_and_keeps_working(tmp_path, broker):
    c = centre(broker)
    dev = Device(tmp_path / "d", sync_cfg(broker, "dev-j"))
    try:
        base = Topics("gatectl", SITE, "dev-j").base
        for rest in ("events", "status", "enroll/up", "resync", "cmd/resp"):
            for payload in JUNK:
                raw_publish(broker, f"{base}/{rest}", payload)
        raw_publish(broker, f"{base}/snapshots/{'y' * 100}", b"\xff\xd8")
        bad = len(JUNK) * 5 + 1
        wait_for(lambda: c.counters["malformed"] + c.counters["errors"] >= bad, 30, "every message handled")
        assert c.counters["errors"] == 0, "a malformed message reached code that did not expect it"
        assert c.counters["malformed"] == bad
        ev = dev.app.recorder.record("lobby", "access", "denied", "after the junk")
        wait_for(lambda: ev.id in c.events, 20, "a genuine event after the junk")
        wait_for(lambda: dev.app.store.outbox_stats()["pending"] == 0, 20, "its receipt")
        assert all(isinstance(k, str) for k in c.events) and c.client.is_connected()
    finally:
        dev.close()
        c.stop()


def test_an_unsigned_command_aimed_at_the_centre_through_a_device_achieves_nothing(tmp_path, broker):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = centre(broker)
    dev = Device(tmp_path / "d", sync_cfg(broker, "dev-u"))
    try:
        t = Topics("gatectl", SITE, "dev-u")
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = t.events
        props.CorrelationData = b"x"
        raw_publish(broker, t.cmd, b"{}", props=props)
        raw_publish(broker, t.cmd, json.dumps({"v": 1, "cmd": "door.open", "args": {}, "device": "dev-u", "id": "i",
                                               "nonce": "n", "kid": "k", "iat": 0, "exp": 1}).encode(), props=props)
        wait_for(lambda: dev.client.counters["response_topic_refused"] >= 2, 10, "both answers kept off events")
        ev = dev.app.recorder.record("lobby", "access", "denied", "after the attempt")
        wait_for(lambda: ev.id in c.events, 20, "a genuine event afterwards")
        assert c.counters["errors"] == 0 and c.counters["malformed"] == 0
        assert all(e.get("kind") for e in c.events.values())  # only events, never a command's answer
    finally:
        dev.close()
        c.stop()
