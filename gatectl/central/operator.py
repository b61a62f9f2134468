"""The operator's commands over the registry and the stored events (all take --config):

    gatectl central serve --config central.toml       the service (gatectl-central.service)
    gatectl central worker --config central.toml --id w1   one ingest worker (serve runs them)
    gatectl central residents list|add|remove|consent ...
    gatectl central devices list|add ...
    gatectl central plates list|add|remove ...      the devices' plate lists, by scope
    gatectl central passes list|add|revoke ...
    gatectl central events list [--site S] [--device D] [--limit N]

Changes are signed with the config's key and published at once (one short broker connection);
listings never touch the broker. Names are shown to the operator here, never logged.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from gatectl.central.ingest import stored_events
from gatectl.central.registry import PLATE_LISTS, SCOPES, Registry
from gatectl.central.service import config_of, open_registry, run_worker, serve, stop_on_signals
from gatectl.config.central import CentralConfig
from gatectl.core.errors import UsageError
from gatectl.sync.client import make_client

ACTIONS = ("worker", "residents", "devices", "plates", "passes", "events")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The operator's subcommands, next to the reference tool's in `tool.main`."""
    w = sub.add_parser("worker", help="one ingest worker (serve runs these)")
    w.add_argument("--config", type=Path, required=True)
    w.add_argument("--id", required=True, help="worker id: its broker session (w1, w2, ...)")
    r = sub.add_parser("residents", help="the registry's residents")
    r.add_argument("op", choices=["list", "add", "remove", "consent"])
    d = sub.add_parser("devices", help="devices and where they are")
    d.add_argument("op", choices=["list", "add"])
    v = sub.add_parser("plates", help="plate lists, for the site, a building or one device")
    v.add_argument("op", choices=["list", "add", "remove"])
    p = sub.add_parser("passes", help="visitor passes (fields; revocations reach the devices)")
    p.add_argument("op", choices=["list", "add", "revoke"])
    e = sub.add_parser("events", help="stored events")
    e.add_argument("op", choices=["list"])
    for q in (r, d, v, p, e):
        q.add_argument("--config", type=Path, required=True)
        q.add_argument("--site")
        q.add_argument("--json", action="store_true", help="one JSON object per line")
    r.add_argument("--uid")
    r.add_argument("--name")
    r.add_argument("--unit")
    r.add_argument("--photo", type=Path, action="append")
    r.add_argument("--consent", choices=SCOPES, default="site")
    r.add_argument("--building")
    r.add_argument("--home-device")
    d.add_argument("--device")
    d.add_argument("--building")
    d.add_argument("--door", action="append", default=[])
    v.add_argument("--plate")
    v.add_argument("--list", choices=PLATE_LISTS, default="resident")
    v.add_argument("--resident", help="the uid whose car it is")
    v.add_argument("--unit", default="")
    v.add_argument("--note", default="")
    for q in (v, p):
        where = q.add_mutually_exclusive_group()
        where.add_argument("--building", help="only this building's devices")
        where.add_argument("--device", help="only this device")
    p.add_argument("--id")
    p.add_argument("--holder")
    p.add_argument("--host-uid")
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--door", action="append", default=[])
    e.add_argument("--device")
    e.add_argument("--limit", type=int, default=50)


def serve_main(args: argparse.Namespace) -> int:
    return serve(args.config, stop_on_signals())


def run(args: argparse.Namespace, templates: Callable[[list[Path]], list[dict]]) -> int:
    cfg = config_of(args.config)
    if args.action == "worker":
        return run_worker(cfg, args.id, stop_on_signals())
    changes = getattr(args, "op", "list") != "list"
    db, reg = open_registry(cfg, signing=changes)
    try:
        if changes:
            if reg.key is None:
                raise UsageError(f"{args.config}: key: a signing key is needed for changes")
            with Publisher(cfg, reg):
                return _change(args, reg, templates)
        return _list(args, reg)
    finally:
        db.close()


class Publisher:
    """The registry's publish for one command: QoS 1, waited for before the command ends."""

    def __init__(self, cfg: CentralConfig, reg: Registry):
        self.cfg, self.reg = cfg, reg
        self.client = make_client(cfg.broker.sync(), f"gatectl-central-op-{uuid.uuid4().hex[:8]}")
        self.infos: list = []

    def __enter__(self) -> None:
        b = self.cfg.broker
        self.client.connect(b.host, b.port, b.keepalive_s)
        self.client.loop_start()
        self.reg.publish = lambda topic, payload: self.infos.append(
            self.client.publish(topic, payload, qos=1))

    def __exit__(self, *exc: object) -> None:
        try:
            for info in self.infos:
                info.wait_for_publish(10)
        finally:
            self.client.disconnect()
            self.client.loop_stop()


def _need(args: argparse.Namespace, *names: str) -> None:
    for n in names:
        if not getattr(args, n.replace("-", "_")):
            raise UsageError(f"gatectl central {args.action} {args.op}: --{n} is required")


def _change(args: argparse.Namespace, reg: Registry,
            templates: Callable[[list[Path]], list[dict]]) -> int:
    out: dict
    if args.action == "residents":
        if args.op == "add":
            _need(args, "site", "name", "unit", "photo")
            uid = args.uid or uuid.uuid4().hex
            v = reg.enroll(args.site, uid, name=args.name, unit=args.unit, consent=args.consent,
                           templates=templates(args.photo), building=args.building,
                           home_device=args.home_device)
            out = {"uid": uid, "version": v}
        elif args.op == "remove":
            _need(args, "uid")
            out = {"uid": args.uid, "version": reg.delete_resident(args.uid)}
        else:
            _need(args, "uid")
            out = {"uid": args.uid, "version": reg.set_consent(args.uid, args.consent)}
    elif args.action == "devices":
        _need(args, "site", "device")
        reg.add_device(args.site, args.device, args.building, args.door)
        out = {"site": args.site, "device": args.device, "building": args.building}
    elif args.action == "plates":
        _need(args, "site", "plate")
        if args.op == "add":
            v = reg.set_plate(args.site, args.plate, args.list, args.note, unit=args.unit,
                              resident=args.resident, building=args.building,
                              device=args.device)
        else:
            v = reg.remove_plate(args.site, args.plate)
        out = {"plate": args.plate, "version": v}
    elif args.op == "add":
        _need(args, "site", "holder")
        pid = args.id or uuid.uuid4().hex[:16]
        now = time.time()
        v = reg.add_pass(args.site, pid, holder=args.holder, valid_from=now,
                         valid_until=now + args.hours * 3600, host_uid=args.host_uid,
                         doors=args.door, building=args.building, device=args.device)
        out = {"id": pid, "version": v}
    else:
        _need(args, "id")
        out = {"id": args.id, "version": reg.revoke_pass(args.id)}
    print(json.dumps(out))
    return 0


def _list(args: argparse.Namespace, reg: Registry) -> int:
    if args.action == "residents":
        rows = reg.residents(args.site)
    elif args.action == "devices":
        rows = reg.devices(args.site)
    elif args.action == "passes":
        _need(args, "site")
        rows = reg.passes(args.site)
    elif args.action == "plates":
        _need(args, "site")
        rows = reg.plates(args.site)
    else:
        rows = stored_events(reg.db, args.site, args.device, args.limit)
    for row in rows:
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            print("  ".join(f"{k}={v}" for k, v in row.items()))
    if not rows and not args.json:
        print("(none)")
    return 0
