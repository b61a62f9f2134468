"""Hostile inbound MQTT messages (issue 12, channel hygiene): each class of malformed payload,
oversized messages, floods of junk and log-forging text, against a real Mosquitto; the checks
of `gatectl.sync.inbound` on their own."""

from __future__ import annotations

import json
import logging
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gatectl.core.refusals import Refusals
from gatectl.sync.inbound import (
    Command,
    Enrollment,
    Refused,
    check_depth,
    load_json,
    validated,
)
from gatectl.sync.signing import generate_private_key, public_key_b64, sign_command
from gatectl.sync.topics import Topics
from tests.conftest import wait_for
from tests.test_sync import SITE, Device, pulses, sync_cfg

# ---- the checks on their own ------------------------------------------------------------------


def test_depth_is_checked_without_recursion():
    for deep in (b"[" * 200_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        with pytest.raises(Refused) as exc:
            load_json(deep)
        assert exc.value.reason == "too_deep"
    assert load_json(b'{"a": [[[[1]]]], "b": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}')["a"] == [[[[1]]]]
    check_depth(b"[" * 16 + b"]" * 16)
    with pytest.raises(Refused):
        check_depth(b"[" * 17 + b"]" * 17)


def test_nan_and_infinity_literals_are_not_numbers():
    for bad in (b'{"q": NaN}', b'{"q": Infinity}', b'{"q": -Infinity}'):
        with pytest.raises(Refused) as exc:
            load_json(bad)
        assert exc.value.reason == "malformed"


def test_strict_schemas_refuse_what_escaped_the_handlers():
    base = {"v": 1, "cmd": "door.open", "args": {}, "device": "d", "id": "i", "iat": 1.0, "exp": 2.0,
            "nonce": "n", "kid": "k", "sig": "AAAA"}
    for field, bad in (("kid", "k\ud800"), ("kid", "k1\n12:00:00 INFO granted"), ("kid", "x" * 1_000_000),
                       ("iat", True), ("iat", "1"), ("exp", float("nan")), ("extra", 1), ("v", 2)):
        with pytest.raises(Refused) as exc:
            validated(Command, {**base, field: bad})
        assert len(str(exc.value)) < 300 and "\n" not in str(exc.value), field
    change = {"v": 1, "type": "resident", "op": "upsert", "uid": "u1", "version": 3, "name": "N", "unit": "U"}
    validated(Enrollment, change)
    for field, bad in (("version", 2**64), ("version", 2**63 - 1), ("version", -1), ("name", "a\x1b[31mb"),
                       ("name", "\udcff"), ("templates", [{"model": "m", "dim": 2, "quality": float("nan"),
                                                          "emb": "AAAA"}]),
                       ("templates", [{"model": "m", "dim": 2, "quality": "nan", "emb": "AAAA"}])):
        with pytest.raises(Refused):
            validated(Enrollment, {**change, field: bad})


def test_refusals_are_counted_and_logged_within_a_budget(caplog):
    t = [0.0]
    r = Refusals(per_s=1.0, burst=3, clock=lambda: t[0])
    with caplog.at_level(logging.WARNING, "gatectl.refusals"):
        allowed = sum(r.refuse("cmd", "malformed", "junk") for _ in range(1000))
        assert allowed == 3 and len(caplog.records) == 3
        assert r.refuse("enroll", "malformed")  # another topic has a budget of its own
        t[0] += 1.0
        assert r.refuse("cmd", "malformed", "again")
    assert r.counts()["refused_cmd_malformed"] == 1001
    assert "(997 more refused since the last line)" in caplog.records[-1].getMessage()


# ---- against a live device on a real broker ---------------------------------------------------

@pytest.fixture
def keyed(tmp_path, broker):
    key = generate_private_key()
    cfg = sync_cfg(broker, "dev-k", {"k1": public_key_b64(key)})
    cfg |= {"outputs": [{"name": "door"}], "doors": [{"name": "front", "output": "door"}]}
    dev = Device(tmp_path / "k", cfg)
    centre = Attacker(broker, "centre")
    yield key, dev, centre
    centre.close()
    dev.close()



class Attacker:
    """A raw MQTT client: what anyone with broker access can publish. `command` plays the
    centre (the reference centre parses every device topic itself, which is not under test)."""

    def __init__(self, broker, client_id: str = "attacker"):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        self.responses: dict[bytes, dict] = {}
        self.c.on_message = self._on_message

    def _on_message(self, client, userdata, msg) -> None:
        corr = getattr(msg.properties, "CorrelationData", None)
        if corr is not None:
            self.responses[corr] = json.loads(msg.payload)

    def command(self, device: str, body: dict, timeout: float = 10.0) -> dict:
        t = Topics("gatectl", SITE, device)
        self.c.subscribe(t.cmd_resp, qos=1)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = t.cmd_resp
        props.CorrelationData = corr = uuid.uuid4().bytes  # a replayed body is a new request
        self.c.publish(t.cmd, json.dumps(body).encode(), qos=1, properties=props)
        return wait_for(lambda: self.responses.get(corr), timeout, f"the answer to {body['cmd']}")

    def send(self, topic: str, payload: bytes, response_topic: str | None = None) -> None:
        props = None
        if response_topic:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = response_topic
        self.c.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def junk_classes(key) -> list[bytes]:
    """One of each payload class that used to escape the handlers or cost a pause."""
    now = time.time()
    good = sign_command(key, "k1", "dev-k", "door.open", {"door": "front"}, now=now)
    surrogate = json.dumps({**good, "kid": "k\ud800"}).encode()  # json escapes it as \\ud800
    return [b"[" * 5000 + b"]" * 5000,  # RecursionError before
            surrogate,
            json.dumps({**good, "iat": 2**64}).encode(),
            json.dumps({**good, "args": {"door": "front", "q": float("nan")}}).encode(),
            b"\xff\xfe not json",
            json.dumps({"v": 1, "type": "resident", "op": "upsert", "uid": "x", "version": 2**64}).encode(),
            json.dumps({"v": 1, "type": "resident", "op": "upsert", "uid": "x", "version": 3,
                        "templates": [{"model": "m", "dim": 1, "quality": "nan", "emb": "AAAA"}]}).encode()]


def test_malformed_payloads_never_stall_commands_or_grow_the_store(keyed, broker):
    """50 x each junk class on the command and enrollment topics, then a genuine signed
    command: answered at once (the old loop slept 0.5 s per escaped message: 26 s for 50)."""
    key, dev, central = keyed
    t = Topics("gatectl", SITE, "dev-k")
    atk = Attacker(broker)
    try:
        sent = 0
        for payload in junk_classes(key):
            for _ in range(50):
                for topic in (t.cmd, t.enroll_device, t.enroll_site):
                    atk.c.publish(topic, payload, qos=1)
                    sent += 1
        wait_for(lambda: sum(dev.client.refusals.counts().values()) >= sent, 30, "every junk message refused")
        started = time.monotonic()
        resp = central.command("dev-k", sign_command(key, "k1", "dev-k", "door.open", {"door": "front"},
                                                     now=time.time()))
        assert resp["ok"], resp
        assert time.monotonic() - started < 5
        assert pulses(dev) == 1
    finally:
        atk.close()
    events = dev.app.store.events(kind="command")
    assert len(events) <= 12, len(events)  # refusals beyond the budget are counted, not recorded
    assert dev.client.counters["enroll_applied"] == 0


def test_oversized_messages_are_refused_unread(keyed, broker, caplog):
    key, dev, _ = keyed
    t = Topics("gatectl", SITE, "dev-k")
    atk = Attacker(broker)
    try:
        big_kid = sign_command(key, "k" * 1_000_000, "dev-k", "door.open", {"door": "front"}, now=time.time())
        # beyond the MQTT 5 Maximum Packet Size the device announced: the broker never sends it
        atk.send(t.cmd, json.dumps(big_kid).encode())
        atk.send(t.enroll_site, b"x" * 3_000_000)
        # within the packet size but over the topic's own limit: refused in paho's callback
        atk.send(t.cmd, json.dumps({"pad": "x" * (dev.client.limits["cmd"] + 100)}).encode())
        atk.send(t.enroll_site, b"{" + b" " * (dev.client.limits["enroll"] + 100) + b"}")
        wait_for(lambda: dev.client.refusals.counts().get("refused_enroll_too_large", 0) == 1, 10,
                 "the oversized enrollment refused")
        resp = atk.command("dev-k", sign_command(key, "k1", "dev-k", "door.open", {"door": "front"},
                                                 now=time.time()))
        assert resp["ok"], resp
        counts = dev.client.refusals.counts()
        assert counts["refused_cmd_too_large"] == 1 and counts["refused_enroll_too_large"] == 1, counts
    finally:
        atk.close()
    logged = "".join(r.getMessage() for r in caplog.records)
    assert "k" * 200 not in logged and len(logged) < 20_000
    assert all(len(e.reason or "") < 600 for e in dev.app.store.events())


def test_response_topic_outside_the_device_is_not_used(keyed, broker):
    _, dev, _ = keyed
    t = Topics("gatectl", SITE, "dev-k")
    seen: list[str] = []
    spy = Attacker(broker, "spy")
    spy.c.on_message = lambda c, u, m: seen.append(m.topic)
    spy.c.subscribe("gatectl/#", qos=1)
    atk = Attacker(broker)
    try:
        atk.send(t.cmd, b"{}", response_topic=Topics("gatectl", SITE, "dev-other").events)
        wait_for(lambda: t.cmd_resp in seen, 10, "the answer on the device's own response topic")
        assert Topics("gatectl", SITE, "dev-other").events not in seen
        assert dev.client.counters["response_topic_refused"] == 1
    finally:
        atk.close()
        spy.close()


def test_enrollment_size_is_bounded_by_templates_times_dimension():
    import base64

    import numpy as np

    from gatectl.sync.inbound import enroll_limit, enrollment

    dim = 128
    tpl = {"model": "mobilefacenet-x", "dim": dim, "quality": 0.9,
           "emb": base64.b64encode(np.ones(dim, "<f4").tobytes()).decode()}
    change = {"v": 1, "type": "resident", "op": "upsert", "uid": "u1", "version": 3, "name": "王芳", "unit": "3-2"}
    ten = json.dumps({**change, "templates": [tpl] * 10}, ensure_ascii=False).encode()
    assert len(ten) <= enroll_limit(10, dim) < 4 * len(ten)  # fits, but not with room for much else
    assert enrollment(ten, 10)["name"] == "王芳"
    with pytest.raises(Refused) as exc:
        enrollment(json.dumps({**change, "templates": [tpl] * 11}).encode(), 10)
    assert "11 > 10" in str(exc.value)
