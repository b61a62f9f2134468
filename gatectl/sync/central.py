"""`gatectl central`: a reference for the central side, so a technician can test a site
without the real central server (and the tests have a real counterpart on the broker).

    gatectl central keygen --out central.key [--kid K]       Ed25519 key for signing commands
    gatectl central serve --site S [--db central.db]          print live events and statuses as
                                                              JSON lines; relay enrollments
                                                              between the site's devices; answer
                                                              resync requests
    gatectl central enroll --site S --name N --unit U --photo P [--photo P ...] [--uid U]
    gatectl central delete --site S --uid U
    gatectl central cmd --site S --device D --key central.key --kid K door.open door=front

Connection options for all but keygen: --host, --port, --prefix, --username, --password-file,
--ca, --cert, --key-file. Versions are milliseconds since the epoch unless --version is given,
so each new change from the centre is newer than the last.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gatectl.config import ConfigError, SyncConfig, TlsConfig
from gatectl.sync.client import make_client
from gatectl.sync.signing import generate_private_key, load_private_key, public_key_b64, save_private_key, sign_command
from gatectl.sync.topics import VERSION, Topics, device_of


def version_now() -> int:
    return int(time.time() * 1000)


class Central:
    """The centre's side of the topic tree for one site: what `serve` runs and the tests use."""

    def __init__(self, cfg: SyncConfig, site: str, relay: bool = True, client_id: str | None = None):
        """A fixed ``client_id`` makes the session persistent: the broker keeps what arrives
        while this side is away (the real centre must not miss events either)."""
        self.cfg = cfg
        self.site = site
        self.relay = relay
        self.persistent = client_id is not None
        self.root = f"{cfg.prefix}/{VERSION}/{site}"
        self.client = make_client(cfg, client_id or f"gatectl-central-{site}-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.lock = threading.Lock()
        self.events: dict[str, dict] = {}  # event id -> event (duplicates dropped by id)
        self.order: dict[str, list[int]] = {}  # device -> seq of events in arrival order (first copies)
        self.duplicates = 0
        self.statuses: dict[str, dict] = {}
        self.snapshots: dict[str, bytes] = {}
        self.residents: dict[str, dict] = {}  # uid -> newest resident change seen (the relay's state)
        self.responses: queue.Queue[tuple[bytes | None, dict]] = queue.Queue()
        self.printer = None  # callable(dict) for `serve`

    def start(self, timeout: float = 10.0) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if self.persistent else 0
        self.client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s,
                            clean_start=not self.persistent, properties=props)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise ConnectionError(f"central: no connection to {self.cfg.host}:{self.cfg.port} in {timeout:.0f} s")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(f"{self.root}/#", qos=1)
            self.connected.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        where = device_of(msg.topic, self.cfg.prefix)
        if where is None or where[0] != self.site:
            return
        _, device, rest = where
        if rest.startswith("snapshots/"):
            self.snapshots[rest.split("/", 1)[1]] = msg.payload
            return
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if rest == "events":
            with self.lock:
                if body["id"] in self.events:
                    self.duplicates += 1
                    return
                self.events[body["id"]] = body
                self.order.setdefault(device, []).append(body["seq"])
            self._print({"topic": "events", **body})
        elif rest == "status":
            self.statuses[device] = body
            self._print({"topic": "status", "device": device, "state": body.get("state")})
        elif rest == "enroll/up":
            self._print({"topic": "enroll/up", "device": device, "uid": body.get("uid"),
                         "op": body.get("op"), "version": body.get("version")})
            if self.relay and self._newer(body):
                client.publish(f"{self.root}/enroll", msg.payload, qos=1)
        elif rest == "resync" and self.relay:
            with self.lock:
                changes = list(self.residents.values())
            for change in changes:
                client.publish(f"{self.root}/{device}/enroll", json.dumps(change).encode(), qos=1)
            self._print({"topic": "resync", "device": device, "sent": len(changes)})
        elif rest.startswith("cmd/resp"):
            corr = getattr(getattr(msg, "properties", None), "CorrelationData", None)
            self.responses.put((corr, body))

    def _newer(self, change: dict) -> bool:
        with self.lock:
            held = self.residents.get(change.get("uid"))
            if held is not None and held["version"] >= change.get("version", 0):
                return False
            self.residents[change["uid"]] = change
            return True

    def _print(self, line: dict) -> None:
        if self.printer is not None:
            self.printer(line)

    def push(self, change: dict, device: str | None = None) -> None:
        """An enrollment change to every device of the site (or to one)."""
        self._newer(change)
        topic = f"{self.root}/{device}/enroll" if device else f"{self.root}/enroll"
        self.client.publish(topic, json.dumps(change).encode(), qos=1).wait_for_publish(10)

    def command(self, device: str, body: dict, timeout: float = 10.0) -> dict:
        """Publish a signed command with a response topic and correlation data; the response."""
        topics = Topics(self.cfg.prefix, self.site, device)
        corr = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = topics.cmd_resp
        props.CorrelationData = corr
        props.MessageExpiryInterval = max(1, int(body.get("exp", time.time() + timeout) - time.time()))
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


def _connection(args) -> SyncConfig:
    tls = TlsConfig(ca=args.ca, cert=args.cert, key=args.key_file) if args.ca else None
    return SyncConfig(enabled=True, host=args.host, port=args.port, prefix=args.prefix, username=args.username,
                      password_file=args.password_file, tls=tls)


def _templates(photos: list[Path]) -> tuple[list[dict], str]:
    """Templates from photos with this machine's bundled models (the devices' default model)."""
    from gatectl.app import App
    from gatectl.config import default_config
    from gatectl.enroll import Enroller, Sample
    from gatectl.media import read_image
    from gatectl.sync.enrollment import encode_templates

    with tempfile.TemporaryDirectory() as tmp:
        app = App(default_config(), Path(tmp))
        try:
            templates = Enroller(app).templates([Sample(str(p), read_image(p)) for p in photos])
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
        p.add_argument("--site", required=True)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=1883)
        p.add_argument("--prefix", default="gatectl")
        p.add_argument("--username")
        p.add_argument("--password-file", type=Path)
        p.add_argument("--ca", type=Path)
        p.add_argument("--cert", type=Path)
        p.add_argument("--key-file", type=Path)
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
            p.add_argument("--key", type=Path, required=True, help="Ed25519 private key (from keygen)")
            p.add_argument("--kid", default="central-1")
            p.add_argument("--ttl", type=float, default=30.0)
            p.add_argument("--timeout", type=float, default=10.0)
            p.add_argument("command")
            p.add_argument("args", nargs="*", metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except (ConfigError, ValueError, OSError, TimeoutError) as exc:
        msg = "; ".join(exc.lines) if isinstance(exc, ConfigError) else str(exc)
        print(f"gatectl central: {msg}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.action == "keygen":
        key = generate_private_key()
        save_private_key(key, args.out)
        print(f"private key written to {args.out}; put this in each device's config:")
        print(f'[sync.command_keys]\n{args.kid} = "{public_key_b64(key)}"')
        return 0
    central = Central(_connection(args), args.site, relay=args.action == "serve")
    if args.action == "cmd":
        key = load_private_key(args.key)  # before connecting: a bad key is a one-line error
        body = sign_command(key, args.kid, args.device, args.command, _kv(args.args), now=time.time(), ttl_s=args.ttl)
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
        central.printer = lambda line: print(json.dumps(line, ensure_ascii=False), flush=True)
        central.start()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
        finally:
            central.stop()
    central.start()
    try:
        central.push(change, args.device)
    finally:
        central.stop()
    print(json.dumps({"uid": change["uid"], "version": change["version"], "op": change["op"]}))
    return 0
