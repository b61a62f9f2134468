"""Event records: sortable ids, snapshots on disk, the spool, and retention.

"Every person leaves a photo": each decision is one event row with a JPEG snapshot. The
snapshot file is written first (temp name, fsync, rename) and the row committed after, so a
crash leaves at worst an orphan file, never a row pointing at nothing (retention sweeps those).
A snapshot that cannot be written (full disk) costs the photo, never the event. An event the
store cannot take (full disk, corrupt page, read-only file, another process holding the write
lock past ``lock_wait_s``) is logged whole to the journal and appended to the spool, a small
fsynced file that is inserted, with its outbox rows, once the store takes writes again: the
door does not wait for the store, and the centre still gets the event.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from ulid import ULID

from gatectl.core.safe_text import shown
from gatectl.domain.records import DAY_SECONDS, Event
from gatectl.store import Store
from gatectl.store.db import StoreError

log = logging.getLogger("gatectl.events")

SNAPSHOT_LONG_SIDE = 1280


def new_event_id(ts: float) -> str:
    """ULID: unique across devices and sortable by time, so receivers can order and dedupe."""
    return str(ULID.from_timestamp(ts))


def write_file_durably(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, fsync the folder: the file is either whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    h, w = image.shape[:2]
    if max(h, w) > SNAPSHOT_LONG_SIDE:
        s = SNAPSHOT_LONG_SIDE / max(h, w)
        image = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class EventSpool:
    """Append-only JSON-lines file of events the store could not take, each line fsynced.

    Bounded (``max_bytes``): a full spool refuses the event, which then exists only in the
    journal. Its lines are read back as untrusted input (a power cut can leave half a line):
    a line that is not a well-formed event is counted and logged, never inserted."""

    def __init__(self, path: Path, max_bytes: int):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.dropped = 0  # events refused because the spool was full or unwritable
        self.bad_lines = 0
        self.lock = threading.Lock()

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def append(self, row: dict, seen_resident: int | None) -> bool:
        line = (
            json.dumps({"row": row, "seen": seen_resident}, separators=(",", ":")) + "\n"
        ).encode()
        with self.lock:
            size = self.size()
            if size + len(line) + 1 > self.max_bytes:
                self.dropped += 1
                return False
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
                try:
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        # end a line torn by a power cut: it must not swallow this one
                        line = b"\n" + line
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                self.dropped += 1
                return False
        return True

    def _read(self, report: bool = True) -> tuple[list[tuple[dict, int | None]], int]:
        """The valid entries and the number of bytes they were read from (caller holds the lock);
        ``report``: count and log the malformed lines (the drain does, once per line)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(self.max_bytes + 65536)
        except FileNotFoundError:
            return [], 0
        end = data.rfind(b"\n") + 1  # a half-written last line waits (or is dropped below)
        items = []
        for raw in data[:end].splitlines():
            item = _spooled(raw)
            if item is None and report:
                self.bad_lines += 1
                log.error(
                    "event spool %s: dropped a malformed line: %s",
                    self.path,
                    shown(raw.decode("utf-8", "replace")),
                )
            elif item is not None:
                items.append(item)
        if not end and len(data) >= self.max_bytes:
            end = len(data)  # one endless line, no event: cut it
        return items, end

    def entries(self) -> list[tuple[dict, int | None]]:
        """The well-formed spooled events (malformed lines are reported by the drain)."""
        with self.lock:
            return self._read(report=False)[0]

    def drain(self, store: Store, wait_s: float | None) -> int:
        """Insert every spooled event (idempotent by event id) and cut what was inserted from the
        file; returns how many new rows went in. Raises StoreError while the store still fails."""
        with self.lock:
            items, consumed = self._read()
            if not consumed:
                return 0
            inserted = store.insert_spooled(items, wait_s=wait_s) if items else 0
            with open(self.path, "rb") as f:
                rest = f.read()[consumed:]
            if rest:
                write_file_durably(self.path, rest)
            else:
                self.path.unlink()
            return inserted


_OPT_INT, _OPT_STR, _NUM = (int, type(None)), (str, type(None)), (int, float)
_EVENT_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "ts": _NUM,
    "gate": (str,),
    "kind": (str,),
    "decision": _OPT_STR,
    "reason": (str,),
    "resident_id": _OPT_INT,
    "watchlist_id": _OPT_INT,
    "score": (*_NUM, type(None)),
    "snapshot": _OPT_STR,
    "snapshot_bytes": (int,),
    "credential": _OPT_STR,
}
_OPTIONAL_FIELDS = {"credential"}  # absent from lines spooled before it existed


def _spooled(raw: bytes) -> tuple[dict, int | None] | None:
    """One spool line -> (event row, resident seen) if it is exactly an Event of sane types."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict) or set(obj) != {"row", "seen"} or not isinstance(obj["row"], dict):
        return None
    row, seen = obj["row"], obj["seen"]
    if (
        set(row) | _OPTIONAL_FIELDS != set(_EVENT_FIELD_TYPES)
        or not set(row) <= set(_EVENT_FIELD_TYPES)
        or not isinstance(seen, _OPT_INT)
        or isinstance(seen, bool)
    ):
        return None
    if not all(
        isinstance(row[k], t) and not isinstance(row[k], bool)
        for k, t in _EVENT_FIELD_TYPES.items() if k in row
    ):
        return None
    if (
        len(row["id"]) != 26
        or len(row["reason"]) > 4096
        or (row["snapshot"] and ".." in row["snapshot"])
    ):
        return None
    return row, seen


class EventRecorder:
    def __init__(self, store: Store, snapshot_dir: Path, jpeg_quality: int = 85,
                 clock: Callable[[], float] | None = None, *, spool: EventSpool | None = None,
                 lock_wait_s: float | None = None):
        """``lock_wait_s``: the longest an event waits for the store's write lock (None: the
        busy timeout); ``spool``: where events the store refused wait for its recovery."""
        self.store = store
        self.snapshot_dir = Path(snapshot_dir)
        self.jpeg_quality = jpeg_quality
        self.clock = clock or store.clock
        self.spool = spool
        self.lock_wait_s = lock_wait_s
        self.unrecorded = 0  # events the store refused (spooled or journal only)
        self.snapshot_failures = 0
        self.store_failing: str | None = None  # the reason, while the store refuses events

    def health(self) -> dict[str, Any]:
        """Events the store refused, why it is refusing now (None: it takes writes), spool size."""
        return {"events_unrecorded": self.unrecorded, "store_failing": self.store_failing,
                "spool_bytes": self.spool.size() if self.spool else 0}

    def _snapshot(self, event_id: str, ts: float, image: np.ndarray) -> tuple[str | None, int]:
        rel = Path(*[f"{v:02d}" for v in _ymd(ts)]) / f"{event_id}.jpg"
        try:
            data = encode_jpeg(image, self.jpeg_quality)
            write_file_durably(self.snapshot_dir / rel, data)
            return str(rel), len(data)
        except (OSError, ValueError) as exc:
            self.snapshot_failures += 1
            log.error("snapshot for event %s not saved: %s", event_id, exc)
            return None, 0

    def record(self, gate: str, kind: str, decision: str | None, reason: str,
               image: np.ndarray | None = None, *, resident_id: int | None = None,
               watchlist_id: int | None = None, score: float | None = None,
               ts: float | None = None, credential: str | None = None) -> Event:
        """Never raises for a store problem: the caller (a door) goes on either way.
        ``credential``: what an access decision rested on (face, card, card+pin, qr, totp)."""
        ts = self.clock() if ts is None else ts
        eid = new_event_id(ts)
        snap, size = self._snapshot(eid, ts, image) if image is not None else (None, 0)
        ev = Event(eid, ts, gate, kind, decision, reason, resident_id, watchlist_id,
                   None if score is None else round(float(score), 4), snap, size, credential)
        seen = resident_id if decision == "granted" else None
        try:
            self.store.insert_event(asdict(ev), seen_resident=seen, wait_s=self.lock_wait_s)
        except StoreError as exc:
            self.unrecorded += 1
            if self.store_failing is None:
                self.store_failing = str(exc)
                log.error(
                    "store refuses events: %s; doors keep opening from the in-memory directory, "
                    "events go to the spool (%s) until it recovers",
                    exc,
                    self.spool.path if self.spool else "none: journal only",
                )
            spooled = self.spool is not None and self.spool.append(asdict(ev), seen)
            log.critical(
                "EVENT NOT STORED (%s; %s): %s",
                exc,
                "spooled for the store's recovery" if spooled else "not spooled: journal only",
                json.dumps(asdict(ev)),
            )
        return ev

    def drain_spool(self) -> int:
        """Move spooled events into the store if it takes writes again (the supervisor calls
        this every few seconds); returns how many were inserted."""
        if self.spool is None or self.spool.size() == 0:
            return 0
        try:
            n = self.spool.drain(self.store, self.lock_wait_s)
        except StoreError as exc:
            log.debug("spool not drained yet: %s", exc)
            return 0
        if self.store_failing is not None or n:
            log.warning("store takes events again: %d spooled event(s) inserted", n)
        self.store_failing = None
        return n

    def delete_files(self, rel_paths: list[Path]) -> None:
        """The files, and the clip beside any snapshot among them."""
        for rel in list(rel_paths) + [clip_of(r) for r in rel_paths if str(r).endswith(".jpg")]:
            try:
                (self.snapshot_dir / rel).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot delete %s: %s", self.snapshot_dir / rel, exc)

    def apply_retention(
        self,
        retention_days: float,
        max_mb: float,
        *,
        event_days: float | None = None,
        event_max_rows: int | None = None,
        orphan_grace_s: float = 3600.0,
    ) -> int:
        """Drop snapshots older than the retention period or beyond the size budget, oldest
        first; with ``event_days`` also event rows by age and count (Store.expire_events); then
        sweep orphan snapshots and ``*.tmp`` files. Returns the number of files removed. Only
        call it on a trusted clock (gatectl.control.clock): every cut-off here is a wall-time
        difference."""
        now = self.clock()
        doomed = self.store.expire_snapshots(
            now - retention_days * DAY_SECONDS, int(max_mb * 1024 * 1024)
        )
        if event_days is not None:
            doomed += self.store.expire_events(now - event_days * DAY_SECONDS, event_max_rows)
        self.delete_files(doomed)
        swept = self.sweep_orphans(now - orphan_grace_s)
        if doomed or swept:
            log.info("retention removed %d snapshots and %d orphan files", len(doomed), swept)
        return len(doomed) + swept

    def sweep_orphans(self, older_than: float) -> int:
        """Delete files in the snapshot folder that nothing references: snapshots whose row was
        never committed (a crash between file and row) and ``*.tmp`` files a full disk or a
        crash left. A file still referenced by an event row, an enrollment photo or a spooled
        event is never touched, nor anything modified after ``older_than`` (a write in flight)."""
        if not self.snapshot_dir.is_dir():
            return 0
        keep = self.store.referenced_files()
        if self.spool is not None:
            keep.update(row["snapshot"] for row, _ in self.spool.entries() if row.get("snapshot"))
        removed = 0
        for dirpath, dirnames, filenames in os.walk(self.snapshot_dir):
            folder = Path(dirpath)
            for name in filenames:
                path = folder / name
                rel = str(path.relative_to(self.snapshot_dir))
                if name.endswith(CLIP_SUFFIX):  # kept while its snapshot is
                    if str(path.with_name(name.removesuffix(CLIP_SUFFIX) + ".jpg")
                           .relative_to(self.snapshot_dir)) in keep:
                        continue
                elif rel in keep or not name.endswith((".tmp", ".jpg", ".avi")):
                    continue
                try:
                    if path.stat().st_mtime >= older_than:
                        continue
                    path.unlink()
                    removed += 1
                except OSError as exc:
                    log.warning("cannot sweep %s: %s", path, exc)
        for dirpath, _, _ in sorted(os.walk(self.snapshot_dir), reverse=True):  # empty day folders
            if Path(dirpath) != self.snapshot_dir:
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
        return removed


CLIP_SUFFIX = ".clip.avi"  # an alert's short video beside its snapshot (analysis.tailgate)


def clip_of(snapshot: Path | str) -> Path:
    """Where the clip of a snapshot is: ``<event id>.clip.avi`` beside ``<event id>.jpg``; it
    goes when the snapshot goes (retention, erasure, the orphan sweep)."""
    p = Path(snapshot)
    return p.with_name(p.stem + CLIP_SUFFIX)


def _ymd(ts: float) -> tuple[int, int, int]:
    t = time.gmtime(ts)
    return t.tm_year, t.tm_mon, t.tm_mday


def free_disk_mb(path: Path) -> float:
    p = Path(path)
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free / 2**20
