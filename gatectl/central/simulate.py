"""A faithful generator of a device's messages, for the centre's tests and benchmark: the same
topics, payloads and delivery rule as `gatectl.sync.client` (an event's JSON as ``_render``
makes it, its snapshot bytes on ``snapshots/<id>``, a retained status with a Last Will), and
the same end-to-end receipt: a message is pending until the centre's ``ack`` names it, and
sent again after ``resend_s`` otherwise. Thousands of these fit in one process, where real
devices (App, store, models) would not.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from ulid import ULID

from gatectl.sync.delivery import BadAck, parse_ack
from gatectl.sync.topics import Topics


class SimDevice:
    def __init__(self, host: str, port: int, site: str, device: str, prefix: str = "gatectl",
                 resend_s: float = 3.0):
        self.topics = Topics(prefix, site, device)
        self.resend_s = resend_s
        self.seq = 0
        self.lock = threading.Lock()
        # topic of the row ("events" / "snapshots") and id -> (topic, payload, sent at)
        self.pending: dict[tuple[str, str], tuple[str, bytes, float]] = {}
        self.confirmed: set[str] = set()
        self.sent_at: dict[str, float] = {}
        self.resent = 0
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"sim-{site}-{device}", protocol=mqtt.MQTTv5)
        self.client.will_set(self.topics.status, self._status("offline"), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, 30)
        self.client.loop_start()

    def wait_ready(self, timeout: float = 15.0) -> None:
        if not self.subscribed.wait(timeout):
            raise TimeoutError(f"{self.topics.device}: not subscribed in {timeout:.0f} s")

    def _status(self, state: str) -> bytes:
        return json.dumps({"v": 1, "device": self.topics.device, "site": self.topics.site,
                           "state": state, "ts": time.time(),
                           "sync": {"outbox": {"pending": len(self.pending)}}}).encode()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason_code: object, properties: object) -> None:
        client.subscribe(self.topics.ack, qos=1)
        client.publish(self.topics.status, self._status("online"), qos=1, retain=True)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            ack = parse_ack(msg.payload)
        except BadAck:
            return
        with self.lock:
            for eid in ack.events:
                self.pending.pop(("events", eid), None)
                self.confirmed.add(eid)
            for eid in ack.snapshots:
                self.pending.pop(("snapshots", eid), None)

    def event(self, snapshot: bytes | None = None, kind: str = "access") -> str:
        """One event (and its snapshot), as the device's outbox drain publishes them."""
        eid = str(ULID())
        ts = time.time()
        with self.lock:
            self.seq += 1
            body = {"v": 1, "id": eid, "seq": self.seq, "site": self.topics.site,
                    "device": self.topics.device, "ts": ts,
                    "time": datetime.fromtimestamp(ts, timezone.utc).isoformat(),
                    "gate": "lobby", "kind": kind, "decision": "denied",
                    "reason": "unknown face", "score": 0.31, "resident": None,
                    "watchlist": None, "snapshot": snapshot is not None}
            rows: list[tuple[str, str, str, bytes, Properties | None]] = [
                ("events", eid, self.topics.events, json.dumps(body).encode(), None)]
            if snapshot is not None:
                jpeg = Properties(PacketTypes.PUBLISH)
                jpeg.ContentType = "image/jpeg"
                rows.append(("snapshots", eid, self.topics.snapshot(eid), snapshot, jpeg))
            for kind_, ref, topic, payload, _ in rows:
                self.pending[(kind_, ref)] = (topic, payload, time.monotonic())
            self.sent_at[eid] = ts
        for _, _, topic, payload, props in rows:
            self.client.publish(topic, payload, qos=1, properties=props)
        return eid

    def resend(self) -> int:
        """Send again what no receipt confirmed within ``resend_s`` (the device's rule)."""
        now = time.monotonic()
        with self.lock:
            due = [(k, v) for k, v in self.pending.items() if now - v[2] >= self.resend_s]
            for k, (topic, payload, _) in due:
                self.pending[k] = (topic, payload, now)
        for _, (topic, payload, _) in due:
            self.client.publish(topic, payload, qos=1)
        self.resent += len(due)
        return len(due)

    def close(self) -> None:
        self.client.disconnect()  # a clean stop: no Last Will
        self.client.loop_stop()
