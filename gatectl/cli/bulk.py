"""`gatectl residents import FOLDER|CSV`: a compound's residents in one run, through the one
enrollment path (`people.enroll.Enroller`, the same checks as `gatectl enroll`).

Sources (both hostile: sizes and counts bounded, every name and unit checked by the enroller):
- a folder with one sub-folder per resident, named ``unit__name`` (``3-2-1501__Wang Wei``), or
  any name with a ``resident.json`` inside (``{"name": ..., "unit": ...}``); its images are the
  photos;
- a CSV with the header ``name,unit,photos``; ``photos`` is one or more paths separated by
  ``;``, relative to the CSV's folder.

Resumable: every outcome is appended (and fsynced) to a journal in the state folder, keyed by
the source's absolute path; a re-run skips who is already enrolled and tries the refused again
(their photos may have been fixed). A crash between the enrollment and its journal line is
caught by the store: the duplicate-face refusal then names the same name and unit, and that
counts as enrolled. The journal keeps digests, never names. Refusals (who, why) go to a CSV for
the office that took the photos (``--refusals``, default in the current folder: it names people,
so it is the operator's file, not the device's).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from gatectl.cli.common import AppFactory
from gatectl.core.errors import GatectlError, UsageError
from gatectl.core.safe_text import shown
from gatectl.people.enroll import MAX_TEMPLATES, DuplicateFace, Sample
from gatectl.runtime.app import App
from gatectl.sources.media import read_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
META = "resident.json"
META_MAX = 4096  # bytes of a resident.json
ROWS_MAX = 200_000  # residents in one import: a large compound is 10,000
CSV_FIELD_MAX = 4096  # characters of one CSV cell
PHOTO_MAX = 20 * 2**20  # bytes of one photo: a phone's JPEG is 2-8 MB
HEADER = ["name", "unit", "photos"]


@dataclass(frozen=True)
class Entry:
    """One resident to import: ``key`` identifies it in the journal, ``where`` in messages."""

    key: str
    where: str
    name: str | None
    unit: str | None
    photos: tuple[Path, ...]
    problem: str | None = None  # a refusal found while reading the source


def folder_entries(folder: Path) -> Iterator[Entry]:
    subs = sorted(p for p in folder.iterdir() if p.is_dir())
    if len(subs) > ROWS_MAX:
        raise UsageError(f"{folder}: {len(subs)} folders, at most {ROWS_MAX} in one import")
    for sub in subs:
        photos = tuple(sorted(p for p in sub.iterdir()
                              if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        name, unit, problem = _folder_identity(sub)
        yield Entry(sub.name, sub.name, name, unit, photos, problem)


def _folder_identity(sub: Path) -> tuple[str | None, str | None, str | None]:
    """(name, unit, problem) from ``resident.json`` or the ``unit__name`` folder name."""
    meta = sub / META
    if meta.is_file():
        if meta.stat().st_size > META_MAX:
            return None, None, f"{META}: larger than {META_MAX} bytes"
        try:
            data = json.loads(meta.read_bytes())
        except (ValueError, OSError) as exc:
            return None, None, f"{META}: not readable JSON ({type(exc).__name__})"
        if not isinstance(data, dict) or set(data) - {"name", "unit"}:
            return None, None, f'{META}: give an object with "name" and "unit" only'
        name, unit = data.get("name"), data.get("unit")
        if not isinstance(name, str) or not isinstance(unit, str):
            return None, None, f'{META}: "name" and "unit" must both be text'
        return name, unit, None
    if "__" in sub.name:
        unit, name = sub.name.split("__", 1)
        return name, unit, None
    return None, None, f"no unit: name the folder unit__name or add a {META}"


def csv_entries(file: Path) -> Iterator[Entry]:
    csv.field_size_limit(CSV_FIELD_MAX)
    try:
        f = open(file, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(f"{file}: cannot read ({exc.strerror or exc})") from None
    with f:
        reader = csv.reader(f)
        try:
            header = [h.strip().lower() for h in next(reader, [])]
            if header != HEADER:
                raise UsageError(f"{file}: the first line must be {','.join(HEADER)} "
                                 f"(found {shown(','.join(header), 60)})")
            for n, row in enumerate(reader, start=2):
                if n - 1 > ROWS_MAX:
                    raise UsageError(f"{file}: more than {ROWS_MAX} residents in one import")
                if not any(cell.strip() for cell in row):
                    continue
                where = f"{file.name} line {n}"
                if len(row) != len(HEADER):
                    yield Entry(f"line:{'|'.join(row)}", where, None, None, (),
                                f"{len(row)} columns, expected {len(HEADER)} ({','.join(HEADER)})")
                    continue
                name, unit, photos = row
                paths = tuple(file.parent / p.strip() for p in photos.split(";") if p.strip())
                yield Entry(f"{unit}\t{name}\t{photos}", where, name, unit, paths)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"{file}: not a readable UTF-8 CSV ({shown(str(exc), 80)})") from None


class Journal:
    """What earlier runs of this import did: key -> outcome, one JSON line each, appended."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line torn by a crash: that resident is simply tried again
                if isinstance(rec, dict) and isinstance(rec.get("key"), str):
                    self.done[rec["key"]] = rec
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    @staticmethod
    def _id(key: str) -> str:
        """Entries by digest: the journal stays in the state folder, and must not keep a name
        an erasure (`residents remove`) would have to find."""
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def enrolled(self, key: str) -> bool:
        return self.done.get(self._id(key), {}).get("status") == "enrolled"

    def note(self, key: str, status: str, **fields: object) -> None:
        digest = self._id(key)
        rec = {"key": digest, "status": status, "at": time.time(), **fields}
        self.done[digest] = rec
        self._f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def journal_path(app: App, source: Path) -> Path:
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
    return app.data_dir / "imports" / f"{digest}.jsonl"


@dataclass
class Outcome:
    enrolled: int = 0
    skipped: int = 0
    refused: int = 0
    seconds: float = 0.0  # spent enrolling (photos read, templates made, stored)
    durations: list[float] = field(default_factory=list)  # s per resident tried, in order


def load_photos(entry: Entry) -> list[Sample]:
    if not entry.photos:
        raise UsageError("no photo (jpg, jpeg, png, bmp, webp)")
    if len(entry.photos) > MAX_TEMPLATES:
        raise UsageError(f"{len(entry.photos)} photos, at most {MAX_TEMPLATES}")
    samples = []
    for p in entry.photos:
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            raise UsageError(f"{p.name}: no such file") from None
        except OSError as exc:
            raise UsageError(f"{p.name}: cannot read ({exc.strerror or exc})") from None
        if size > PHOTO_MAX:
            raise UsageError(f"{p.name}: {size / 2**20:.0f} MB, at most {PHOTO_MAX // 2**20} MB")
        samples.append(Sample(p.name, read_image(p)))
    return samples


def run_import(app: App, source: Path, refusals: Path, progress: bool = True) -> Outcome:
    """Enroll every resident of ``source`` not enrolled by an earlier run; refusals to the
    ``refusals`` CSV (rewritten each run: the ones still refused)."""
    entries = list(folder_entries(source) if source.is_dir() else csv_entries(source))
    try:  # before any model loads: a refusal file we cannot write is said at once
        refusals.parent.mkdir(parents=True, exist_ok=True)
        rf = open(refusals, "w", newline="", encoding="utf-8")  # noqa: SIM115 - with below
    except OSError as exc:
        raise UsageError(f"--refusals {refusals}: cannot write ({exc.strerror or exc}); give "
                         "--refusals FILE in a folder this user may write") from None
    journal = Journal(journal_path(app, source))
    out = Outcome()
    try:
        with rf:
            enroller = app.enroller()
            writer = csv.writer(rf)
            writer.writerow(["source", "name", "unit", "reason"])
            bar = tqdm(entries, desc="import", unit="resident", file=sys.stderr,
                       disable=not progress, mininterval=0.5, dynamic_ncols=True)
            for entry in bar:
                if journal.enrolled(entry.key):
                    out.skipped += 1
                    continue
                t0 = time.perf_counter()
                try:
                    if entry.problem:
                        raise UsageError(entry.problem)
                    samples = load_photos(entry)
                    rid: int | None
                    try:
                        rid = enroller.enroll_resident(entry.name or "", entry.unit or "",
                                                       samples).id
                    except DuplicateFace as dup:
                        rid = _same_resident(app, dup, entry)
                        if rid is None:
                            raise
                    journal.note(entry.key, "enrolled", resident=rid)
                    out.enrolled += 1
                except GatectlError as exc:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    writer.writerow([entry.where, entry.name or "", entry.unit or "", reason])
                    rf.flush()
                    journal.note(entry.key, "refused")  # the reason, with the name: the CSV
                    out.refused += 1
                out.durations.append(time.perf_counter() - t0)
                out.seconds += out.durations[-1]
                bar.set_postfix(enrolled=out.enrolled, refused=out.refused, refresh=False)
            bar.close()
    finally:
        journal.close()
    return out


def _same_resident(app: App, dup: DuplicateFace, entry: Entry) -> int | None:
    """The resident an earlier, interrupted run enrolled from this entry (same face, name and
    unit), so it counts as done; None when the face is someone else's."""
    if dup.owner is None or dup.owner[0] != "resident":
        return None
    try:
        r = app.store.resident(dup.owner[1])
    except KeyError:
        return None
    same = r.name == (entry.name or "").strip() and r.unit == (entry.unit or "").strip()
    return r.id if same else None


def cmd_import(args: argparse.Namespace, app_factory: AppFactory) -> int:
    if not args.who:
        raise UsageError("residents import: give a FOLDER (one sub-folder per resident) or a CSV "
                         "(name,unit,photos)")
    source = Path(args.who)
    if not source.exists():
        raise UsageError(f"residents import: {source}: no such folder or file")
    app = app_factory()
    # the operator's file, not the device's: it names people, so it stays out of the state folder
    refusals = Path(args.refusals or f"import-refusals-{time.strftime('%Y%m%d-%H%M%S')}.csv")
    out = run_import(app, source, refusals, progress=not args.json)
    done = out.enrolled + out.refused
    rate = out.seconds / done if done else 0.0
    if args.json:
        print(json.dumps({"enrolled": out.enrolled, "refused": out.refused,
                          "skipped": out.skipped, "s_per_resident": round(rate, 3),
                          "refusals": str(refusals)}))
    else:
        print(f"imported {out.enrolled} resident(s), {out.refused} refused"
              + (f" (who and why: {refusals})" if out.refused else "")
              + (f", {out.skipped} already enrolled by an earlier run" if out.skipped else "")
              + (f"; {rate:.2f} s per resident" if done else ""))
    return 0 if out.refused == 0 else 1
