"""The tests' own Mosquitto (tests/broker.py), checked against the real broker.

The sync fault tests lean on these properties: the broker really listens where it says, a
persistent MQTT 5 session keeps thousands of QoS 1 messages across a restart (so the queue is
not capped at mosquitto's default 1000 and persistence is actually written), a SIGKILL makes it
unreachable and restart() brings it back with what the last autosave held, and mutual TLS with
the generated PKI accepts the right client and refuses the wrong ones.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from tests.broker import Broker, Pki, free_port, make_pki
from tests.conftest import wait_for

TIMEOUT = 10.0




def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Client:
    """A paho-mqtt 2.x MQTT 5 client with its network loop in a thread, recording what the
    callbacks saw so the tests can poll for it. It does not reconnect by itself: the tests say
    when to connect, and loop_stop() need not wait out paho's 1 s reconnect back-off."""

    def __init__(self, client_id: str):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        self.connack: list[tuple] = []  # (reason_code, session_present)
        self.disconnected = threading.Event()
        self.messages: list[bytes] = []
        self.subacks: list = []
        self.acked = 0
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda c, u, flags, rc, props: self.disconnected.set()
        self.c.on_message = lambda c, u, msg: self.messages.append(msg.payload)
        self.c.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.append(rcs)
        self.c.on_publish = self._on_publish

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack.append((reason_code, flags.session_present))

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self.acked += 1

    def connect(self, broker: Broker, *, host: str | None = None, clean_start: bool = True,
                expiry: int | None = None) -> Client:
        """Connect and wait for a successful CONNACK."""
        props = None
        if expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry
        self.c.connect(host or broker.host, broker.port, keepalive=10,
                       clean_start=clean_start, properties=props)
        self.c.loop_start()
        rc, _ = wait_for(lambda: self.connack and self.connack[-1], TIMEOUT, "CONNACK", step=0.01)
        assert not rc.is_failure, f"refused: {rc}"
        return self

    def subscribe(self, topic: str) -> None:
        self.c.subscribe(topic, qos=1)
        wait_for(lambda: self.subacks, TIMEOUT, "SUBACK", step=0.01)
        assert [rc.value for rc in self.subacks[-1]] == [1], self.subacks[-1]

    def close(self) -> None:
        """A clean DISCONNECT (a persistent session stays on the broker)."""
        if self.c.is_connected():
            self.c.disconnect()
            wait_for(self.disconnected.is_set, TIMEOUT, "disconnect", step=0.01)
        self.c.loop_stop()


def test_start_pubsub_stop_frees_port(tmp_path):
    """The basics: it listens on its own port (never 1883), carries a QoS 1 message, and after
    stop() nothing listens and the port can be bound again."""
    broker = Broker(tmp_path / "b")
    assert broker.port != 1883 and broker.host == "127.0.0.1"
    with broker:
        assert broker.running() and accepts(broker.port)
        conf = (tmp_path / "b" / "mosquitto.conf").read_text()
        assert f"listener {broker.port} 127.0.0.1" in conf and "max_queued_messages 0" in conf
        sub = Client("sub").connect(broker)
        sub.subscribe("t/x")
        pub = Client("pub").connect(broker)
        info = pub.c.publish("t/x", b"hello", qos=1)
        info.wait_for_publish(TIMEOUT)
        wait_for(lambda: sub.messages, TIMEOUT, "the message", step=0.01)
        assert sub.messages == [b"hello"]
        pub.close()
        sub.close()
    assert not broker.running() and not accepts(broker.port)
    broker.stop()  # idempotent
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", broker.port))
        s.listen()
    assert "New connection from 127.0.0.1" in broker.log()  # log_type notice, in folder


def test_persistent_session_survives_graceful_restart(tmp_path):
    """2,000 QoS 1 messages queued for an offline MQTT 5 subscriber all arrive after a restart:
    the queue is unlimited (default would drop after 1000) and SIGTERM saves the session."""
    n = 2000
    with Broker(tmp_path / "b") as broker:
        sub = Client("gate-sub").connect(broker, clean_start=False, expiry=3600)
        sub.subscribe("site/events")
        sub.close()

        pub = Client("gate-pub").connect(broker)
        for i in range(n):
            pub.c.publish("site/events", str(i).encode(), qos=1)
        wait_for(lambda: pub.acked == n, TIMEOUT, f"{n} PUBACKs", step=0.01)
        pub.close()

        broker.restart()
        assert broker.db_path.exists()

        again = Client("gate-sub")
        again.connect(broker, clean_start=False, expiry=3600)
        assert again.connack[-1][1] is True, "session not present after restart"
        wait_for(lambda: len(again.messages) >= n, TIMEOUT, f"{n} queued messages", step=0.01)
        got = [int(p) for p in again.messages]
        assert sorted(set(got)) == list(range(n))
        assert list(dict.fromkeys(got)) == list(range(n)), "not in publish order"
        again.close()
    assert "Error" not in broker.log(), broker.log()


def test_kill_then_restart(tmp_path):
    """SIGKILL: clients lose the broker and the port stops answering; restart() brings it
    back on the same port, and a session the 1 s autosave had written survives the crash."""
    broker = Broker(tmp_path / "b")
    broker.start()
    try:
        sub = Client("k-sub").connect(broker, clean_start=False, expiry=3600)
        sub.subscribe("k/t")
        sub.close()
        saved_after = time.time_ns()
        wait_for(lambda: broker.db_path.exists() and broker.db_path.stat().st_mtime_ns > saved_after,
                 5, "an autosave", step=0.01)

        watcher = Client("k-watch").connect(broker)
        port = broker.port
        broker.stop(kill=True)
        assert not broker.running()
        wait_for(watcher.disconnected.is_set, TIMEOUT, "the client to notice", step=0.01)
        watcher.c.loop_stop()
        assert not accepts(port)

        broker.restart()
        assert broker.port == port and broker.running() and accepts(port)
        pub = Client("k-pub").connect(broker)
        pub.c.publish("k/t", b"after crash", qos=1).wait_for_publish(TIMEOUT)
        pub.close()
        again = Client("k-sub").connect(broker, clean_start=False, expiry=3600)
        assert again.connack[-1][1] is True
        wait_for(lambda: again.messages, TIMEOUT, "the message for the restored session", step=0.01)
        assert again.messages == [b"after crash"]
        again.close()
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), client_cn="dev-tls")


def test_make_pki_files(pki):
    """The PKI is PEM on disk; private keys are readable by their owner only."""
    for path in (pki.ca, pki.server_cert, pki.client_cert, pki.other_ca):
        assert path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    for path in (pki.server_key, pki.client_key):
        assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
        assert path.stat().st_mode & 0o077 == 0


def test_mutual_tls(tmp_path, pki):
    """require_certificate: a client with our CA and its certificate gets in (also under strict
    X.509 checking); one that trusts only another CA fails the handshake; one without a
    certificate never gets a CONNACK."""
    with Broker(tmp_path / "b", tls=pki, require_certificate=True) as broker:
        assert "use_identity_as_username true" in broker.conf_path.read_text()
        good = Client("tls-good")
        good.c.tls_set(ca_certs=str(pki.ca), certfile=str(pki.client_cert),
                       keyfile=str(pki.client_key))
        good.connect(broker, host="localhost")
        good.close()

        strict = ssl.create_default_context(cafile=str(pki.ca))
        strict.verify_flags |= ssl.VERIFY_X509_STRICT
        strict.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        by_ip = Client("tls-strict")
        by_ip.c.tls_set_context(strict)
        by_ip.connect(broker)  # 127.0.0.1, matched by the IP SAN
        by_ip.close()

        wrong = Client("tls-wrong-ca")
        wrong.c.tls_set(ca_certs=str(pki.other_ca), certfile=str(pki.client_cert),
                        keyfile=str(pki.client_key))
        with pytest.raises(ssl.SSLError):
            wrong.c.connect("localhost", broker.port, keepalive=10)

        anon = Client("tls-no-cert")
        anon.c.tls_set(ca_certs=str(pki.ca))
        try:
            anon.c.connect("localhost", broker.port, keepalive=10)
        except (ssl.SSLError, OSError):
            pass  # TLS 1.2 fails right in the handshake
        else:  # TLS 1.3: the server's alert arrives after the client's side of the handshake
            anon.c.loop_start()
            wait_for(anon.disconnected.is_set, TIMEOUT, "the broker to drop a client without a cert", step=0.01)
            anon.c.loop_stop()
        assert not anon.connack or anon.connack[-1][0].is_failure


def test_password_file(tmp_path):
    """With a password file anonymous clients are refused and a listed user gets in."""
    pw = tmp_path / "passwd"
    pw.write_text("")
    rc = os.system(f"mosquitto_passwd -b {pw} gate s3cret >/dev/null 2>&1")
    if rc != 0:
        pytest.skip("mosquitto_passwd not available")
    with Broker(tmp_path / "b", password_file=pw) as broker:
        assert "allow_anonymous false" in broker.conf_path.read_text()
        anon = Client("anon")
        anon.c.connect(broker.host, broker.port)
        anon.c.loop_start()
        rc, _ = wait_for(lambda: anon.connack and anon.connack[-1], TIMEOUT, "CONNACK", step=0.01)
        assert rc.is_failure
        anon.c.loop_stop()
        user = Client("user")
        user.c.username_pw_set("gate", "s3cret")
        user.connect(broker)
        user.close()


def test_start_failures_are_reported(tmp_path):
    """A port someone else holds is refused up front; a broken config comes back as a
    RuntimeError carrying mosquitto's own complaint, not a hang."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = Broker(tmp_path / "taken", port=s.getsockname()[1])
        with pytest.raises(RuntimeError, match="already in use"):
            taken.start()

    missing = tmp_path / "nope.pem"
    bad = Pki(ca=missing, server_cert=missing, server_key=missing, client_cert=missing,
              client_key=missing, other_ca=missing)
    broker = Broker(tmp_path / "bad", port=free_port(), tls=bad)
    with pytest.raises(RuntimeError, match="mosquitto exited") as err:
        broker.start(timeout=5)
    assert "nope.pem" in str(err.value) or "rror" in str(err.value), str(err.value)
    assert not broker.running()
