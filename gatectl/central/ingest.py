"""An ingest worker: stateless, one of N on an MQTT 5 shared subscription, so the broker
splits the devices' traffic between them and any of them may die.

    $share/<group>/<prefix>/v1/+/+/events | snapshots/+ | status | enroll/up | resync

Nothing is acknowledged before it is stored. paho runs with ``manual_ack``: a message is put
on a bounded queue (the broker sends at most ``receive_maximum`` unacknowledged ones), the
writer thread stores a batch in one transaction, and only after the commit are the batch's
PUBACKs sent and the devices' receipts (`gatectl.sync.delivery.Ack`) published. A worker
killed between the two loses nothing: its persistent session (fixed client id, session expiry)
keeps the unacknowledged messages, which the broker sends again when it is back, and a device
sends again what no receipt confirmed. Copies are dropped by event id (``ON CONFLICT DO
NOTHING``), so "at least once" on the wire is "exactly once" in the store.

Every message is hostile: size per topic kind, depth-bounded JSON, checked fields, the topic's
site and device as tokens. A malformed one is counted (per topic kind), logged within a token
bucket, acknowledged (a redelivery would not make it better) and never ends the worker; a
database that refuses writes is retried with backoff, holding the batch (nothing acknowledged).
"""

from __future__ import annotations

import collections
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gatectl.central.messages import MAX_SIZE, Malformed, json_object, request_fields, whole
from gatectl.central.registry import Registry, RegistryError
from gatectl.central.snapshots import SnapshotStore, snapshot_key
from gatectl.central.storage import Database, StorageError, Tx
from gatectl.config.central import CentralConfig
from gatectl.core.refusals import Refusals
from gatectl.core.safe_text import shown
from gatectl.sync.client import make_client, subscribed_flag
from gatectl.sync.delivery import MAX_ID_LEN, MAX_IDS, Ack
from gatectl.sync.inbound import is_token
from gatectl.sync.topics import VERSION, Topics

log = logging.getLogger("gatectl.central")

KINDS = ("events", "snapshots/+", "status", "enroll/up", "resync")
COUNTERS_EVERY_S = 2.0
SEEN_EVERY_S = 1.0  # how stale a device's last seen and lag may be in the database


@dataclass
class _Batch:
    """What one transaction stored: the receipts it owes and the messages it may now ack."""

    acks: dict[tuple[str, str], Ack] = field(default_factory=dict)
    events: list[tuple] = field(default_factory=list)
    snapshots: list[tuple[str, str, str, str, bytes]] = field(default_factory=list)
    statuses: list[tuple[str, str, str, int | None]] = field(default_factory=list)
    requests: list[tuple[str, str, str, dict, int | None]] = field(default_factory=list)
    # (site, device) -> the newest event time stored
    newest: dict[tuple[str, str], float] = field(default_factory=dict)

    def ack(self, site: str, device: str) -> Ack:
        return self.acks.setdefault((site, device), Ack())


def _text_field(body: dict, key: str, limit: int = 64) -> str:
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise Malformed(f"field '{key}' is not printable text of at most {limit}")
    return value


def _time(body: dict, key: str) -> float:
    value = body.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
        math.isfinite(value) and 0 <= value <= 1e11
    ):
        raise Malformed(f"field '{key}' is not a time")
    return float(value)


def _status_fields(body: dict) -> tuple[str, int | None]:
    """(state, the outbox rows the device reports pending) of a v1 status, or Malformed."""
    state = body.get("state")
    if body.get("v") != 1 or state not in ("online", "offline"):
        raise Malformed("not a v1 status with state online/offline")
    sync = body.get("sync")
    outbox = sync.get("outbox") if isinstance(sync, dict) else None
    pending = outbox.get("pending") if isinstance(outbox, dict) else None
    return state, pending if isinstance(pending, int) and 0 <= pending < 2**53 else None


class IngestWorker:
    """One worker process's MQTT client and writer thread."""

    def __init__(
        self,
        cfg: CentralConfig,
        db: Database,
        snapshots: SnapshotStore,
        registry: Registry,
        worker_id: str,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = cfg
        self.db = db
        self.snapshots = snapshots
        self.registry = registry
        self.worker_id = worker_id
        self.clock = clock
        self.prefix = cfg.broker.prefix
        self.sites = set(cfg.sites)
        self.client = make_client(
            cfg.broker.sync(), f"gatectl-central-{cfg.ingest.group}-{worker_id}"
        )
        self.client.manual_ack_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = subscribed_flag(self.client)
        self.inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.refusals = Refusals(per_s=1.0, burst=5)
        self.counters: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._run, name="central-ingest", daemon=True)
        self._last_resync: dict[tuple[str, str], float] = {}
        # (site, device) -> (when its newest stored event arrived, that event's lag), not yet
        # written to its devices row (`_flush_seen`)
        self._seen: dict[tuple[str, str], tuple[float, float]] = {}
        self.registry.publish = self._publish
        # a restarted worker goes on counting where it stopped (the metrics sum the workers)
        for name, value in db.query("SELECT name, value FROM counters WHERE worker = ?",
                                    [worker_id]):
            self.counters[name] = int(value)

    def start(self, timeout: float = 10.0) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.ingest.session_expiry_s
        props.ReceiveMaximum = self.cfg.ingest.receive_maximum
        b = self.cfg.broker
        self.client.connect(b.host, b.port, b.keepalive_s, clean_start=False, properties=props)
        self.client.loop_start()
        self._writer.start()
        if not self.connected.wait(timeout):
            raise ConnectionError(
                f"central worker: not subscribed at {b.host}:{b.port} in {timeout:.0f} s"
            )

    def stop(self) -> None:
        self._stop.set()
        if self._writer.is_alive():
            self._writer.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    def health(self) -> dict[str, Any]:
        return {"connected": self.connected.is_set(), "queued": self.inbox.qsize(),
                "writer_alive": self._writer.is_alive(), **self.counters}

    # ---- paho's thread ------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            return
        group, root = self.cfg.ingest.group, f"{self.prefix}/{VERSION}/+/+"
        client.subscribe(
            [(f"$share/{group}/{root}/{k}", SubscribeOptions(qos=1)) for k in KINDS]
        )

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(msg)  # bounded by the broker: receive_maximum unacknowledged at most

    def _publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    # ---- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        next_counters = next_seen = 0.0
        while not self._stop.is_set():
            batch = self._take()
            if batch:
                self._store(batch)
            if time.monotonic() >= next_seen:
                next_seen = time.monotonic() + SEEN_EVERY_S
                self._flush_seen()
            if time.monotonic() >= next_counters:
                next_counters = time.monotonic() + COUNTERS_EVERY_S
                self._save_counters()
        self._flush_seen()
        self._save_counters()

    def _take(self) -> list[mqtt.MQTTMessage]:
        try:
            first = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        out = [first]
        while len(out) < self.cfg.ingest.batch:
            try:
                out.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return out

    def _store(self, msgs: list[mqtt.MQTTMessage]) -> None:
        """Store, then ack; a database that refuses holds the batch and is retried."""
        done = self._check(msgs)
        delay = 0.1
        while True:
            try:
                self._commit(done)
                break
            except StorageError as exc:
                self.counters["store_failures"] += 1
                log.error("central worker %s: %s; retrying in %.1f s", self.worker_id,
                          shown(str(exc), 300), delay)
                if self._stop.wait(delay):
                    return  # unacknowledged: the broker sends them again
                delay = min(delay * 2, 5.0)
        for (site, device), ack in done.acks.items():
            self._send_receipt(site, device, ack)
        for site, device, kind, body, seq in done.requests:
            self._request(site, device, kind, body, seq)
        for m in msgs:
            self.client.ack(m.mid, m.qos)

    def _check(self, msgs: list[mqtt.MQTTMessage]) -> _Batch:
        """Every message checked (outside any transaction); the malformed counted once."""
        batch = _Batch()
        for m in msgs:
            try:
                self._one(m, batch)
            except Malformed as exc:
                self._malformed(m.topic, str(exc))
        return batch

    def _commit(self, batch: _Batch) -> None:
        """One transaction, one statement per kind of row (executemany: one pipeline on
        PostgreSQL), so a batch costs a few round trips; counted once it has committed."""
        if not (batch.events or batch.snapshots or batch.statuses):
            return
        now = self.clock()
        counts: collections.Counter[str] = collections.Counter()
        receipts = _Batch()  # a retried transaction must not receipt twice
        with self.db.write() as tx:
            self._store_events(tx, batch, receipts, now, counts)
            self._store_snapshots(tx, batch, receipts, now, counts)
            # device rows in one order in every worker (sorted; a device's statuses stay in
            # the order they came): two workers' batches wait for each other, never deadlock
            alerts = [(site, device) for site, device, state, pending
                      in sorted(batch.statuses, key=lambda s: s[:2])
                      if self._status(tx, site, device, state, pending, now)]
        for key, ts in receipts.newest.items():
            self._seen[key] = (now, max(0.0, now - ts))
        self.counters.update(counts)
        self.counters["statuses"] += len(batch.statuses)
        self.counters["alerts"] += len(alerts)
        for site, device in alerts:
            log.warning("ALERT device %s/%s went offline", site, device)
        for key, ack in receipts.acks.items():
            mine = batch.ack(*key)
            mine.events += ack.events
            mine.snapshots += ack.snapshots

    def _malformed(self, topic: str, why: str) -> None:
        kind = self._kind_of(topic)
        self.counters[f"malformed_{kind}"] += 1
        self.refusals.refuse(f"central {kind}", "malformed", f"{shown(topic, 120)}: {why}")

    def _kind_of(self, topic: str) -> str:
        parts = topic.split("/")
        head = len(self.prefix.split("/")) + 3  # prefix, v1, site, device
        rest = parts[head:] if len(parts) > head else ["?"]
        return "snapshots" if rest[0] == "snapshots" else "/".join(rest)[:16]

    def _one(self, msg: mqtt.MQTTMessage, batch: _Batch) -> None:
        head = f"{self.prefix}/{VERSION}/"
        parts = msg.topic[len(head):].split("/", 2) if msg.topic.startswith(head) else []
        if len(parts) < 3:
            raise Malformed("not a device topic")
        site, device, rest = parts
        if not is_token(site) or not is_token(device):
            raise Malformed("site or device is not a token")
        if self.sites and site not in self.sites:
            self.counters["other_site"] += 1
            return
        kind = "snapshots" if rest.startswith("snapshots/") else rest
        limit = MAX_SIZE.get(kind)
        if limit is None:
            raise Malformed("not an inbound topic")
        if len(msg.payload) > limit:
            raise Malformed(f"{len(msg.payload)} bytes > {limit}")
        if kind == "snapshots":
            self._snapshot(site, device, rest.split("/", 1)[1], bytes(msg.payload), batch)
            return
        body = json_object(msg.payload)
        if kind == "events":
            self._event(site, device, body, batch)
        elif kind == "status":
            batch.statuses.append((site, device, *_status_fields(body)))
        elif kind == "enroll/up":
            seq = whole(body, "seq") if "seq" in body else None
            try:
                fields = request_fields(body)
            except Malformed:
                if seq:
                    batch.ack(site, device).requests.append(seq)  # refused for good
                raise
            batch.requests.append((site, device, "enroll/up", fields, seq))
        elif kind == "resync":
            batch.requests.append((site, device, "resync", {}, whole(body, "seq")))
        # cmd/resp is the tool's: never reaches here (not subscribed)

    def _event(self, site: str, device: str, body: dict, batch: _Batch) -> None:
        eid = body.get("id")
        if not is_token(eid) or len(eid) > MAX_ID_LEN:
            raise Malformed("field 'id' is not an event id")
        seq, ts = whole(body, "seq"), _time(body, "ts")
        for key, want in (("site", site), ("device", device)):
            if key in body and body[key] != want:
                raise Malformed(f"field '{key}' is not the topic's")
        gate, kind, decision = (_text_field(body, k) for k in ("gate", "kind", "decision"))
        _text_field(body, "reason", 2000)
        batch.events.append((eid, site, device, seq, ts, gate, kind, decision,
                             json.dumps(body, ensure_ascii=False)))

    def _store_events(self, tx: Tx, batch: _Batch, receipts: _Batch, now: float,
                      counts: collections.Counter[str]) -> None:
        """New ids inserted, copies (a resend, a redelivery, another worker's race: ON
        CONFLICT) dropped; every one receipted."""
        if not batch.events:
            return
        ids = list(dict.fromkeys(e[0] for e in batch.events))
        held: set[str] = set()
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            held |= {r[0] for r in tx.execute(
                f"SELECT id FROM events WHERE id IN ({', '.join('?' * len(part))})", part)}
        fresh: dict[str, tuple] = {}
        newest = receipts.newest
        for e in batch.events:
            eid, site, device, ts = e[0], e[1], e[2], e[4]
            receipts.ack(site, device).events.append(eid)
            newest[(site, device)] = max(newest.get((site, device), 0.0), ts)
            if eid not in held:
                fresh.setdefault(eid, e)
        tx.executemany(
            "INSERT INTO events (id, site, device, seq, ts, gate, kind, decision, body, "
            "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            [(*e, now) for e in fresh.values()],
        )
        counts["events"] += len(fresh)
        counts["duplicates"] += len(batch.events) - len(fresh)

    def _flush_seen(self) -> None:
        """The devices' last seen and lag, written apart from the events: every worker's batch
        has events of most devices, and their rows held in the batch's transaction serialised
        the workers (and deadlocked them, locked in different orders: four PostgreSQL workers
        fell to a fifth of one). One short transaction, rows in sorted order; an older
        sighting (a slower worker's) never overwrites a newer one: last seen only moves on, and
        the lag is the newest event's by its own arrival time (``lag_at``; a status stored
        meanwhile moves last seen, not that). Kept for the next try when the database refuses:
        a stale "last seen" loses no event."""
        if not self._seen:
            return
        rows = [(site, device, at, at, lag, at)
                for (site, device), (at, lag) in sorted(self._seen.items())]
        newer = "devices.lag_at IS NULL OR devices.lag_at < excluded.lag_at"
        try:
            with self.db.write() as tx:
                tx.executemany(
                    "INSERT INTO devices (site, device, added_at, last_seen, lag_s, lag_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site, device) DO UPDATE SET "
                    "last_seen = CASE WHEN devices.last_seen IS NULL OR devices.last_seen < "
                    "excluded.last_seen THEN excluded.last_seen ELSE devices.last_seen END, "
                    f"lag_s = CASE WHEN {newer} THEN excluded.lag_s ELSE devices.lag_s END, "
                    f"lag_at = CASE WHEN {newer} THEN excluded.lag_at ELSE devices.lag_at END",
                    rows)
        except StorageError as exc:
            log.debug("devices' last seen not saved: %s", exc)
            return
        self._seen.clear()

    def _snapshot(self, site: str, device: str, eid: str, data: bytes, batch: _Batch) -> None:
        try:
            key = snapshot_key(site, device, eid)
        except ValueError:
            raise Malformed("snapshot topic without an event id") from None
        if not data:
            raise Malformed("an empty snapshot")
        batch.snapshots.append((eid, site, device, key, data))

    def _store_snapshots(self, tx: Tx, batch: _Batch, receipts: _Batch, now: float,
                         counts: collections.Counter[str]) -> None:
        """Each file durable in the store before its row; a copy is not written again."""
        if not batch.snapshots:
            return
        ids = [s[0] for s in batch.snapshots]
        held = {r[0] for r in tx.execute(
            f"SELECT event_id FROM snapshots WHERE event_id IN ({', '.join('?' * len(ids))})",
            ids)}
        rows = {}
        for eid, site, device, key, data in batch.snapshots:
            receipts.ack(site, device).snapshots.append(eid)
            if eid in held or eid in rows:
                continue
            try:
                self.snapshots.put(key, data)
            except OSError as exc:
                raise StorageError(f"snapshot store: {exc}") from None
            rows[eid] = (eid, site, device, key, len(data), now)
        # not copied onto the event's row: its event may be in another worker's transaction,
        # invisible here; the listing joins the two (`stored_events`)
        tx.executemany("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       list(rows.values()))
        counts["snapshots"] += len(rows)

    def _status(self, tx: Tx, site: str, device: str, state: str, pending: int | None,
                now: float) -> bool:
        """Store a device's state; True when it went offline now (an alert row written)."""
        before = tx.execute("SELECT state FROM devices WHERE site = ? AND device = ?",
                            [site, device])
        tx.execute(
            "INSERT INTO devices (site, device, added_at, state, state_at, last_seen, pending) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, device) DO UPDATE SET "
            "state = excluded.state, state_at = excluded.state_at, last_seen = "
            "excluded.last_seen, pending = excluded.pending",
            [site, device, now, state, now, now, pending or 0],
        )
        if state != "offline" or (before and before[0][0] == "offline"):
            return False
        tx.execute("INSERT INTO alerts (site, device, kind, at, detail) VALUES "
                   "(?, ?, 'offline', ?, ?)", [site, device, now, "status went offline"])
        return True

    def _request(self, site: str, device: str, kind: str, body: dict, seq: int | None) -> None:
        """Outside the batch's transaction (the registry has its own, and publishes); a
        refusal's reason goes back in the receipt, for the device's log."""
        why = ""
        try:
            if kind == "resync":
                last = self._last_resync.get((site, device), -1e9)
                if time.monotonic() - last < self.cfg.ingest.resync_every_s:
                    self.counters["resync_limited"] += 1
                    return  # not confirmed: the device asks again later
                self._last_resync[(site, device)] = time.monotonic()
                sent = self.registry.resync(site, device)
                self.counters["resyncs"] += 1
                log.info("resync of %s/%s: %d changes", site, device, sent)
            elif self.cfg.registry.device_requests != "own":
                self.counters["requests_refused"] += 1
                why = "device requests are refused here"
            else:
                d = self.registry.decide(site, device, body)
                self.counters["requests_accepted" if d.accepted else "requests_refused"] += 1
                if not d.accepted:
                    why = d.why
                    log.info("request from %s/%s for %s refused: %s", site, device,
                             shown(body["uid"], 64), d.why)
        except StorageError as exc:
            self.counters["store_failures"] += 1
            log.error("central worker %s: %s (the device asks again)", self.worker_id,
                      shown(str(exc), 300))
            return
        except (RegistryError, ValueError) as exc:  # templates that do not decode: for good
            self.counters["requests_refused"] += 1
            why = str(exc)
            self.refusals.refuse(f"central {kind}", "refused", str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad request must not end the worker
            self.counters["errors"] += 1
            self.refusals.refuse(f"central {kind}", "error", repr(exc))
            return
        if seq:
            ack = Ack()
            ack.requests.append(seq)
            if why:
                ack.refused[seq] = why
            self._send_receipt(site, device, ack)

    def _send_receipt(self, site: str, device: str, ack: Ack) -> None:
        topic = Topics(self.prefix, site, device).ack
        for start in range(0, max(len(ack.events), len(ack.snapshots), len(ack.requests)),
                           MAX_IDS):
            part = Ack(ack.events[start:start + MAX_IDS], ack.snapshots[start:start + MAX_IDS],
                       ack.requests[start:start + MAX_IDS], ack.refused if start == 0 else {})
            self.client.publish(topic, part.payload(), qos=1)

    def _save_counters(self) -> None:
        counts = dict(self.counters)
        if not counts:
            return
        try:
            with self.db.write() as tx:
                for name, value in counts.items():
                    tx.execute(
                        "INSERT INTO counters VALUES (?, ?, ?, ?) ON CONFLICT (worker, name) "
                        "DO UPDATE SET value = excluded.value, at = excluded.at",
                        [self.worker_id, name, value, self.clock()],
                    )
        except StorageError as exc:
            log.debug("counters not saved: %s", exc)


EVENT_COLUMNS = ("id", "site", "device", "ts", "gate", "kind", "decision", "snapshot")


def stored_events(db: Database, site: str | None = None, device: str | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
    """The newest stored events, each with its snapshot's key (or None), for the operator."""
    where, params = [], []
    for col, value in (("site", site), ("device", device)):
        if value:
            where.append(f"e.{col} = ?")
            params.append(value)
    rows = db.query(
        "SELECT e.id, e.site, e.device, e.ts, e.gate, e.kind, e.decision, s.ref FROM events e "
        "LEFT JOIN snapshots s ON s.event_id = e.id"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY e.ts DESC LIMIT ?", [*params, max(1, min(limit, 10000))])
    return [dict(zip(EVENT_COLUMNS, r)) for r in rows]
