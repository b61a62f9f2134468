"""`gatectl central`: a reference for the central side, so a technician can test a site
without the real central server (and the tests have a real counterpart on the broker).

    gatectl central keygen --out central.key [--kid K]       Ed25519 key that signs commands
                                                              and enrollment changes
    gatectl central serve --site S --key central.key [--kid K]
                          [--device-requests own|refuse] [--replicate device|site]
                          [--state F]
                                                              print live events and statuses as
                                                              JSON lines; confirm them to each
                                                              device (ack); decide the devices'
                                                              enrollment requests and publish
                                                              accepted ones signed; answer
                                                              resync requests
    gatectl central enroll --site S --key central.key --name N --unit U --photo P
                           [--photo P ...] [--uid U]
    gatectl central delete --site S --key central.key --uid U
    gatectl central cmd --site S --device D --key central.key --kid K door.open door=front

One key (``--key``, from `keygen`) signs commands and enrollment changes; devices pin its public
half in ``sync.command_keys``. Connection options for all but keygen: --host, --port, --prefix,
--username, --password-file, --ca, --cert, --key-file (TLS). Versions are milliseconds since
the epoch unless --version is given, so each new change from the centre is newer than the last
(a device refuses a version beyond its clock plus ``sync.clock_skew_s``).
"""

from __future__ import annotations

import argparse
import collections
import json
import queue
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gatectl.central import operator
from gatectl.central.messages import (
    MAX_SIZE,
    Malformed,
    has_credential,
    json_object,
    request_fields,
    text,
    whole,
)
from gatectl.config.base import ConfigError
from gatectl.config.sync import SyncConfig, TlsConfig
from gatectl.core.errors import GatectlError, UsageError
from gatectl.core.safe_text import shown
from gatectl.sync.client import make_client, subscribed_flag
from gatectl.sync.delivery import MAX_ID_LEN, MAX_IDS, Ack
from gatectl.sync.signing import (
    CommandRejected,
    generate_private_key,
    load_private_key,
    public_key_b64,
    save_private_key,
    sign_change,
    sign_command,
    verify_change,
)
from gatectl.sync.topics import VERSION, Topics, device_of


def version_now() -> int:
    return int(time.time() * 1000)


RESYNC_EVERY_S = 10.0  # one full resync per device per this: a device cannot make the centre flood
ACK_FLUSH_S = 0.05


class Central:
    """The centre's side of the topic tree for one site: what `serve` runs and the tests use.

    Everything that arrives on a device's topic is data: schema-checked, counted when
    malformed, never relayed as it came and never executed. Events and snapshots are confirmed
    to their device on its ``ack`` topic (batched) once held here, and kept once by event id.
    Enrollment requests from a device (``enroll/up``) are decided here (``device_requests``:
    ``own`` - a device may add residents and change or remove only those it added; ``refuse``
    - nothing from a device is accepted) and what is accepted is published as a new change
    signed with the centre's key. A resident's cards, PIN hash and TOTP secret travel in the
    change and its resyncs like the templates, and go where ``replicate`` sends the change (the
    registry, `gatectl.central.registry`, sends them site-wide whatever the face consent)."""

    def __init__(
        self,
        cfg: SyncConfig,
        site: str,
        relay: bool = True,
        client_id: str | None = None,
        key: Ed25519PrivateKey | None = None,
        kid: str = "central-1",
        device_requests: str = "own",
        state: Path | None = None,
        replicate: str = "device",
    ):
        """A fixed ``client_id`` makes the session persistent: the broker keeps what arrives
        while this side is away (the real centre must not miss events either). ``key`` signs
        enrollment changes (pushes, accepted requests); without it nothing is relayed.
        ``state``: an SQLite file keeping the signed changes and which device added which
        resident across restarts - without it a restarted centre would take a device's request
        for a resident it has forgotten as a new resident, and let that device overwrite it."""
        self.cfg = cfg
        self.site = site
        self.relay = relay
        self.key = key
        self.kid = kid
        self.device_requests = device_requests
        self.replicate = replicate
        self.persistent = client_id is not None
        self.root = f"{cfg.prefix}/{VERSION}/{site}"
        self.client = make_client(
            cfg, client_id or f"gatectl-central-{site}-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = subscribed_flag(self.client)
        self.lock = threading.Lock()
        self.counters: collections.Counter[str] = collections.Counter()
        self.events: dict[str, dict] = {}  # event id -> event (duplicates dropped by id)
        # device -> seq of events in arrival order (first copies)
        self.order: dict[str, list[int]] = {}
        self.duplicates = 0
        self.statuses: dict[str, dict] = {}
        self.snapshots: dict[str, bytes] = {}
        self.residents: dict[str, dict] = {}  # uid -> newest signed change (what a resync sends)
        self.owners: dict[str, str] = {}  # uid -> device that added it, or "central"
        self.responses: queue.Queue[tuple[bytes | None, dict]] = queue.Queue(1000)
        self.printer: Callable[[dict], None] | None = None  # for `serve`
        self._acks: dict[str, Ack] = {}
        self._last_resync: dict[str, float] = {}
        self._last_log: dict[str, float] = {}
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="central-ack", daemon=True)
        self._db: sqlite3.Connection | None = None
        if state is not None:
            self._db = sqlite3.connect(str(state), check_same_thread=False, isolation_level=None)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS changes (uid TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                "body TEXT NOT NULL)"
            )
            for uid, owner, body in self._db.execute("SELECT uid, owner, body FROM changes"):
                self.residents[uid], self.owners[uid] = json.loads(body), owner

    def start(self, timeout: float = 10.0) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if self.persistent else 0
        self.client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s,
                            clean_start=not self.persistent, properties=props)
        self.client.loop_start()
        self._flusher.start()
        if not self.connected.wait(timeout):
            raise ConnectionError(
                f"central: not subscribed at {self.cfg.host}:{self.cfg.port} in {timeout:.0f} s"
            )

    def stop(self) -> None:
        self._stop.set()
        if self._flusher.is_alive():
            self._flusher.join(2)
        self._flush_acks()
        self.client.disconnect()
        self.client.loop_stop()
        if self._db is not None:
            self._db.close()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if not reason_code.is_failure:
            client.subscribe(f"{self.root}/#", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        """paho's thread: nothing that arrives may end it (a KeyError on ``{}`` once did)."""
        try:
            self._handle(msg)
        except Malformed as exc:
            self.counters["malformed"] += 1
            self._warn("malformed", f"central: message on {shown(msg.topic)} refused: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug here must cost one message, not the centre
            self.counters["errors"] += 1
            self._warn(
                "error", f"central: message on {shown(msg.topic)} not handled: {shown(repr(exc))}"
            )

    def _warn(self, kind: str, line: str) -> None:
        """At most one line per kind and second on stderr (a flood of junk must not flood it)."""
        now = time.monotonic()
        if now - self._last_log.get(kind, -1.0) >= 1.0:
            self._last_log[kind] = now
            print(line, file=sys.stderr, flush=True)

    def _handle(self, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == f"{self.root}/enroll":
            self._learn(msg.payload)  # a push by another centre tool (`central enroll`)
            return
        where = device_of(msg.topic, self.cfg.prefix)
        if where is None or where[0] != self.site:
            return
        _, device, rest = where
        kind = "snapshots" if rest.startswith("snapshots/") else rest
        if kind not in MAX_SIZE:
            return  # the centre's own down topics (cmd, enroll, ack): nothing to do
        if len(msg.payload) > MAX_SIZE[kind]:
            raise Malformed(f"{len(msg.payload)} bytes > {MAX_SIZE[kind]}")
        if kind == "snapshots":
            eid = rest.split("/", 1)[1]
            if not 0 < len(eid) <= MAX_ID_LEN or "/" in eid:
                raise Malformed("snapshot topic without an event id")
            self.snapshots[eid] = bytes(msg.payload)  # paho may hand a bytearray
            self._ack(device, "snapshots", eid)
            return
        body = json_object(msg.payload)
        if kind == "events":
            eid, seq = text(body, "id", MAX_ID_LEN), whole(body, "seq")
            with self.lock:
                first = eid not in self.events
                if first:
                    self.events[eid] = body
                    self.order.setdefault(device, []).append(seq)
                else:
                    self.duplicates += 1
            # a copy again: confirm again (the first receipt was lost)
            self._ack(device, "events", eid)
            if first:
                self._print({"topic": "events", **body})
        elif kind == "status":
            if body.get("v") != 1 or body.get("state") not in ("online", "offline"):
                raise Malformed("not a v1 status with state online/offline")
            self.statuses[device] = body
            self._print({"topic": "status", "device": device, "state": body.get("state")})
        elif kind == "enroll/up":
            request_seq = whole(body, "seq") if "seq" in body else None
            try:
                decided = self._decide(device, request_fields(body))
            except Malformed:
                decided = True  # refused for good: asking again would not change it
                raise
            finally:
                if request_seq is not None and decided:
                    self._ack(device, "requests", request_seq)  # the device need not ask again
        elif kind == "resync":
            seq = whole(body, "seq")
            # only the serving centre answers (and confirms) it
            if self.relay and self._resync(device):
                self._ack(device, "requests", seq)
        elif kind == "cmd/resp":
            if not isinstance(body.get("ok"), bool):
                raise Malformed("a response without 'ok'")
            corr = getattr(getattr(msg, "properties", None), "CorrelationData", None)
            try:
                self.responses.put_nowait((corr, body))
            except queue.Full:
                self.counters["responses_dropped"] += 1

    def _decide(self, device: str, req: dict) -> bool:
        """Accept or refuse a device's request (an accepted one becomes a signed change); False
        when this instance does not decide (no key, or not serving), so the device asks again."""
        self._print({"topic": "enroll/up", "device": device, "uid": req["uid"], "op": req["op"]})
        if not self.relay:
            return False
        if self.key is None:
            self.counters["requests_undecided"] += 1
            self._warn(
                "nokey", "central: no signing key (--key): enrollment requests are not decided"
            )
            return False
        with self.lock:
            owner = self.owners.get(req["uid"])
        why = ("device requests are refused here" if self.device_requests != "own"
               else "not this device's resident" if owner is not None and owner != device
               else "a new resident needs a credential" if owner is None and req["op"] == "upsert"
               and not has_credential(req) else None)
        if why is not None:
            self.counters["requests_refused"] += 1
            self._print({"topic": "enroll/up", "device": device, "uid": req["uid"], "refused": why})
            return True
        # back to the device it came from, not the whole site: a face enrolled at one door goes
        # further only by consent (``replicate="site"``: every resident of this site gave it;
        # per resident, the consent scope the request carries, which the registry keeps:
        # `gatectl.central.registry`). The signed change itself carries no scope.
        req.pop("consent", None)
        target = None if self.replicate == "site" else device
        self.push({"v": 1, **req, "origin": device}, device=target, wait=False)
        self.counters["requests_accepted"] += 1  # after: a reader of the counter sees the owner
        return True

    def _resync(self, device: str) -> bool:
        """Send the device every signed change held; False when it asked too soon (it will ask
        again: the request is not confirmed)."""
        now = time.monotonic()
        if now - self._last_resync.get(device, -RESYNC_EVERY_S) < RESYNC_EVERY_S:
            self.counters["resync_limited"] += 1
            return False
        self._last_resync[device] = now
        with self.lock:
            changes = [c for c in self.residents.values() if c.get("device") in ("*", device)]
        for change in changes:  # signed for the site or this device: valid on its own topic
            self.client.publish(f"{self.root}/{device}/enroll", json.dumps(change).encode(), qos=1)
        self._print({"topic": "resync", "device": device, "sent": len(changes)})
        return True

    def _learn(self, payload: bytes | bytearray) -> None:
        """Remember a site-wide change for resyncs, if it is signed by this centre's key."""
        if self.key is None:
            return
        try:
            body = json_object(payload)
            verify_change({self.kid: self.key.public_key()}, body, site=self.site, device="*")
        except (Malformed, CommandRejected):
            return
        self._remember(body, body.get("origin") if body.get("origin") != "central" else None)

    def _remember(self, change: dict, device: str | None) -> bool:
        with self.lock:
            held = self.residents.get(change["uid"])
            if held is not None and held["version"] >= change.get("version", 0):
                return False
            self.residents[change["uid"]] = change
            owner = self.owners.setdefault(change["uid"], device or "central")
            if self._db is not None:
                self._db.execute("INSERT OR REPLACE INTO changes VALUES (?, ?, ?)",
                                 [change["uid"], owner, json.dumps(change)])
            return True

    def _print(self, line: dict) -> None:
        if self.printer is not None:
            self.printer(line)

    def _ack(self, device: str, kind: str, value: str | int) -> None:
        with self.lock:
            ack = self._acks.setdefault(device, Ack())
            getattr(ack, kind).append(value)
            full = len(ack) >= MAX_IDS
        if full:
            self._flush_acks(device)

    def _flush_acks(self, only: str | None = None) -> None:
        with self.lock:
            if only is None:
                batches, self._acks = self._acks, {}
            else:
                batches = {only: self._acks.pop(only)} if only in self._acks else {}
        for device, ack in batches.items():
            self.client.publish(
                Topics(self.cfg.prefix, self.site, device).ack, ack.payload(), qos=1
            )

    def _flush_loop(self) -> None:
        while not self._stop.wait(ACK_FLUSH_S):
            try:
                self._flush_acks()
            except Exception as exc:  # noqa: BLE001 - never let the receipts stop
                self._warn("ack", f"central: receipts not sent: {shown(repr(exc))}")

    def next_version(self, uid: str) -> int:
        """Milliseconds now, but always above what this centre issued for ``uid`` before."""
        with self.lock:
            held = self.residents.get(uid)
        return max(version_now(), (held["version"] + 1) if held else 0)

    def sign(self, change: dict, device: str | None = None) -> dict:
        """``change`` (version filled in when missing) signed for the site or one device."""
        if self.key is None:
            raise ValueError(
                "central: a signing key is needed (--key FILE from `gatectl central keygen`)"
            )
        change = {**change, "version": change.get("version") or self.next_version(change["uid"])}
        return sign_change(self.key, self.kid, change, site=self.site, device=device or "*")

    def push(self, change: dict, device: str | None = None, wait: bool = True) -> dict:
        """An enrollment change, signed, to every device of the site (or to one); returns it and
        keeps it for resyncs (of every device, or of that one).
        ``wait`` for the broker's PUBACK - never from paho's own thread (it would deadlock)."""
        signed = self.sign(change, device)
        self._remember(
            signed, change.get("origin") if change.get("origin") not in (None, "central") else None
        )
        topic = f"{self.root}/{device}/enroll" if device else f"{self.root}/enroll"
        info = self.client.publish(topic, json.dumps(signed).encode(), qos=1)
        if wait:
            info.wait_for_publish(10)
        return signed

    def command(self, device: str, body: dict, timeout: float = 10.0) -> dict:
        """Publish a signed command with a response topic and correlation data; the response."""
        topics = Topics(self.cfg.prefix, self.site, device)
        corr = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = topics.cmd_resp
        props.CorrelationData = corr
        props.MessageExpiryInterval = max(
            1, int(body.get("exp", time.time() + timeout) - time.time())
        )
        self.client.publish(topics.cmd, json.dumps(body).encode(), qos=1, properties=props)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got, resp = self.responses.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if got == corr:
                return resp
        raise TimeoutError(f"no response from device {device} within {timeout:.0f} s")


def _connection(args: argparse.Namespace) -> SyncConfig:
    tls = TlsConfig(ca=args.ca, cert=args.cert, key=args.key_file) if args.ca else None
    return SyncConfig(
        enabled=True,
        host=args.host,
        port=args.port,
        prefix=args.prefix,
        username=args.username,
        password_file=args.password_file,
        tls=tls,
    )


def _templates(photos: list[Path]) -> tuple[list[dict], str]:
    """Templates from photos with this machine's bundled models (the devices' default model)."""
    from gatectl.config import default_config
    from gatectl.people.enroll import Sample
    from gatectl.runtime.app import App
    from gatectl.sources.media import read_image
    from gatectl.sync.enrollment import encode_templates

    with tempfile.TemporaryDirectory() as tmp:
        app = App(default_config(), Path(tmp))
        try:
            templates = app.enroller().templates([Sample(str(p), read_image(p)) for p in photos])
            return encode_templates(templates, app.embedder.model_id), app.embedder.model_id
        finally:
            app.close()


def _kv(items: list[str]) -> dict:
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"command argument {item!r}: expected key=value")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gatectl central", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="action", required=True)
    kg = sub.add_parser("keygen")
    kg.add_argument("--out", type=Path, required=True)
    kg.add_argument("--kid", default="central-1")
    for name in ("serve", "enroll", "delete", "cmd"):
        p = sub.add_parser(name)
        # serve --config central.toml is the centre (gatectl.central.service); serve --site S
        # the reference tool watching one site
        p.add_argument("--site", required=name != "serve")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=1883)
        p.add_argument("--prefix", default="gatectl")
        p.add_argument("--username")
        p.add_argument("--password-file", type=Path)
        p.add_argument("--ca", type=Path)
        p.add_argument("--cert", type=Path)
        p.add_argument("--key-file", type=Path)
        if name in ("enroll", "delete", "serve"):
            p.add_argument("--key", type=Path, required=name != "serve",
                           help="Ed25519 private key (from keygen) that signs enrollment changes")
            p.add_argument("--kid", default="central-1")
        if name == "serve":
            p.add_argument("--config", type=Path, help="central.toml: run the centre")
            p.add_argument(
                "--state",
                type=Path,
                default=None,
                help="SQLite file keeping the signed changes and who added each resident "
                "(default: central-<site>.db here)",
            )
            p.add_argument(
                "--device-requests",
                choices=["own", "refuse"],
                default="own",
                help="own: a device may add residents and change or remove those it added; "
                "refuse: only the centre enrolls",
            )
            p.add_argument(
                "--replicate",
                choices=["device", "site"],
                default="device",
                help="where a device's accepted enrollment goes: back to that device only, or to "
                "the whole site (only when every resident consented to that)",
            )
        if name in ("enroll", "delete"):
            p.add_argument("--uid")
            p.add_argument("--version", type=int)
            p.add_argument("--device", help="only this device (default: every device of the site)")
        if name == "enroll":
            p.add_argument("--name", required=True)
            p.add_argument("--unit", required=True)
            p.add_argument("--photo", type=Path, action="append", required=True)
            p.add_argument("--status", choices=["active", "suspended"], default="active")
        if name == "cmd":
            p.add_argument("--device", required=True)
            p.add_argument(
                "--key", type=Path, required=True, help="Ed25519 private key (from keygen)"
            )
            p.add_argument("--kid", default="central-1")
            p.add_argument("--ttl", type=float, default=30.0)
            p.add_argument("--timeout", type=float, default=10.0)
            p.add_argument("command")
            p.add_argument("args", nargs="*", metavar="KEY=VALUE")
    operator.add_parsers(sub)
    args = ap.parse_args(argv)
    try:
        if args.action in operator.ACTIONS:
            return operator.run(args, lambda photos: _templates(photos)[0])
        if args.action == "serve" and args.config is not None:
            return operator.serve_main(args)
        if args.action == "serve" and args.site is None:
            raise UsageError("serve: --config central.toml (the centre) or --site S (the tool)")
        return _run(args)
    except (GatectlError, ValueError, OSError, TimeoutError) as exc:
        msg = "; ".join(exc.lines) if isinstance(exc, ConfigError) else str(exc)
        print(f"gatectl central: {msg}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.action == "keygen":
        new_key = generate_private_key()
        save_private_key(new_key, args.out)
        print(f"private key written to {args.out}; put this in each device's config:")
        print(f'[sync.command_keys]\n{args.kid} = "{public_key_b64(new_key)}"')
        return 0
    # before connecting: a bad key is one line
    key = load_private_key(args.key) if args.key else None
    state = (args.state or Path(f"central-{args.site}.db")) if args.action == "serve" else None
    central = Central(
        _connection(args),
        args.site,
        relay=args.action == "serve",
        key=key,
        kid=args.kid,
        device_requests=getattr(args, "device_requests", "own"),
        state=state,
        replicate=getattr(args, "replicate", "device"),
    )
    if args.action == "cmd":
        if key is None:
            raise ValueError("cmd: --key is required")
        body = sign_command(
            key,
            args.kid,
            args.device,
            args.command,
            _kv(args.args),
            now=time.time(),
            ttl_s=args.ttl,
        )
        central.start()
        try:
            resp = central.command(args.device, body, args.timeout)
        finally:
            central.stop()
        print(json.dumps(resp, ensure_ascii=False))
        return 0 if resp.get("ok") else 1
    if args.action == "enroll":
        templates, _ = _templates(args.photo)
        change = {"v": 1, "type": "resident", "op": "upsert", "uid": args.uid or uuid.uuid4().hex,
                  "version": args.version or version_now(), "name": args.name, "unit": args.unit,
                  "status": args.status, "templates": templates, "origin": "central"}
    elif args.action == "delete":
        if not args.uid:
            raise ValueError("delete: --uid is required")
        change = {"v": 1, "type": "resident", "op": "delete", "uid": args.uid,
                  "version": args.version or version_now(), "origin": "central"}
    else:
        if key is None:
            print(
                "gatectl central: no --key: enrollment requests from devices are not decided",
                file=sys.stderr,
            )
        central.printer = lambda line: print(json.dumps(line, ensure_ascii=False), flush=True)
        central.start()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
        finally:
            central.stop()
    signed = central.sign(change, args.device)
    central.start()
    try:
        central.push(signed, args.device)
    finally:
        central.stop()
    print(json.dumps({"uid": signed["uid"], "version": signed["version"], "op": signed["op"]}))
    return 0
