"""The least-privilege ACL of config/mosquitto-acl.conf, as is, on a real Mosquitto with client
certificates (CN = user name): every forbidden publish is refused by the broker (MQTT 5 PUBACK
reason "not authorized") and never delivered, every forbidden subscription delivers nothing,
and everything a device and the centre need still works."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from tests.broker import Broker, issue, make_pki
from tests.conftest import REPO, wait_for

ACL = REPO / "config" / "mosquitto-acl.conf"
DEV = "garden/b5-north"  # the example device block of the ACL file
NOT_AUTHORIZED = 0x87
ACCEPTED = (0x00, 0x10)  # success, or success with no matching subscribers


class Peer:
    """One MQTT 5 client with a client certificate; records PUBACK/SUBACK codes and messages."""

    def __init__(self, broker: Broker, pki, cert: tuple, name: str):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name.replace("/", "-"),
                             protocol=mqtt.MQTTv5)
        self.c.tls_set(ca_certs=str(pki.ca), certfile=str(cert[0]), keyfile=str(cert[1]))
        self.acks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.got: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.c.on_publish = lambda c, u, mid, rc, p: self.acks.__setitem__(mid, rc.value)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.__setitem__(mid, [r.value for r in rcs])
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))
        connected = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
        self.c.connect("localhost", broker.port)
        self.c.loop_start()
        assert connected.wait(10), f"{name} could not connect"

    def publish(self, topic: str, payload: bytes = b"x") -> int:
        """The broker's PUBACK reason code for a QoS 1 publish."""
        info = self.c.publish(topic, payload, qos=1)
        return wait_for(lambda: self.acks.get(info.mid, -1) + 1, 10, f"PUBACK for {topic}") - 1

    def subscribe(self, topic: str) -> int:
        _, mid = self.c.subscribe(topic, qos=1)
        return wait_for(lambda: self.subacks.get(mid), 10, f"SUBACK for {topic}")[0]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def site(tmp_path):
    pki = make_pki(tmp_path / "pki", client_cn=DEV)
    certs = {name: issue(pki, name, tmp_path / "pki") for name in ("central", "garden/b5-south", "lake/b5-north")}
    certs[DEV] = (pki.client_cert, pki.client_key)
    broker = Broker(tmp_path / "broker", tls=pki, require_certificate=True, acl_file=ACL)
    broker.start()
    peers = {name: Peer(broker, pki, cert, name) for name, cert in certs.items()}
    yield peers
    for p in peers.values():
        p.close()
    broker.stop()


def test_device_may_write_only_its_own_up_topics(site):
    dev, centre = site[DEV], site["central"]
    assert centre.subscribe("gatectl/v1/#") == 1
    base = f"gatectl/v1/{DEV}"
    for rest in ("status", "events", "snapshots/01JD3W9R8Q", "enroll/up", "resync", "cmd/resp"):
        assert dev.publish(f"{base}/{rest}", rest.encode()) in ACCEPTED, rest
    wait_for(lambda: sum(t.startswith(base) for t, _ in centre.got) == 6, 10, "the allowed publishes at the centre")
    forbidden = [f"{base}/cmd", f"{base}/enroll", f"{base}/ack", "gatectl/v1/garden/enroll",
                 f"{base}/lists", "gatectl/v1/garden/lists",
                 "gatectl/v1/garden/b5-south/events", "gatectl/v1/garden/b5-south/cmd",
                 "gatectl/v1/lake/b5-north/events", "gatectl/v1/lake/enroll", "gatectl/v1/garden/b5-north2/events",
                 "other/topic"]
    for topic in forbidden:
        assert dev.publish(topic, b"forged") == NOT_AUTHORIZED, topic
    # none of them was delivered: a final allowed publish arrives after anything sent before it
    assert dev.publish(f"{base}/events", b"last") in ACCEPTED
    wait_for(lambda: (f"{base}/events", b"last") in centre.got, 10, "the last allowed publish")
    assert not [t for t, p in centre.got if p == b"forged"]


def test_device_reads_only_its_own_and_its_sites_down_topics(site):
    dev, centre = site[DEV], site["central"]
    allowed = [f"gatectl/v1/{DEV}/cmd", f"gatectl/v1/{DEV}/enroll", "gatectl/v1/garden/enroll",
               f"gatectl/v1/{DEV}/lists", "gatectl/v1/garden/lists"]
    forbidden = ["gatectl/v1/garden/b5-south/cmd", "gatectl/v1/garden/b5-south/enroll",
                 "gatectl/v1/garden/b5-south/lists", "gatectl/v1/lake/lists",
                 "gatectl/v1/lake/enroll", "gatectl/v1/lake/b5-north/cmd", "gatectl/v1/garden/b5-south/events"]
    for topic in allowed:
        assert dev.subscribe(topic) == 1, topic
    # mosquitto 2.0 grants a SUBSCRIBE and checks read access per message: the proof is that
    # nothing forbidden is delivered, through exact or wildcard subscriptions alike
    granted = {topic: dev.subscribe(topic) for topic in forbidden + ["gatectl/v1/#", "gatectl/v1/+/+/cmd"]}
    # publish on every forbidden topic (the centre may), then once more on an allowed one
    site["garden/b5-south"].publish("gatectl/v1/garden/b5-south/events", b"secret")
    for topic in forbidden:
        if not topic.endswith("/events"):
            assert centre.publish(topic, b"secret") in ACCEPTED, topic
    for topic in allowed:
        assert centre.publish(topic, b"for you") in ACCEPTED, topic
    wait_for(lambda: sum(p == b"for you" for _, p in dev.got) >= len(allowed), 10,
             "the allowed down-topic messages")
    leaked = sorted({t for t, p in dev.got if p == b"secret"})
    assert not leaked, f"delivered to the device: {leaked}; SUBACKs {granted}"


def test_centre_writes_down_topics_but_cannot_forge_a_device(site):
    dev, centre = site[DEV], site["central"]
    base = f"gatectl/v1/{DEV}"
    for topic in (f"{base}/cmd", f"{base}/enroll", "gatectl/v1/garden/enroll", f"{base}/lists",
                  "gatectl/v1/garden/lists"):
        assert centre.publish(topic) in ACCEPTED, topic
    for topic in (f"{base}/events", f"{base}/status", f"{base}/enroll/up", f"{base}/cmd/resp"):
        assert centre.publish(topic) == NOT_AUTHORIZED, topic
    assert dev.publish(f"{base}/events") in ACCEPTED
