"""The reference tool's relay of a device's enrollment: it went to the whole site (every device
got the face of a resident who was enrolled, and consented, at one door). A device's accepted
request now goes back, signed, to that device only; the site topic carries only the centre's own
changes."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt

from gatectl.central.tool import Central
from gatectl.config.sync import SyncConfig
from gatectl.sync.signing import generate_private_key
from gatectl.sync.topics import Topics
from tests.conftest import wait_for
from tests.test_enroll_authority import now_ms, raw_publish

SITE = "garden"
TPL = [{"model": "m", "dim": 4, "quality": 0.9, "emb": "AACAPwAAgD8AAIA/AACAPw=="}]


def test_a_device_enrollment_goes_back_to_that_device_only(broker):
    key = generate_private_key()
    seen: list[tuple[str, dict]] = []
    obs = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    obs.on_message = lambda c, u, m: seen.append((m.topic, json.loads(m.payload)))
    obs.on_subscribe = lambda *_: subscribed.set()
    obs.connect(broker.host, broker.port)
    obs.subscribe(f"gatectl/v1/{SITE}/#", qos=1)
    obs.loop_start()
    c = Central(SyncConfig(enabled=True, host=broker.host, port=broker.port), SITE, key=key, kid="k1")
    c.start()
    try:
        assert subscribed.wait(15)
        ta = Topics("gatectl", SITE, "dev-a")
        raw_publish(broker, ta.enroll_up, {"v": 1, "type": "resident", "op": "upsert", "uid": "u-a",
                                           "version": now_ms(), "name": "A", "unit": "1", "status": "active",
                                           "templates": TPL, "origin": "dev-a", "seq": 3})
        got = wait_for(lambda: [(t, b) for t, b in seen if b.get("uid") == "u-a" and b.get("sig")], 10,
                       "the signed change")
        assert [t for t, _ in got] == [ta.enroll_device]
        assert got[0][1]["device"] == "dev-a"
        c.push({"v": 1, "type": "resident", "op": "upsert", "uid": "u-c", "name": "C", "unit": "2",
                "status": "active", "templates": TPL, "origin": "central"})
        wait_for(lambda: any(t == ta.enroll_site and b.get("uid") == "u-c" for t, b in seen), 10,
                 "the centre's own change on the site topic")
        assert not any(t == ta.enroll_site and b.get("uid") == "u-a" for t, b in seen)
    finally:
        c.stop()
        obs.disconnect()
        obs.loop_stop()
