"""The MQTT client: the only code that talks to the broker (paho-mqtt 2.x, MQTT 5).

Offline-first. Nothing is published straight from a gate: events, snapshots and enrollment
changes are rows in the SQLite outbox, written in the same transaction as what they report.
This client's thread drains the outbox in order while connected, QoS 1, at most
``max_inflight`` unacknowledged. A row is deleted only when the centre confirms it on the
``ack`` topic (`gatectl.sync.delivery`), never at the broker's PUBACK: a broker that dies without
its persistence file loses what it queued for an offline centre, so rows PUBACKed but not
confirmed within ``ack_timeout_s`` are sent again (the wait doubling per attempt). paho keeps
the unacknowledged messages of this process and re-sends them after a reconnect; a restart
starts again from the oldest row still in the outbox. Receivers drop duplicates by the event
id; nothing is lost when the broker is down for hours, loses its queue, or gatectl is
SIGKILLed mid-drain.

Sessions persist (clean_start=False, SessionExpiryInterval), so the broker keeps commands and
enrollments sent while the device was offline. A retained ``online`` status is published on
every connect and a retained ``offline`` Last Will covers a lost device. Incoming messages are
handed to this client's own thread through a bounded queue per topic kind, so the network loop
never waits on SQLite and a flood on one topic cannot crowd out the other; what arrives is checked
by `inbound` (size here in paho's callback, then depth, JSON and schema) and refused at a bounded
cost, never with a pause of the sync thread.
"""

from __future__ import annotations

import collections
import heapq
import json
import logging
import queue
import ssl
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gatectl import __version__
from gatectl.config.base import ConfigError
from gatectl.config.sync import SyncConfig
from gatectl.core.refusals import Refusals
from gatectl.core.safe_text import shown
from gatectl.store import Store
from gatectl.sync.delivery import MAX_ID_LEN, MAX_IDS, Ack, BadAck, parse_ack
from gatectl.sync.diagnose import ProblemLog, broker_at, explain
from gatectl.sync.enrollment import EnrollRejected, Replicator, resident_payload
from gatectl.sync.inbound import MAX_LIST_BYTES, Refused, enroll_limit, enrollment, list_change
from gatectl.sync.lists import ListRejected, ListReplicator
from gatectl.sync.topics import Topics

log = logging.getLogger("gatectl.sync")

TICK_S = 0.02
ACK_FLUSH_S = 0.05
BATCH = 500
INBOX_SIZE = 1000  # per topic kind
INBOX_BUDGET_S = 0.2  # inbound work per loop before the outbox gets its turn
# one round: 4 commands, 1 enrollment, 1 receipt, 1 plate-list change or pass revocation
CMD_SHARE = ("cmd", "cmd", "cmd", "cmd", "enroll", "ack", "lists")
PERMANENT_REFUSALS = {0x87, 0x90, 0x99}  # not authorised, topic invalid, payload format invalid
RECEIPT_BYTES = 3 * MAX_IDS * (MAX_ID_LEN + 4) + 256  # the largest receipt `delivery` allows
# the wait for the centre's receipt grows to 32 x ack_timeout_s, no further
MAX_RESEND_DOUBLINGS = 5


def subscribed_flag(client: mqtt.Client) -> threading.Event:
    """An event set once the broker granted a subscription (SUBACK) and cleared on disconnect:
    "ready" at CONNACK would let a message published in between reach no one."""
    flag = threading.Event()

    def on_subscribe(client: mqtt.Client, userdata: object, mid: int,
                     reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        if not any(rc.is_failure for rc in reason_codes):
            flag.set()

    client.on_subscribe = on_subscribe
    client.on_disconnect = lambda *_: flag.clear()
    return flag


def make_client(cfg: SyncConfig, client_id: str) -> mqtt.Client:
    """A paho client with credentials and TLS from the config; every bad file or certificate is
    a one-line ConfigError naming the key."""
    missing = cfg.missing_files()  # the same check as `config check` and `doctor`
    if missing:
        raise ConfigError(missing)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if cfg.username:
        password = None
        if cfg.password_file is not None:
            try:
                password = cfg.password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    [f"sync.password_file: cannot read {cfg.password_file} ({exc.strerror})"]
                ) from None
        c.username_pw_set(cfg.username, password)
    if cfg.tls is not None:
        try:
            c.tls_set(ca_certs=str(cfg.tls.ca),
                      certfile=None if cfg.tls.cert is None else str(cfg.tls.cert),
                      keyfile=None if cfg.tls.key is None else str(cfg.tls.key),
                      tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (ssl.SSLError, OSError, ValueError) as exc:
            which = "ca" if "verify" in str(exc).lower() or cfg.tls.cert is None else "cert"
            raise ConfigError([f"sync.tls.{which}: cannot load certificate/key ({exc})"]) from None
    return c


class SyncClient:
    def __init__(
        self,
        cfg: SyncConfig,
        topics: Topics,
        store: Store,
        snapshot_dir: Path,
        replicator: Replicator,
        on_command: Callable[[bytes], dict | None],
        device_health: Callable[[], dict],
        clock: Callable[[], float] = time.time,
        refusals: Refusals | None = None,
        upload_filter: Callable[[str, bytes], bytes | None] | None = None,
        lists: ListReplicator | None = None,
    ):
        """``store`` must be a connection of this thread's own (reads of the outbox must never
        see another thread's uncommitted transaction). ``device_health``: the whole device's
        health (`runtime.health`), published with the status; this client's own is `health()`.
        ``upload_filter(gate, jpeg)``: what a snapshot looks like when it leaves (`snapshots`:
        bystanders' faces blurred); None from it: the snapshot is not uploaded. ``lists``: the
        centre's plate changes and pass revocations (`sync.lists`; None: refused, counted)."""
        self.cfg = cfg
        self.snapshot_dir = Path(snapshot_dir)
        self.upload_filter = upload_filter
        self.topics = topics
        self.store = store
        self.replicator = replicator
        self.lists = lists
        self.on_command = on_command
        self.device_health = device_health
        self.clock = clock
        self.client = make_client(cfg, cfg.client_id or f"gatectl-{topics.site}-{topics.device}")
        self.client.will_set(topics.status, self._status_payload("offline"), qos=1, retain=True)
        self.client.max_inflight_messages_set(cfg.max_inflight)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_log = self._on_log
        self.connected = threading.Event()
        # TLS, login, unreachable: one line each, repeated with backoff
        self.problems = ProblemLog()
        self._answered = False  # the broker sent a CONNACK (either way) on the current connection
        # what paho logged last, for a drop before the CONNACK
        self._socket_error: str | None = None
        self.counters: collections.Counter[str] = collections.Counter()
        self.refusals = refusals or Refusals(cfg.refusals_per_s, cfg.refusal_burst)
        self.limits = {
            "cmd": cfg.max_command_bytes,
            "enroll": cfg.max_enroll_bytes or enroll_limit(cfg.max_templates, replicator.dim),
            "ack": RECEIPT_BYTES,
            "lists": MAX_LIST_BYTES,
        }
        self._kinds = {
            topics.cmd: "cmd",
            topics.enroll_device: "enroll",
            topics.enroll_site: "enroll",
            topics.ack: "ack",
            topics.lists_device: "lists",
            topics.lists_site: "lists",
        }
        # (mid, reason) from paho's thread
        self._acks: collections.deque[tuple[int, int]] = collections.deque()
        # mid -> (outbox seq, resent); this thread only
        self._inflight: dict[int, tuple[int, bool]] = {}
        # seq PUBACKed, not yet confirmed by the centre -> sends so far
        self._awaiting: dict[int, int] = {}
        self._due: list[tuple[float, int]] = []  # heap of (monotonic time to send again, seq)
        self._done: list[int] = []
        self._cursor = 0  # highest seq handed to paho by this process
        self._inbox: dict[str, queue.Queue[mqtt.MQTTMessage]] = {
            kind: queue.Queue(INBOX_SIZE) for kind in self.limits
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt-sync", daemon=True)
        self._outage_since: float | None = time.monotonic()

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        backfilled = self.store.backfill_enrollments()  # residents from before sync was on
        if backfilled:
            log.info("%d residents enrolled before sync go up to the centre", backfilled)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        # the broker never sends a packet bigger than our largest limit (plus topic and
        # properties): a 128 MB message must not even reach paho's buffers
        props.MaximumPacketSize = max(self.limits.values()) + 4096
        self.client.connect_async(
            self.cfg.host, self.cfg.port, self.cfg.keepalive_s, clean_start=False, properties=props
        )
        self.client.loop_start()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Drain what was acknowledged, mark the device offline (retained), disconnect."""
        self._stop.set()
        self._thread.join(timeout)
        if self.connected.is_set():
            info = self.client.publish(
                self.topics.status, self._status_payload("offline"), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
            self._flush_acks(force=True)
        self.client.disconnect()
        self.client.loop_stop()

    # ---- paho callbacks (paho's network thread: no SQLite, no waiting) -----------------------

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        self._answered = True
        if reason_code.is_failure:
            self.counters["connect_failures"] += 1
            self.problems.report(explain(self.cfg, refused=str(reason_code)))
            return
        self.problems.solved()
        t = self.topics
        client.subscribe([(t.cmd, 1), (t.enroll_device, 1), (t.enroll_site, 1), (t.ack, 1),
                          (t.lists_device, 1), (t.lists_site, 1)])
        client.publish(t.status, self._status_payload("online"), qos=1, retain=True)
        if self._outage_since is not None:
            log.info(
                "MQTT connected to %s:%d after %.0f s (session %s)",
                self.cfg.host,
                self.cfg.port,
                time.monotonic() - self._outage_since,
                "resumed" if flags.session_present else "new",
            )
            self._outage_since = None
        self.counters["connects"] += 1
        self.connected.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        """paho calls this inside its ``except OSError`` around the connect: the exception (TLS
        verification, refused, unreachable) is the current one."""
        self.counters["connect_failures"] += 1
        self.problems.report(explain(self.cfg, sys.exc_info()[1]))

    def _on_log(self, client: mqtt.Client, userdata: object, level: int, buf: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self._socket_error = buf

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        self.connected.clear()
        answered, self._answered = self._answered, False
        if self._stop.is_set():
            return  # our own disconnect
        if not answered:  # closed before any CONNACK: TLS alert, plaintext against TLS, ACL, ...
            self.counters["connect_failures"] += 1
            self.problems.report(explain(self.cfg, dropped=self._socket_error))
            self._socket_error = None
            return
        self._socket_error = None
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("MQTT connection to %s:%d lost (%s); events wait in the outbox",
                        self.cfg.host, self.cfg.port, reason_code)

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason_code: ReasonCode, properties: Properties) -> None:
        self._acks.append((mid, reason_code.value))

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        kind = self._kinds.get(msg.topic)
        if kind is None:
            self.refusals.refuse("other", "unexpected_topic", msg.topic)
            return
        if len(msg.payload) > self.limits[kind]:
            self.refusals.refuse(
                kind, "too_large", f"{len(msg.payload)} bytes > {self.limits[kind]}"
            )
            return
        try:
            self._inbox[kind].put_nowait(msg)
        except queue.Full:
            self.counters["inbox_overflow"] += 1
            self.refusals.refuse(
                kind, "inbox_full", "message not handled (the sender will time out)"
            )

    # ---- this client's thread ----------------------------------------------------------------

    def _run(self) -> None:
        next_health = 0.0
        next_flush = 0.0
        while not self._stop.is_set():
            busy = False
            try:
                busy = self._handle_inbox()
                self._take_acks()
                if self.connected.is_set():
                    self._resend()
                    self._drain()
                now = time.monotonic()
                if now >= next_flush:
                    self._flush_acks()
                    next_flush = now + ACK_FLUSH_S
                if self.connected.is_set() and now >= next_health:
                    self.publish_status()
                    next_health = now + self.cfg.health_interval_s
            except Exception as exc:  # a bad row must not end the sync thread, nor pause it
                if self.refusals.refuse("sync", "loop_error", f"{type(exc).__name__}: {exc}"):
                    log.debug("sync loop error", exc_info=True)
            if not busy:
                self._stop.wait(TICK_S)
        self._take_acks()

    def _drain(self) -> None:
        room = self.cfg.max_inflight - len(self._inflight)
        if room <= 0:
            return
        for row in self.store.outbox_after(self._cursor, min(room, BATCH)):
            topic, payload, props = self._render(row)
            self._cursor = row["seq"]
            if topic is None:
                self._done.append(row["seq"])  # nothing left to send (deleted meanwhile)
                continue
            info = self.client.publish(topic, payload, qos=1, properties=props)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self._cursor = row["seq"] - 1  # not taken by paho: try again next tick
                return
            self._inflight[info.mid] = (row["seq"], False)

    def _resend(self) -> None:
        """Rows the broker took but the centre has not confirmed in time: publish them again,
        oldest due first, within the in-flight window."""
        now = time.monotonic()
        room = self.cfg.max_inflight - len(self._inflight)
        seqs: list[int] = []
        while self._due and self._due[0][0] <= now and len(seqs) < min(room, BATCH):
            seq = heapq.heappop(self._due)[1]
            if seq in self._awaiting:
                seqs.append(seq)
        if not seqs:
            return
        rows = {r["seq"]: r for r in self.store.outbox_rows(seqs)}
        for seq in seqs:
            row = rows.get(seq)
            topic, payload, props = self._render(row) if row is not None else (None, b"", None)
            if topic is None:  # confirmed or deleted meanwhile
                self._awaiting.pop(seq, None)
                continue
            info = self.client.publish(topic, payload, qos=1, properties=props)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                heapq.heappush(self._due, (now + self.cfg.ack_timeout_s, seq))
                continue
            self._inflight[info.mid] = (seq, True)
            self.counters["resent"] += 1

    def _take_acks(self) -> None:
        while self._acks:
            mid, reason = self._acks.popleft()
            seq, resent = self._inflight.pop(mid, (None, False))
            if seq is None:
                continue  # a status publish, a response: not from the outbox
            if reason >= 0x80 and reason not in PERMANENT_REFUSALS:
                self.counters["broker_refusals"] += 1  # transient (quota, busy): send again
                if resent:
                    heapq.heappush(self._due, (time.monotonic() + self.cfg.ack_timeout_s, seq))
                else:
                    self._cursor = min(self._cursor, seq - 1)
                continue
            if reason >= 0x80:
                self.counters["broker_rejected"] += 1
                log.error(
                    "broker refused outbox entry %d for good (reason 0x%02X); dropped", seq, reason
                )
                self._awaiting.pop(seq, None)
                self._done.append(seq)
                continue
            sends = self._awaiting.get(seq, 0) + 1
            self._awaiting[seq] = sends  # kept until the centre confirms it
            wait = self.cfg.ack_timeout_s * 2 ** min(sends - 1, MAX_RESEND_DOUBLINGS)
            heapq.heappush(self._due, (time.monotonic() + wait, seq))
            self.counters["published"] += 1

    def _take_receipt(self, payload: bytes | bytearray) -> None:
        """The centre's receipt: the rows it confirms are deleted for good."""
        try:
            ack = parse_ack(payload)
        except BadAck as exc:
            self.counters["ack_malformed"] += 1
            log.warning("receipt on %s refused: %s", self.topics.ack, exc)
            return
        done = self.store.outbox_acked(ack.events, ack.snapshots, ack.requests)
        for seq in done:
            self._awaiting.pop(seq, None)
        self.counters["confirmed"] += len(done)
        self._log_refused(ack, set(done))

    def _log_refused(self, ack: Ack, done: set[int]) -> None:
        """The centre's reasons for requests it refused, one line each - only for requests of
        this device's outbox it has just confirmed, so a forged receipt cannot fill the log."""
        for seq, why in ack.refused.items():
            if seq in done:
                self.counters["requests_refused"] += 1
                log.warning("the centre refused request #%d: %s", seq, shown(why, 200))

    def _flush_acks(self, force: bool = False) -> None:
        if force:
            self._take_acks()
        if self._done:
            done, self._done = self._done, []
            self.store.outbox_done(done)

    def _render(self, row: dict) -> tuple[str | None, bytes, Properties | None]:
        kind, ref, t = row["kind"], row["ref"], self.topics
        if kind == "event":
            if row["ts"] is None:
                return None, b"", None
            body = {
                "v": 1,
                "id": ref,
                "seq": row["seq"],
                "site": t.site,
                "device": t.device,
                "ts": row["ts"],
                "time": datetime.fromtimestamp(row["ts"], timezone.utc).isoformat(),
                "gate": row["gate"],
                "kind": row["event_kind"],
                "decision": row["decision"],
                "reason": row["reason"],
                "score": row["score"],
                "resident": row["resident_uid"],
                "watchlist": row["watchlist_uid"],
                "snapshot": row["snapshot"] is not None,
            }
            return t.events, json.dumps(body, ensure_ascii=False).encode(), None
        if kind == "snapshot":
            if row["snapshot"] is None:
                return None, b"", None
            try:
                data = (self.snapshot_dir / row["snapshot"]).read_bytes()
            except OSError:
                self.counters["snapshots_missing"] += 1
                return None, b"", None
            if self.upload_filter is not None:
                filtered = self.upload_filter(row["gate"], data)
                if filtered is None:
                    self.counters["snapshots_unreadable"] += 1
                    return None, b"", None
                data = filtered
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = "image/jpeg"
            return t.snapshot(ref), data, props
        if kind == "enroll":  # a request: the centre decides, signs and publishes the change
            request = resident_payload(self.store, ref, t.device)
            if request is None:
                return None, b"", None
            return t.enroll_up, json.dumps({**request, "seq": row["seq"]}).encode(), None
        return t.resync, json.dumps({"v": 1, "device": t.device, "seq": row["seq"]}).encode(), None

    def _handle_inbox(self) -> bool:
        """Commands first (small, time-critical: a door.open expires in seconds), with a share
        for enrollments (idempotent, a resync repairs what an overflow dropped), until both
        queues are empty or the time budget is spent; True if messages are left. Each message
        on its own, so one that breaks a handler costs only itself."""
        deadline = time.monotonic() + INBOX_BUDGET_S
        while time.monotonic() < deadline:
            took = False
            for kind in CMD_SHARE:
                try:
                    msg = self._inbox[kind].get_nowait()
                except queue.Empty:
                    continue
                took = True
                try:
                    if kind == "ack":
                        self._take_receipt(msg.payload)
                        continue
                    if kind == "lists":
                        self._apply_list(msg.payload)
                        continue
                    body = (
                        self.on_command(bytes(msg.payload))  # paho may hand a bytearray
                        if kind == "cmd"
                        else self._apply_enrollment(msg)
                    )
                    if body is not None:
                        self._respond(msg, body)
                except Exception as exc:  # a bug for one message: counted, logged within budget
                    if self.refusals.refuse(kind, "handler_error", f"{type(exc).__name__}: {exc}"):
                        log.debug("handler error", exc_info=True)
            if not took:
                return False
        return True

    def _apply_enrollment(self, msg: mqtt.MQTTMessage) -> dict | None:
        try:
            body = enrollment(msg.payload, self.cfg.max_templates, self.cfg.max_json_depth)
        except Refused as exc:  # counted by reason in `refusals` only
            return (
                {"ok": False, "error": str(exc)}
                if self.refusals.refuse("enroll", exc.reason, exc.detail)
                else None
            )
        try:
            result = self.replicator.receive(body)
        except EnrollRejected as exc:
            self.counters["enroll_rejected"] += 1
            return (
                {"ok": False, "error": shown(exc)}
                if self.refusals.refuse("enroll", "rejected", str(exc))
                else None
            )
        self.counters["enroll_applied" if result == "applied" else "enroll_ignored"] += 1
        log.info(
            "enrollment %s %s v%d: %s",
            body["type"],
            shown(body["uid"]),
            body["version"],
            shown(result),
        )
        return {"ok": True, "uid": body["uid"], "version": body["version"], "result": result}

    def _apply_list(self, payload: bytes | bytearray) -> None:
        """A plate-list change or pass revocation from the centre: checked, verified, applied
        when newer (fire and forget: a resync repairs what was lost)."""
        try:
            body = list_change(payload, self.cfg.max_json_depth)
            if self.lists is None:
                raise ListRejected("plate lists and pass revocations are not taken here")
            result = self.lists.receive(body)
        except Refused as exc:
            self.refusals.refuse("lists", exc.reason, exc.detail)
            return
        except ListRejected as exc:
            self.counters["lists_rejected"] += 1
            self.refusals.refuse("lists", exc.reason, str(exc))
            return
        self.counters["lists_applied" if result == "applied" else "lists_ignored"] += 1
        log.info("list change %s v%d: %s", body["type"], body["version"], shown(result))

    def _respond(self, msg: mqtt.MQTTMessage, body: dict) -> None:
        """MQTT 5 request/response: to the message's response topic, with its correlation data.
        Only topics of this device's own response subtree are used: a response topic naming
        anything else (another device's events, the centre's inbox) gets the default one."""
        req = getattr(msg, "properties", None)
        topic = getattr(req, "ResponseTopic", None)
        if topic is None and msg.topic != self.topics.cmd:
            return  # enrollments without a response topic are fire-and-forget
        if (
            topic is not None
            and topic != self.topics.cmd_resp
            and not topic.startswith(self.topics.cmd_resp + "/")
        ):
            self.counters["response_topic_refused"] += 1
            topic = None
        props = Properties(PacketTypes.PUBLISH)
        corr = getattr(req, "CorrelationData", None)
        if corr is not None:
            props.CorrelationData = corr
        self.client.publish(
            topic or self.topics.cmd_resp, json.dumps(body).encode(), qos=1, properties=props
        )

    def publish_status(self) -> None:
        self.client.publish(
            self.topics.status, self._status_payload("online", self.health()), qos=1, retain=True
        )

    def health(self) -> dict:
        """This client's counters (the status topic's ``sync``): connection, outbox, refusals."""
        return {"connected": self.connected.is_set(), "outbox": self.store.outbox_stats(),
                "inflight": len(self._inflight), "awaiting_receipt": len(self._awaiting),
                "announcements": [a["text"] for a in self.store.announcements()],
                **self.counters, "refused": self.refusals.counts()}

    def _status_payload(self, state: str, extra: dict | None = None) -> bytes:
        body = {"v": 1, "state": state, "site": self.topics.site, "device": self.topics.device,
                "version": __version__, "ts": self.clock()}
        if extra is not None:
            body["sync"] = extra
            try:
                body["health"] = self.device_health()
            # health is best effort (any component may fail to report); the status must go out
            except Exception as exc:  # noqa: BLE001
                body["health"] = {"error": str(exc)}
        return json.dumps(body).encode()


def probe(cfg: SyncConfig, client_id: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Connect once with the configured TLS and credentials: (ok, one line)."""
    c = make_client(cfg, client_id)  # ConfigError for a missing or bad file
    done = threading.Event()
    outcome: list[str] = []
    errors: list[str] = []

    def on_connect(client, userdata, flags, reason_code, properties):
        outcome.append("" if not reason_code.is_failure else explain(cfg, refused=str(reason_code)))
        done.set()

    def on_disconnect(client, userdata, flags, reason_code, properties):
        if not done.is_set():
            outcome.append(explain(cfg, dropped=errors[-1] if errors else None))
            done.set()

    def on_log(client, userdata, level, buf):
        if level == mqtt.MQTT_LOG_ERR:
            errors.append(buf)

    c.on_connect, c.on_disconnect, c.on_log = on_connect, on_disconnect, on_log
    c.connect_timeout = timeout
    try:
        c.connect(cfg.host, cfg.port, cfg.keepalive_s)
    except (OSError, ValueError) as exc:
        return False, explain(cfg, exc)
    c.loop_start()
    try:
        if not done.wait(timeout):
            return False, f"{broker_at(cfg)}: no answer to CONNECT within {timeout:.0f} s"
    finally:
        c.disconnect()
        c.loop_stop()
    if outcome[0]:
        return False, outcome[0]
    how = "TLS" if cfg.tls is not None else "plaintext (no sync.tls)"
    who = f", user '{shown(cfg.username)}'" if cfg.username else ""
    return True, f"{broker_at(cfg)}: connected ({how}{who})"
