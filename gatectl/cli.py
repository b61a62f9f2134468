"""The `gatectl` command: thin - parse, call, print. Bad input is one line, never a traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Protocol

from gatectl import plate_format
from gatectl.app import App, simulated_boards
from gatectl.argtypes import number_in
from gatectl.camera import CameraGrabber, SourceError
from gatectl.config import (
    Config,
    ConfigError,
    EbikeGateConfig,
    GateConfig,
    PlateGateConfig,
    default_config,
    load_config,
)
from gatectl.decision import resident_state
from gatectl.enroll import (
    NAME_MAX,
    REASON_MAX,
    UNIT_MAX,
    Enroller,
    EnrollmentError,
    Sample,
    checked_text,
)
from gatectl.events import free_disk_mb
from gatectl.hw.relay import BoardError, Relay
from gatectl.media import MediaError, MediaFrame, iter_media, read_image
from gatectl.paths import (
    default_data_dir,
    find_config,
    foreign_owner,
    sample_dir,
    system_config_path,
    system_state_dir,
)
from gatectl.safe_text import shown
from gatectl.store import Resident, StoreError, corruption
from gatectl.vision.models import ModelError

if TYPE_CHECKING:  # for annotations: these pipelines load only when a replay needs them
    from gatectl.pipelines.ebike_gate import EbikeGate
    from gatectl.pipelines.plate_lane import LaneDecision, PlateLane

log = logging.getLogger("gatectl")

USER_ERRORS = (
    ConfigError,
    ModelError,
    StoreError,
    MediaError,
    EnrollmentError,
    SourceError,
    BoardError,
)


class UsageError(Exception):
    """A bad command-line argument."""


class AppFactory(Protocol):
    """Opens the App a command works on, when (and if) it needs one: replay asks for simulated
    boards and a scratch copy of the store."""

    def __call__(self, simulated: bool = False, scratch: Path | None = None) -> App: ...


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + line
        raise UsageError(f"{self.prog}: {message}")


# --- helpers ---------------------------------------------------------------------------------

def fmt_time(ts: float | None) -> str:
    """Local time with its UTC offset (2026-11-01 08:00:00+08:00): a log read from another
    zone, or copied into a report, still says when."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().isoformat(sep=" ", timespec="seconds")


_REL = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_since(text: str, now: float) -> float:
    """'30m', '2h', '7d' back from now, or an ISO date/time (local time unless it has a zone)."""
    m = _REL.match(text)
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since: cannot read '{shown(text, 40)}' (use 30m, 2h, 7d or 2026-11-01T08:00)"
        ) from None
    return dt.timestamp() if dt.tzinfo else dt.replace(tzinfo=None).timestamp()


def print_table(rows: list[list], header: list[str]) -> None:
    """Columns padded to width; every cell escaped (names, units, reasons come from outside)."""
    cells = [[shown(x) for x in r] for r in [header, *rows]]
    widths = [max(len(x) for x in col) for col in zip(*cells)]
    for r in cells:
        print("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())


def page(items: list, args: argparse.Namespace) -> list:
    """The --offset/--limit window of a list; says on stderr how many were left out."""
    window = items[args.offset:args.offset + args.limit]
    left = len(items) - args.offset - len(window)
    if left > 0:
        print(
            f"gatectl: {left} more not shown (--offset "
            f"{args.offset + len(window)} for the next page)",
            file=sys.stderr,
        )
    return window


def print_list(args: argparse.Namespace, records: list[dict], header: list[str],
               row: Callable[[dict], list]) -> None:
    """One JSON object per line with --json, else a table; --offset/--limit either way."""
    records = page(records, args)
    if args.json:
        for rec in records:
            print(json.dumps(rec, ensure_ascii=False))
    else:
        print_table([row(rec) for rec in records], header)


def matches(text: str | None, needle: str | None) -> bool:
    """--name filters: case-insensitive part of the name."""
    return needle is None or needle.casefold() in (text or "").casefold()


def unit_matches(unit: str | None, wanted: str | None) -> bool:
    """--unit filters: the unit, or every unit under it ('3-2' finds '3-2-1501')."""
    return wanted is None or unit == wanted or (unit or "").startswith(wanted.rstrip("-/ ") + "-")


def load_samples(photos: list[str]) -> list[Sample]:
    return [Sample(Path(p).name, read_image(p)) for p in photos]


def capture_samples(app: App, camera: str, count: int = 3, timeout: float = 10.0) -> list[Sample]:
    """Grab ``count`` fresh frames from a configured camera, a second apart."""
    try:
        cam = app.cfg.camera(camera)
    except StopIteration:
        raise UsageError(f"--camera: unknown camera '{shown(camera, 40)}'") from None
    grabber = CameraGrabber(cam)
    grabber.start()
    try:
        samples: list[Sample] = []
        deadline = time.monotonic() + timeout
        while len(samples) < count and time.monotonic() < deadline:
            frame = grabber.get(timeout=1.0)
            if grabber.stats()["state"] in ("ended", "stopped"):
                break
            if frame is not None:
                samples.append(Sample(f"camera {camera} frame {frame.seq}", frame.image))
                time.sleep(1.0)
        if not samples:
            raise SourceError(
                f"camera {camera}: no frame within {timeout:.0f} s ({grabber.stats()['state']})"
            )
        return samples
    finally:
        grabber.stop()


def check_ownership(app: App) -> None:
    """Refuse to work in a state folder that belongs to another user (the service's, when run
    with sudo): the SQLite WAL/shm files and snapshots created now would belong to us, and the
    service could no longer open its own store."""
    for folder in dict.fromkeys((app.data_dir, app.store_path.parent, app.snapshot_dir)):
        owner = foreign_owner(folder)
        if owner is not None:
            raise UsageError(
                f"{folder} belongs to user {owner}: files created there now would lock that user "
                f"(the service) out; run as it: sudo -u '{owner}' gatectl ..."
            )


def scratch_config(cfg: Config) -> Config:
    """The same config with its store and snapshots relative to a scratch folder, sync off."""
    storage = cfg.storage.model_copy(
        update={"database": Path("gatectl.db"), "snapshots": Path("snapshots"), "state_dir": None}
    )
    return cfg.model_copy(
        update={"storage": storage, "sync": cfg.sync.model_copy(update={"enabled": False})}
    )


def scratch_store(app: App, folder: Path) -> Path:
    """Copy the service's store into ``folder`` (read-only on the original, a consistent
    snapshot even while the daemon writes) and return the folder; an absent store is empty."""
    import sqlite3

    src = app.store_path
    folder.mkdir(parents=True, exist_ok=True)
    if not src.exists():
        return folder
    try:
        with (
            sqlite3.connect(f"file:{src}?mode=ro", uri=True) as s,
            sqlite3.connect(folder / "gatectl.db") as d,
        ):
            s.backup(d)
    except sqlite3.Error as exc:
        raise StoreError(f"{src}: cannot copy the store for replay ({exc})") from None
    return folder


def one_resident(app: App, key: str) -> Resident:
    found = app.store.find_residents(key)
    if not found:
        raise UsageError(
            f"resident '{shown(key, 40)}': not found (give the id from `gatectl residents list`)"
        )
    if len(found) > 1:
        raise UsageError(
            f"resident '{shown(key, 40)}': {len(found)} residents share that name; give the id"
        )
    return found[0]


# --- commands --------------------------------------------------------------------------------

def cmd_config_check(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """Everything `run` would refuse on before touching the hardware, files included."""
    cfg = load_config(args.file)
    problems = cfg.startup_problems()
    if problems:
        raise ConfigError([f"{args.file}: {line}" for line in problems])
    gates = ", ".join(f"{g.name} ({g.kind})" for g in cfg.gates) or "none"
    print(f"{args.file}: OK - device {cfg.device.id} at {cfg.device.site}; "
          f"{len(cfg.cameras)} camera(s), {len(cfg.doors)} door(s), gates: {gates}")
    return 0


def cmd_enroll(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """A new resident, or with --resident more photos of an enrolled one (re-enrollment)."""
    if bool(args.photo) == bool(args.camera):
        raise UsageError("enroll: give --photo FILE (repeatable) or --camera NAME, not both")
    if args.resident:
        if args.name or args.unit:
            raise UsageError("enroll --resident: the name and unit are theirs already "
                             "(`residents update ID --name/--unit` changes them)")
    else:
        if args.name is None or args.unit is None:
            raise UsageError(
                "enroll: give --name and --unit (or --resident ID to re-enroll someone)"
            )
        checked_text("--name", args.name, NAME_MAX)  # before loading any model
        checked_text("--unit", args.unit, UNIT_MAX)
    app = app_factory()
    who = one_resident(app, args.resident) if args.resident else None
    samples = load_samples(args.photo) if args.photo else capture_samples(app, args.camera)
    if who is not None:
        r = Enroller(app).add_photos(who, samples)
        print(
            f"resident #{r.id} {shown(r.name)} ({shown(r.unit)}): "
            f"{len(samples)} template(s) added, "
            f"{app.store.template_count(('resident', r.id))} in all; inactivity clock restarted"
            + (
                "; still suspended (`residents reactivate` lifts it)"
                if r.status == "suspended"
                else ""
            )
        )
        return 0
    r = Enroller(app).enroll_resident(args.name, args.unit, samples)
    print(
        f"enrolled resident #{r.id} {shown(r.name)} ({shown(r.unit)}) "
        f"with {len(samples)} template(s)"
    )
    return 0


def cmd_residents(args: argparse.Namespace, app_factory: AppFactory) -> int:
    app = app_factory()
    store, now, days = app.store, app.clock(), app.cfg.policy.reenroll_after_days
    if args.action == "list":
        records = [
            {
                "id": r.id,
                "uid": r.uid,
                "name": r.name,
                "unit": r.unit,
                "status": resident_state(r, now, days),
                "created_at": r.created_at,
                "last_seen_at": r.last_seen_at,
                "templates": store.template_count(("resident", r.id)),
            }
            for r in store.residents()
            if matches(r.name, args.name) and unit_matches(r.unit, args.unit)
        ]
        records = [x for x in records if args.status is None or x["status"] == args.status]
        print_list(
            args,
            records,
            ["id", "name", "unit", "status", "last seen", "templates"],
            lambda x: [
                x["id"],
                x["name"],
                x["unit"],
                x["status"],
                fmt_time(x["last_seen_at"]),
                x["templates"],
            ],
        )
        return 0
    if args.status is not None or (
        args.action != "update"
        and (
            args.name is not None or args.unit is not None or args.add_photo or args.replace_photos
        )
    ):
        raise UsageError(
            f"residents {args.action}: --name, --unit and --status filter `list`; "
            "--name, --unit and photos are for `update`"
        )
    if not args.who:
        raise UsageError(f"residents {args.action}: which resident? give an id or name")
    r = one_resident(app, args.who)
    if args.action == "show":
        watch = store.watched_residents().get(r.id)
        for k, v in [
            ("id", r.id),
            ("uid", r.uid),
            ("name", r.name),
            ("unit", r.unit),
            ("status", resident_state(r, now, days)),
            ("enrolled", fmt_time(r.created_at)),
            ("last seen", fmt_time(r.last_seen_at)),
            ("reactivated", fmt_time(r.reactivated_at)),
            ("templates", store.template_count(("resident", r.id))),
            ("watchlist", f"yes ({watch.reason})" if watch else "no"),
        ]:
            print(f"{k:12} {shown(v)}")
    elif args.action == "remove":
        watch = store.watched_residents().get(r.id)
        files = store.remove_resident(r.id)
        app.recorder.delete_files(files)
        print(
            f"removed resident #{r.id} {shown(r.name)}: templates, "
            f"{len(files)} photo/snapshot file(s) deleted"
        )
        if watch is not None:
            print(f"kept watchlist entry #{watch.id} (with the face, so the alert still works); "
                  f"erase it too with `gatectl watchlist remove {watch.id}`")
    elif args.action == "update":
        return update_resident(app, r, args)
    elif args.action == "reactivate":
        store.reactivate(r.id)
        print(f"resident #{r.id} {shown(r.name)} is active again")
    elif args.action == "suspend":
        store.set_status(r.id, "suspended")
        print(f"resident #{r.id} {shown(r.name)} suspended: the gates will deny them")
    return 0


def update_resident(app: App, r: Resident, args: argparse.Namespace) -> int:
    """Rename, move to another unit, add photos or replace them: one change per option given."""
    if args.add_photo and args.replace_photos:
        raise UsageError("residents update: --add-photo or --replace-photos, not both")
    if args.name is None and args.unit is None and not (args.add_photo or args.replace_photos):
        raise UsageError(
            "residents update: give --name, --unit, --add-photo FILE or --replace-photos FILE"
        )
    name = checked_text("--name", args.name, NAME_MAX) if args.name is not None else None
    unit = checked_text("--unit", args.unit, UNIT_MAX) if args.unit is not None else None
    photos = args.add_photo or args.replace_photos
    if photos:  # first: refused photos leave the name and unit as they were
        r = Enroller(app).add_photos(r, load_samples(photos), replace=bool(args.replace_photos))
        print(
            f"resident #{r.id}: {'templates replaced by' if args.replace_photos else 'added'} "
            f"{len(photos)} photo(s), "
            f"{app.store.template_count(('resident', r.id))} template(s) in all"
        )
    if name is not None or unit is not None:
        r = app.store.update_resident(r.id, name=name, unit=unit)
        print(f"resident #{r.id} is now {shown(r.name)} ({shown(r.unit)})")
    return 0


def cmd_watchlist(args: argparse.Namespace, app_factory: AppFactory) -> int:
    app = app_factory()
    store = app.store
    if args.action == "list":
        records = [
            {
                "id": w.id,
                "uid": w.uid,
                "name": w.name,
                "reason": w.reason,
                "resident_id": w.resident_id,
                "templates": store.template_count(("watchlist", w.id)),
                "created_at": w.created_at,
            }
            for w in store.watch_entries()
            if matches(w.name, args.name)
        ]
        print_list(
            args,
            records,
            ["id", "name", "reason", "resident", "templates", "added"],
            lambda x: [
                x["id"],
                x["name"],
                x["reason"],
                f"#{x['resident_id']}" if x["resident_id"] else "-",
                x["templates"],
                fmt_time(x["created_at"]),
            ],
        )
    elif args.action == "add":
        reason = checked_text("--reason", args.reason, REASON_MAX, required=False)
        if args.resident:
            r = one_resident(app, args.resident)
            w = store.add_watch(r.name, reason, r.id, [], app.embedder.model_id)
        elif args.photo and args.name is not None:
            checked_text("--name", args.name, NAME_MAX)
            w = Enroller(app).add_watch(args.name, reason, load_samples(args.photo))
        else:
            raise UsageError("watchlist add: give --resident ID, or --name NAME with --photo FILE")
        print(f"watchlist entry #{w.id} {shown(w.name)} added")
    else:
        if not args.id or not args.id.isdigit():
            raise UsageError("watchlist remove: give the entry id from `gatectl watchlist list`")
        if not store.remove_watch(int(args.id)):
            raise UsageError(f"watchlist remove: no entry #{args.id}")
        print(f"watchlist entry #{args.id} removed")
    return 0


def parse_time(text: str, key: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(
            f"{key}: cannot read '{shown(text, 40)}' (use 2026-11-01 or 2026-11-01T08:00)"
        ) from None


def cmd_plates(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """Vehicle lists. Plates are stored exactly as validated: no fuzzy matching, ever."""
    app = app_factory()
    store = app.store
    if args.action == "list":
        records = [
            {
                k: p[k]
                for k in (
                    "plate",
                    "list",
                    "resident_id",
                    "resident",
                    "unit",
                    "note",
                    "valid_from",
                    "valid_to",
                )
            }
            for p in store.plates()
            if (args.list is None or p["list"] == args.list)
            and matches(p["resident"], args.name)
            and unit_matches(p["unit"], args.unit)
        ]
        print_list(
            args,
            records,
            ["plate", "list", "resident", "unit", "note", "from", "to"],
            lambda p: [
                p["plate"],
                p["list"],
                p["resident"] or "-",
                p["unit"] or "-",
                p["note"] or "-",
                fmt_time(p["valid_from"]),
                fmt_time(p["valid_to"]),
            ],
        )
        return 0
    if not args.plate:
        raise UsageError(f"plates {args.action}: give the plate, e.g. 粤B12345")
    plate = plate_format.normalise(args.plate)
    if args.action == "remove":
        n = store.remove_plate(plate, args.list)
        if not n:
            raise UsageError(f"plates remove: {shown(plate, 20)} is on no list")
        print(f"{plate} removed from {n} list(s)")
        return 0
    if not plate_format.is_plate(plate):
        raise UsageError(
            f"plate: '{shown(args.plate, 20)}' is not a valid Chinese plate (e.g. "
            "粤B12345, 沪AD12345, 鄂F8888警)"
        )
    list_ = args.list or "resident"
    unit = checked_text("--unit", args.unit, UNIT_MAX, required=False)
    note = checked_text("--note", args.note, REASON_MAX, required=False)
    resident_id = one_resident(app, args.resident).id if args.resident else None
    if list_ == "visitor" and not args.to:
        raise UsageError("plates add --list visitor: give --to (end of the visit window)")
    valid_from = parse_time(args.from_, "--from") if args.from_ else None
    valid_to = parse_time(args.to, "--to") if args.to else None
    if valid_to is not None and valid_from is not None and valid_to <= valid_from:
        raise UsageError(f"--to: {fmt_time(valid_to)} is not after --from {fmt_time(valid_from)}")
    if valid_to is not None and valid_to <= app.clock():
        raise UsageError(
            f"--to: {fmt_time(valid_to)} is already past: the pass would never open the barrier"
        )
    others = {p["list"] for p in store.plates(plate)} - {list_}
    store.add_plate(plate, list_, resident_id=resident_id, unit=unit, note=note,
                    valid_from=valid_from, valid_to=valid_to)
    print(f"{plate} on the {list_} list")
    if list_ == "blacklist" and others:
        print(f"gatectl: warning: {plate} is also on the {' and '.join(sorted(others))} list: "
              "the blacklist wins, the lanes raise an alert for it", file=sys.stderr)
    elif "blacklist" in others:
        print(
            f"gatectl: warning: {plate} is also on the blacklist, which wins: "
            "the lanes will not open for it "
            f"(`plates remove {plate} --list blacklist` lifts it)",
            file=sys.stderr,
        )
    return 0


def cmd_vehicles(args: argparse.Namespace, app_factory: AppFactory) -> int:
    app = app_factory()
    now = app.clock()
    if args.action == "inside":
        days = (
            args.days
            if args.days is not None
            else max(
                (g.inside_days_alert for g in app.cfg.gates if isinstance(g, PlateGateConfig)),
                default=30.0,
            )
        )
        rows = [
            [
                v["plate"],
                v["lane"],
                fmt_time(v["entered_at"]),
                f"{(now - v['entered_at']) / 86400:.1f}",
                "LONG STAY" if now - v["entered_at"] > days * 86400 else "",
            ]
            for v in app.store.vehicles_inside()
        ]
        print_table(rows, ["plate", "lane", "entered", "days", f"> {days:g} d"])
        return 0
    since = parse_since(args.since, now) if args.since else None
    passes = app.store.vehicle_passes(
        plate_format.normalise(args.plate) if args.plate else None, since
    )
    if args.json:
        for p in passes:
            print(json.dumps(p, ensure_ascii=False))
        return 0
    rows = [
        [
            fmt_time(p["ts"]),
            p["plate"],
            p["lane"],
            p["direction"],
            p["decision"],
            "-" if p["inside_s"] is None else f"{p['inside_s'] / 3600:.1f} h",
            p["event_id"] or "-",
        ]
        for p in passes
    ]
    print_table(rows, ["time", "plate", "lane", "direction", "decision", "inside", "event"])
    return 0


def cmd_events(args: argparse.Namespace, app_factory: AppFactory) -> int:
    app = app_factory()
    since = parse_since(args.since, app.clock()) if args.since else None
    evs = app.store.events(since=since, kind=args.kind, gate=args.gate, limit=args.limit + 1)
    if len(evs) > args.limit:  # the newest --limit are shown; say that older ones exist
        evs = evs[1:]
        print(
            f"gatectl: older events not shown (the newest {args.limit}; "
            "--limit N or --since to see them)",
            file=sys.stderr,
        )
    names = {r.id: r.name for r in app.store.residents()}
    if args.json:
        for e in evs:
            print(
                json.dumps({**e.__dict__, "resident": names.get(e.resident_id)}, ensure_ascii=False)
            )
        return 0
    rows = [
        [
            fmt_time(e.ts),
            e.gate,
            e.kind,
            e.decision or "-",
            names.get(e.resident_id, "-"),
            e.reason,
            "-" if e.score is None else f"{e.score:.3f}",
            e.snapshot or "-",
        ]
        for e in evs
    ]
    print_table(
        rows, ["time", "gate", "kind", "decision", "resident", "reason", "score", "snapshot"]
    )
    return 0


def cmd_doctor(args: argparse.Namespace, app_factory: AppFactory) -> int:
    app = app_factory()
    problems = 0

    def report(ok: bool, what: str) -> None:
        nonlocal problems
        problems += not ok
        print(f"[{'ok' if ok else 'FAIL'}] {what}")

    for line in app.cfg.startup_problems():  # what `run` refuses on, as `config check` says it
        report(False, line)
    if app.cfg.sync.enabled and not app.cfg.sync.missing_files():
        try:  # built as `run` builds it: keys, password file and certificates loaded
            app.sync_client(dict, str)
            report(
                True,
                f"sync: client for {app.cfg.sync.host}:{app.cfg.sync.port} ready (keys, "
                "files, certificates)",
            )
        except USER_ERRORS as exc:
            report(False, str(exc))
    for spec, err in app.models.check_all():
        report(err is None, err or f"model {spec.name}: {spec.file} verified ({spec.licence})")
    for gate in app.cfg.gates:
        try:  # builds the gate as `run` would: its models loaded and checked against the config
            app.gate(gate)
            report(True, f"gate {gate.name} ({gate.kind}): pipeline ready")
        except USER_ERRORS as exc:
            report(False, f"gate {gate.name} ({gate.kind}): {exc}")
    damage = corruption(app.store_path)  # what `run` would move aside at start
    if damage is not None:
        report(
            False,
            f"store {app.store_path}: corrupt ({shown(damage, 200)}): "
            f"`gatectl run` will move it aside and start a fresh store",
        )
    else:
        try:
            store = app.store
            with store.write() as db:
                db.execute("UPDATE meta SET value = value WHERE key = 'directory_rev'")
            report(True, f"store {store.path} writable (schema v{store.schema_version})")
            foreign = store.foreign_model_templates(app.embedder.model_id)
            report(
                foreign == 0,
                f"{foreign} template(s) from another embedding model need re-enrollment"
                if foreign
                else "all templates match the embedding model",
            )
        except StoreError as exc:
            report(False, str(exc))
    for name, board in app.boards.items():
        try:
            wait_online(board, args.camera_timeout)
            report(True, f"relay board {name}: online ({board.status().get('driver')})")
        except BoardError as exc:
            report(False, str(exc))
    free = free_disk_mb(app.data_dir)
    report(free > 200, f"free disk at {app.data_dir}: {free:.0f} MB")
    if app.cfg.sync.enabled and not app.cfg.sync.missing_files():  # missing files: said once above
        report(*sync_check(app.cfg))
    for cam in app.cfg.cameras:
        g = CameraGrabber(cam)
        g.start()
        frame = g.get(timeout=args.camera_timeout)
        st = g.stats()
        g.stop()
        report(
            frame is not None,
            f"camera {cam.name} ({cam.source}): "
            + (
                f"{frame.image.shape[1]}x{frame.image.shape[0]} frame received"
                if frame is not None
                else f"no frame in {args.camera_timeout:.0f} s (state {st['state']})"
            ),
        )
    app.close()
    print("doctor: all checks passed" if problems == 0 else f"doctor: {problems} problem(s)")
    return 0 if problems == 0 else 1


def cmd_relay(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """For technicians wiring a site: drive one output, or watch the inputs."""
    app = app_factory()
    try:
        if args.action == "pulse":
            if not args.output:
                raise UsageError("relay pulse: give --output NAME (see [[outputs]] in the config)")
            try:
                o = app.cfg.output(args.output)
            except StopIteration:
                names = ", ".join(x.name for x in app.cfg.outputs) or "none configured"
                raise UsageError(
                    f"--output: unknown output '{shown(args.output, 40)}' ({names})"
                ) from None
            board = app.boards[o.board]
            wait_online(board, args.timeout)
            seconds = min(args.seconds, o.max_on_s)
            if seconds < args.seconds:
                print(
                    f"gatectl: --seconds {args.seconds:g} capped at "
                    f"outputs.{o.name}.max_on_s = {o.max_on_s:g}",
                    file=sys.stderr,
                )
            app.outputs.pulse(o.name, seconds)
            mode = "board-timed" if board.hw_pulse else "software-timed"
            label = f"output {o.name} (board {o.board} channel {o.channel})"
            on = wait_state(board, o.channel, True, time.monotonic() + 1.0)
            print(
                f"{label}: {'on' if on else 'NOT reported on'} for {seconds:g} s ({mode})",
                flush=True,
            )
            # stay until the pulse has ended: a software-timed one needs this process, and the
            # technician wants to see the board report the relay off again
            off = wait_state(board, o.channel, False, time.monotonic() + seconds + 2.0)
            print(f"{label}: {'off again' if off else 'STILL ON'}")
            return 0 if on and off else 1
        for board in app.boards.values():
            wait_online(board, args.timeout)
        states = app.controls.input_states()
        rows = [[i.name, i.board, str(i.index), i.role, i.door or "-",
                 "?" if states[i.name] is None else ("ACTIVE" if states[i.name] else "inactive")]
                for i in app.cfg.inputs]
        print_table(rows, ["input", "board", "index", "role", "door", "state"])
        for name, board in app.boards.items():
            raw = board.inputs()
            print(f"board {name}: " + ("unreachable" if raw is None else
                                       " ".join(f"{k}:{int(v)}" for k, v in enumerate(raw))))
        return 0
    finally:
        app.close()


def sync_check(cfg: Config) -> tuple[bool, str]:
    """The doctor's broker check: one connection with the configured TLS and credentials."""
    from gatectl.sync.diagnose import probe

    try:
        ok, line = probe(
            cfg.sync, f"gatectl-doctor-{cfg.device.site}-{cfg.device.id}-{os.getpid()}"
        )
    except ConfigError as exc:
        ok, line = False, "; ".join(exc.lines)
    return ok, f"sync: {line}"


def wait_online(board: Relay, timeout: float) -> None:
    """A serial board needs a moment to open its port and poll once; say why if it cannot."""
    deadline = time.monotonic() + timeout
    while board.status().get("state") != "online":
        if time.monotonic() > deadline:
            st = board.status()
            raise BoardError(f"relay board {st.get('port') or st.get('driver')}: "
                              f"{st.get('last_error') or 'not answering'}")
        time.sleep(0.05)
    while board.inputs() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_state(board: Relay, channel: int, on: bool, deadline: float) -> bool:
    """Wait for the board's read-back to report ``channel`` as ``on``; False at ``deadline``."""
    while board.is_on(channel) != on:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def cmd_sync(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """Works without the daemon and without the broker: both only touch the outbox."""
    app = app_factory()
    try:
        if not app.cfg.sync.enabled:
            raise UsageError("sync: not enabled in the config ([sync] enabled = true)")
        if args.action == "resync":
            app.store.enqueue("resync", app.cfg.device.id)
            print("resync requested: the daemon sends it with the next outbox drain")
            return 0
        for key, value in app.store.outbox_stats().items():
            print(f"{key:18} {value}")
        return 0
    finally:
        app.close()


def cmd_clock(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """The running daemon's view of the clock (written in the store's meta table), and the
    operator's way to trust it again after a jump: a request the daemon applies within a few
    seconds (its slow tick), answered in the same table."""
    from gatectl.clock import CLOCK_TRUST_REQUESTS, ClockJump, ntp_synced

    app = app_factory()
    try:
        store = app.store
        if args.action == "trust":
            asked = store.bump_meta(CLOCK_TRUST_REQUESTS)
            deadline = time.monotonic() + args.timeout
            while store.meta("clock_trust_applied").get("clock_trust_applied", 0) < asked:
                if time.monotonic() > deadline:
                    print(
                        "gatectl: clock trust: no running daemon answered within "
                        f"{args.timeout:g} s (is the service running? a daemon that starts "
                        "later trusts its clock anyway)",
                        file=sys.stderr,
                    )
                    return 1
                time.sleep(0.1)
        keys = (
            "clock_reported_at",
            "clock_trusted",
            "clock_jumps",
            "clock_last_jump_s",
            "clock_settles_at",
        )
        st = store.meta(*keys)
        synced = ntp_synced()
        print(f"wall clock  {fmt_time(time.time())} (this process)")
        print(
            "ntp         "
            + (
                f"synchronized (systemd-timesyncd, last {fmt_time(synced)})"
                if synced
                else "no sync reported by systemd-timesyncd since boot"
            )
        )
        if "clock_reported_at" not in st:
            print("daemon      no report in this store (the daemon has not run on it)")
            return 0
        if st["clock_trusted"]:
            state = "trusted"
        else:
            jump = ClockJump(st.get("clock_last_jump_s", 0), 0).describe()
            state = (f"NOT trusted: {jump}; retention and the re-enrollment rule held until "
                     f"{fmt_time(st['clock_settles_at'])} (device clock) or `gatectl clock trust`")
        print(f"daemon      {state}; {st['clock_jumps']} jump(s) since it started "
              f"(reported {fmt_time(st['clock_reported_at'])})")
        return 0
    finally:
        app.close()


def cmd_central(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """Everything after `central` is the reference tool's own command line (with its --help)."""
    from gatectl.sync.central import main as central_main

    return central_main(args.central_args)


def cmd_board_sim(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """With --board, the simulator answers as that configured board and knows its inputs' names."""
    from gatectl.hw.serial.sim import fill_defaults, serve

    if not args.board:
        return serve(args)
    cfg = args.load_config()
    try:
        board = cfg.board(args.board)
    except StopIteration:
        raise UsageError(f"--board: no board '{shown(args.board, 40)}' in the config "
                         f"({', '.join(b.name for b in cfg.boards) or 'none'})") from None
    fill_defaults(args, board)
    return serve(
        args, names={i.name: (i.index, i.role) for i in cfg.inputs if i.board == board.name}
    )


def cmd_run(args: argparse.Namespace, app_factory: AppFactory) -> int:
    from gatectl.service.runner import Runner

    app = app_factory()
    problems = app.cfg.startup_problems()
    if problems:
        raise ConfigError(problems)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runner = Runner(app, stop, args.config_path)
    try:
        runner.run()
    finally:
        app.close()
    if runner.reexec:  # remote config.reload: same process id, so systemd keeps supervising it
        log.warning("restarting with the reloaded configuration")
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, "-m", "gatectl", *sys.argv[1:]])
    return 0


def replay_gate(cfg: Config, name: str | None) -> GateConfig:
    gates = [g for g in cfg.gates if name is None or g.name == name]
    if not gates:
        raise UsageError(
            f"--gate: no gate named '{shown(name, 40)}'" if name else "replay: config has no gate"
        )
    return gates[0]


def walk_media(
    paths: list[str],
    still_frames: int,
    begin: Callable[[str], None],
    end: Callable[[], None],
    frame: Callable,
) -> int:
    """Every frame of every input, with ``begin(source)`` / ``end()`` around each input file;
    unreadable inputs are reported on stderr and skipped. Returns 1 if there was one (the exit
    code: a script replaying a folder must notice a file that was never looked at), else 0."""
    current: str | None = None
    failed = 0
    for item in iter_media(paths, still_frames=still_frames):
        if isinstance(item, MediaError):
            if current is not None:
                end()
            current = None
            failed = 1
            print(f"gatectl: {item}", file=sys.stderr)
            continue
        if item.source != current or item.index == 0:
            if current is not None:
                end()
            current = item.source
            begin(current)
        frame(item)
    if current is not None:
        end()
    return failed


def replay_plates(lane: PlateLane, paths: list[str], emit: Callable[[dict], None],
                  still_frames: int) -> int:
    """Lane images and videos through a plate lane: one dict per vehicle decided, `no_plate`
    for an input where no vehicle was decided."""
    state: dict = {"source": None, "decided": False, "t": 0.0}

    def out(frame: int | None, decisions: list[LaneDecision]) -> None:
        for d in decisions:
            state["decided"] = True
            emit(
                {
                    "source": state["source"],
                    "frame": frame,
                    "gate": d.gate,
                    "plate": d.plate,
                    "color": d.colour,
                    "decision": d.decision,
                    "reason": d.reason,
                    "score": round(d.score, 4),
                    "event": d.event.id,
                    "snapshot": d.event.snapshot,
                }
            )

    def begin(source: str) -> None:
        lane.reset()
        state.update(source=source, decided=False)

    def end() -> None:
        out(None, lane.flush(state["t"] + 1e6))
        if not state["decided"]:
            emit(
                {
                    "source": state["source"],
                    "frame": None,
                    "gate": lane.cfg.name,
                    "plate": None,
                    "color": None,
                    "decision": "no_plate",
                    "reason": "no plate found",
                    "score": None,
                }
            )

    def frame(item: MediaFrame) -> None:
        state["t"] = item.t
        out(item.index, lane.process(item.image, item.t))

    return walk_media(paths, still_frames, begin, end, frame)


def replay_ebike(gate: EbikeGate, paths: list[str], emit: Callable[[dict], None],
                 still_frames: int) -> int:
    """Elevator images and videos through an e-bike gate: a line when an e-bike is confirmed
    (the hold starts) or gone, and a `clear` line for an input where none was confirmed."""
    state: dict = {"source": None, "confirmed": False, "best": None}

    def begin(source: str) -> None:
        gate.reset()
        state.update(source=source, confirmed=False, best=None)

    def end() -> None:
        if not state["confirmed"]:
            best = state["best"]
            emit(
                {
                    "source": state["source"],
                    "frame": None,
                    "gate": gate.cfg.name,
                    "decision": "clear",
                    "reason": "no e-bike confirmed",
                    "score": None if best is None else round(best.score, 4),
                    "label": None if best is None else best.label,
                }
            )

    def frame(item: MediaFrame) -> None:
        for d in gate.process(item.image, item.t):
            state["confirmed"] = state["confirmed"] or d.decision == "ebike"
            emit(
                {
                    "source": item.source,
                    "frame": item.index,
                    "gate": d.gate,
                    "decision": d.decision,
                    "reason": d.reason,
                    "score": round(d.score, 4),
                    "boxes": [[round(float(v)) for v in x.box] for x in gate.last_detections],
                }
            )
        for det in gate.last_detections:
            if state["best"] is None or det.score > state["best"].score:
                state["best"] = det

    return walk_media(paths, still_frames, begin, end, frame)


def replay(app: App, paths: list[str], gate_name: str | None, emit: Callable[[dict], None],
           still_frames: int = 3) -> int:
    """Feed files through the same gate as `run`; one dict per decision, and one `no_face` per
    input with no usable face. A still is shown for ``still_frames`` frames, as a camera would."""
    gate_cfg = replay_gate(app.cfg, gate_name)
    if isinstance(gate_cfg, PlateGateConfig):
        return replay_plates(app.plate_lane(gate_cfg), paths, emit, still_frames)
    if isinstance(gate_cfg, EbikeGateConfig):
        return replay_ebike(app.ebike_gate(gate_cfg), paths, emit, still_frames)
    gate = app.face_gate(gate_cfg)
    state: dict = {"source": None, "decided": False, "seen": False, "problem": None}

    def begin(source: str) -> None:
        gate.reset()
        state.update(source=source, decided=False, seen=False, problem=None)

    def end() -> None:
        if not state["decided"]:
            emit(
                {
                    "source": state["source"],
                    "decision": "no_face",
                    "resident": None,
                    "reason": state["problem"]
                    or ("no face found" if not state["seen"] else "no decision"),
                    "score": None,
                }
            )

    def frame(item: MediaFrame) -> None:
        for d in gate.process(item.image, item.t):
            state["decided"] = True
            emit(
                {
                    "source": item.source,
                    "frame": item.index,
                    "gate": d.gate,
                    "decision": d.decision,
                    "resident": d.resident,
                    "reason": d.reason,
                    "score": round(d.score, 4),
                    "event": d.event.id,
                    "snapshot": d.event.snapshot,
                }
            )
        observed = gate.last_observations
        state["seen"] = state["seen"] or bool(observed)
        poor = [o.quality.problem for o in observed if not o.quality.ok]
        if poor and len(poor) == len(observed):
            state["problem"] = poor[0]

    return walk_media(paths, still_frames, begin, end, frame)


def cmd_replay(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """On a scratch copy of the store unless --store: a replay's events, snapshots and "last
    seen" must not enter the real audit trail nor restart anyone's 15-day inactivity clock."""
    if args.store:
        return _replay_cmd(args, app_factory(simulated=True))
    with tempfile.TemporaryDirectory(prefix="gatectl-replay-") as scratch:
        return _replay_cmd(args, app_factory(simulated=True, scratch=Path(scratch)))


def _replay_cmd(args: argparse.Namespace, app: App) -> int:

    def emit(d: dict) -> None:
        if args.json:
            print(json.dumps(d, ensure_ascii=False), flush=True)
        else:
            score = "-" if d["score"] is None else f"{d['score']:.3f}"
            who = d.get("plate", d.get("resident", d.get("label"))) or "-"
            print(
                f"{shown(Path(d['source']).name)}: {d['decision']} {shown(who)} "
                f"({shown(d['reason'])}) "
                f"score {score}",
                flush=True,
            )

    try:
        return replay(app, args.paths, args.gate, emit)
    finally:
        app.close()


def cmd_demo(args: argparse.Namespace, app_factory: AppFactory) -> int:
    from gatectl.demo import run_demo

    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="gatectl-demo-"))
    return run_demo(data, sample_dir(), json_out=args.json)


# --- parser ----------------------------------------------------------------------------------

def add_list_options(p: argparse.ArgumentParser) -> None:
    """`list` output: JSON lines, and a window of a long list (the rest is counted on stderr)."""
    p.add_argument(
        "--json",
        action="store_true",
        help="list: one JSON object per line (times in epoch seconds)",
    )
    p.add_argument(
        "--limit",
        type=number_in(1, 100_000, int),
        default=100,
        metavar="N",
        help="list: at most N rows (default 100)",
    )
    p.add_argument(
        "--offset",
        type=number_in(0, 10**9, int),
        default=0,
        metavar="N",
        help="list: skip the first N rows",
    )


def build_parser() -> Parser:
    p = Parser(prog="gatectl", description="Edge daemon for the gates of a residential compound.")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="device TOML; default $GATECTL_CONFIG, else the service's "
        f"{system_config_path()}, else built-in one-gate defaults",
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        help="state folder (store, snapshots); default the config's "
        f"storage.state_dir, $STATE_DIRECTORY, the service's {system_state_dir()}, else "
        f"{default_data_dir()[0]}",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    c = sub.add_parser("config", help="check a config file")
    c.add_argument("action", choices=["check"])
    c.add_argument("file")
    c.set_defaults(func=cmd_config_check)

    e = sub.add_parser("enroll", help="enroll a resident from photos or a live camera")
    e.add_argument("--name", help=f"at most {NAME_MAX} printable characters")
    e.add_argument(
        "--unit", help=f"building-unit-room, e.g. 3-2-1501 (at most {UNIT_MAX} characters)"
    )
    e.add_argument(
        "--resident",
        metavar="ID",
        help="re-enroll: add these photos to an enrolled resident "
        "(restarts their inactivity clock)",
    )
    e.add_argument("--photo", action="append", default=[], metavar="FILE")
    e.add_argument("--camera", metavar="NAME", help="capture from a configured camera instead")
    e.set_defaults(func=cmd_enroll)

    r = sub.add_parser(
        "residents", help="list, show, update, remove, reactivate or suspend residents"
    )
    r.add_argument("action", choices=["list", "show", "update", "remove", "reactivate", "suspend"])
    r.add_argument("who", nargs="?", help="resident id or exact name")
    r.add_argument("--name", help="update: new name")
    r.add_argument("--unit", help="update: move to this unit")
    r.add_argument(
        "--add-photo", action="append", default=[], metavar="FILE", help="update: more photos"
    )
    r.add_argument(
        "--replace-photos",
        action="append",
        default=[],
        metavar="FILE",
        help="update: these photos instead of all the old ones",
    )
    r.add_argument(
        "--status", choices=["active", "suspended", "re-enrollment required"], help="list: filter"
    )
    add_list_options(r)
    r.set_defaults(func=cmd_residents)

    w = sub.add_parser("watchlist", help="faces that raise an alert")
    w.add_argument("action", choices=["add", "remove", "list"])
    w.add_argument("id", nargs="?", help="entry id (remove)")
    w.add_argument("--name")
    w.add_argument("--photo", action="append", default=[], metavar="FILE")
    w.add_argument("--resident", metavar="ID", help="put an enrolled resident on the watchlist")
    w.add_argument("--reason", default="")
    add_list_options(w)
    w.set_defaults(func=cmd_watchlist)

    pl = sub.add_parser("plates", help="vehicle lists: resident whitelist, visitors, blacklist")
    pl.add_argument("action", choices=["add", "remove", "list"])
    pl.add_argument("plate", nargs="?")
    pl.add_argument("--list", choices=["resident", "visitor", "blacklist"], default=None)
    pl.add_argument("--resident", metavar="ID", help="the resident the car belongs to")
    pl.add_argument("--unit")
    pl.add_argument("--note", help="e.g. the reason for a blacklist entry")
    pl.add_argument("--from", dest="from_", metavar="TIME", help="valid from (ISO date/time)")
    pl.add_argument(
        "--to", metavar="TIME", help="valid until (ISO date/time); required for visitors"
    )
    pl.add_argument("--name", help="list: part of the owner's name")
    add_list_options(pl)
    pl.set_defaults(func=cmd_plates)

    vh = sub.add_parser("vehicles", help="vehicle entry/exit records")
    vh.add_argument("action", choices=["log", "inside"])
    vh.add_argument("--plate")
    vh.add_argument("--since", help="30m, 2h, 7d, or an ISO date/time")
    vh.add_argument("--days", type=number_in(0, 3650, unit=" days"), metavar="N",
                    help="inside: flag stays longer than this (default from the lanes)")
    vh.add_argument("--json", action="store_true")
    vh.set_defaults(func=cmd_vehicles)

    ev = sub.add_parser("events", help="list recorded events")
    ev.add_argument("action", choices=["list"])
    ev.add_argument("--since", help="30m, 2h, 7d, or an ISO date/time")
    ev.add_argument("--kind", choices=["access", "alert", "control", "command", "camera", "system"])
    ev.add_argument("--gate")
    ev.add_argument("--limit", type=number_in(1, 100_000, int), default=200, metavar="N")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_events)

    d = sub.add_parser("doctor", help="check models, store, disk and cameras")
    d.add_argument(
        "--camera-timeout",
        type=number_in(0.1, 120, unit=" s"),
        default=5.0,
        metavar="S",
        help="wait this long for each camera's first frame (0.1..120 s)",
    )
    d.set_defaults(func=cmd_doctor)

    sub.add_parser("run", help="run the configured gates until stopped").set_defaults(func=cmd_run)

    sy = sub.add_parser("sync", help="central sync: outbox state, ask the centre for a full resync")
    sy.add_argument("action", choices=["status", "resync"])
    sy.set_defaults(func=cmd_sync)

    ck = sub.add_parser(
        "clock", help="the daemon's trust in the wall clock; trust it again after a jump"
    )
    ck.add_argument("action", choices=["status", "trust"])
    ck.add_argument("--timeout", type=number_in(0.5, 120, unit=" s"), default=15.0, metavar="S",
                    help="trust: wait this long for the running daemon to apply it (0.5..120 s)")
    ck.set_defaults(func=cmd_clock)

    # no arguments of its own: main() hands the rest of the line to gatectl.sync.central
    # (argparse.REMAINDER after a subcommand refuses options such as --help)
    ce = sub.add_parser(
        "central",
        help="reference central-side tool (watch a site, enroll, signed commands)",
        add_help=False,
    )
    ce.set_defaults(func=cmd_central)

    rl = sub.add_parser("relay", help="pulse an output or read the inputs (wiring a site)")
    rl.add_argument("action", choices=["pulse", "inputs"])
    rl.add_argument("--output", metavar="NAME")
    rl.add_argument("--seconds", type=number_in(0.1, 600, unit=" s"), default=1.0, metavar="S",
                    help="pulse length, 0.1..600 s, capped at the output's max_on_s (default 1)")
    rl.add_argument("--timeout", type=number_in(0.1, 120, unit=" s"), default=5.0, metavar="S",
                    help="wait this long for the board (0.1..120 s)")
    rl.set_defaults(func=cmd_relay)

    from gatectl.hw.serial.sim import CONSOLE_HELP, add_arguments

    bs = sub.add_parser(
        "board-sim",
        help="a simulated Modbus RTU relay board on a pty (bench tool)",
        epilog=CONSOLE_HELP,
    )
    add_arguments(bs)
    bs.add_argument(
        "--board",
        metavar="NAME",
        help="answer as this [[boards]] entry of the config (address, "
        "channels, inputs, baud) and accept its [[inputs]] names on the console",
    )
    bs.set_defaults(func=cmd_board_sim)

    rp = sub.add_parser("replay", help="feed images, folders or videos through a gate")
    rp.add_argument("paths", nargs="+", metavar="PATH")
    rp.add_argument("--gate", help="gate to use (face, plate or e-bike); default the first")
    rp.add_argument("--json", action="store_true", help="one JSON object per decision")
    rp.add_argument(
        "--store",
        action="store_true",
        help="record into the real store (events, snapshots, last seen); default a scratch copy",
    )
    rp.set_defaults(func=cmd_replay)

    dm = sub.add_parser(
        "demo", help="enroll sample residents in a scratch store and replay samples"
    )
    dm.add_argument("--json", action="store_true")
    dm.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    from gatectl.service.systemd import setup_logging

    try:
        args, rest = build_parser().parse_known_args(argv)
        if args.command == "central":
            args.central_args = rest
        elif rest:
            raise UsageError(
                f"gatectl {args.command}: unrecognized arguments: {shown(' '.join(rest), 80)}"
            )
        config_path, config_origin = find_config(args.config)
        args.config_path = config_path
        # these never act on the service's config or state, so a broken one must not stop them
        own = args.command in ("board-sim", "central", "config", "demo")
        cfg = load_config(config_path) if config_path and not own else default_config()
        args.load_config = lambda: load_config(config_path) if config_path else default_config()
        # the daemon logs at the configured level; one-shot commands only say what went wrong
        quiet = "error" if args.command in ("replay", "demo", "relay", "doctor") else "warning"
        setup_logging(args.log_level or (cfg.log_level if args.command == "run" else quiet))
        service_config = config_origin in ("$GATECTL_CONFIG", "the service's config")
        data, data_origin = ((Path(args.data), "--data") if args.data
                             else default_data_dir(cfg.storage.state_dir, service_config))
        announced = False

        def app_factory(simulated: bool = False, scratch: Path | None = None) -> App:
            """The App on the service's state; ``scratch``: on a copy of its store there."""
            nonlocal announced
            if not announced and (data_origin != "--data" or service_config):
                announced = True  # what was picked for the technician, said once on stderr
                print(
                    f"gatectl: config {config_path or '-'} ({config_origin}); "
                    f"state {data} ({data_origin})",
                    file=sys.stderr,
                )
            boards = simulated_boards(cfg) if simulated else None
            app = App(cfg, data, boards=boards)
            check_ownership(app)
            if scratch is None:
                return app
            return App(scratch_config(cfg), scratch_store(app, scratch), boards=boards)

        return args.func(args, app_factory)
    except UsageError as exc:  # outside text in a message went through shown() where it was quoted
        msg = str(exc)
        print(msg if msg.startswith("gatectl") else f"gatectl: {msg}", file=sys.stderr)
        return 2
    except USER_ERRORS as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"gatectl: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so in one line; the traceback goes to the debug log
        log.debug("internal error", exc_info=True)
        print(
            f"gatectl: internal error: {type(exc).__name__}: {exc} (run with "
            "--log-level debug for details)",
            file=sys.stderr,
        )
        return 70
