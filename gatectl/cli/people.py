"""`gatectl enroll`, `residents` and `watchlist`: who may pass, from photos or a camera."""

from __future__ import annotations

import argparse
import getpass
import time
from pathlib import Path

from gatectl.cli.common import (
    AppFactory,
    fmt_time,
    matches,
    print_list,
    unit_matches,
)
from gatectl.core.errors import UsageError
from gatectl.core.safe_text import shown
from gatectl.domain.access import resident_state
from gatectl.domain.consent import BY_MAX, Consent, ConsentRecord
from gatectl.domain.records import Resident
from gatectl.people.enroll import (
    NAME_MAX,
    REASON_MAX,
    UNIT_MAX,
    Sample,
    checked_text,
)
from gatectl.runtime.app import App
from gatectl.sources.camera import CameraGrabber, SourceError
from gatectl.sources.media import read_image


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
            if grabber.health()["state"] in ("ended", "stopped"):
                break
            if frame is not None:
                samples.append(Sample(f"camera {camera} frame {frame.seq}", frame.image))
                time.sleep(1.0)
        if not samples:
            raise SourceError(
                f"camera {camera}: no frame within {timeout:.0f} s ({grabber.health()['state']})"
            )
        return samples
    finally:
        grabber.stop()


def login_user() -> str:
    """Who runs the command, as the default recorder of a consent."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def consent_line(c: ConsentRecord | None) -> str:
    """How `residents show` states the consent to face recognition."""
    if c is None:
        return "not recorded here (counts as local: templates stay on this device)"
    given = f"{c.scope}, recorded {fmt_time(c.given_at)} by {c.by or 'unknown'}"
    return given + (f"; withdrawn {fmt_time(c.withdrawn_at)}" if c.withdrawn_at else "")


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
    by = checked_text("--consent-by", args.consent_by or login_user(), BY_MAX)
    app = app_factory()
    who = one_resident(app, args.resident) if args.resident else None
    samples = load_samples(args.photo) if args.photo else capture_samples(app, args.camera)
    if who is not None:
        r = app.enroller().add_photos(who, samples)
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
    r = app.enroller().enroll_resident(args.name, args.unit, samples,
                                       Consent(args.consent, by))
    print(
        f"enrolled resident #{r.id} {shown(r.name)} ({shown(r.unit)}) "
        f"with {len(samples)} template(s); consent {args.consent}"
    )
    return 0


def cmd_residents(args: argparse.Namespace, app_factory: AppFactory) -> int:
    if args.action == "import":  # bulk enrollment: its own module (tqdm loads only there)
        from gatectl.cli.bulk import cmd_import

        return cmd_import(args, app_factory)
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
    if (args.state is None) == (args.action == "care"):
        raise UsageError("residents care ID on|off: on or off goes with `care` only")
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
            ("consent", consent_line(store.consent_of(r.id))),
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
    elif args.action == "care":
        changed = store.set_care(r.id, args.state == "on")
        print(f"resident #{r.id}: care {args.state}" + ("" if changed else " (already)")
              + (f"; alert after {app.cfg.analysis.care.hours:g} h without a pass"
                 if args.state == "on" else ""))
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
        r = app.enroller().add_photos(r, load_samples(photos), replace=bool(args.replace_photos))
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
            w = app.enroller().add_watch(args.name, reason, load_samples(args.photo))
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
