"""Event records: sortable ids, snapshots on disk, and snapshot retention.

"Every person leaves a photo": each decision is one event row with a JPEG snapshot. The
snapshot file is written first (temp name, fsync, rename) and the row committed after, so a
crash leaves at worst an orphan file, never a row pointing at nothing. A snapshot that cannot
be written (full disk) costs the photo, never the event; an event the store cannot take is
logged whole to the journal, so no decision goes unrecorded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from ulid import ULID

from gatectl.store import DAY_SECONDS, Store, StoreError

log = logging.getLogger("gatectl.events")

SNAPSHOT_LONG_SIDE = 1280


@dataclass(frozen=True)
class Event:
    id: str
    ts: float
    gate: str
    kind: str  # access | alert | camera | system
    decision: str | None  # granted | denied | alert
    reason: str
    resident_id: int | None = None
    watchlist_id: int | None = None
    score: float | None = None
    snapshot: str | None = None  # relative to the snapshot folder
    snapshot_bytes: int = 0


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


class EventRecorder:
    def __init__(self, store: Store, snapshot_dir: Path, jpeg_quality: int = 85,
                 clock: Callable[[], float] | None = None):
        self.store = store
        self.snapshot_dir = Path(snapshot_dir)
        self.jpeg_quality = jpeg_quality
        self.clock = clock or store.clock
        self.unrecorded = 0  # events that only reached the journal
        self.snapshot_failures = 0

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
               ts: float | None = None) -> Event:
        ts = self.clock() if ts is None else ts
        eid = new_event_id(ts)
        snap, size = self._snapshot(eid, ts, image) if image is not None else (None, 0)
        ev = Event(eid, ts, gate, kind, decision, reason, resident_id, watchlist_id,
                   None if score is None else round(float(score), 4), snap, size)
        seen = resident_id if decision == "granted" else None
        try:
            self.store.insert_event(asdict(ev), seen_resident=seen)
        except StoreError as exc:
            self.unrecorded += 1
            log.critical("EVENT NOT STORED (%s): %s", exc, json.dumps(asdict(ev)))
        return ev

    def delete_files(self, rel_paths: list[Path]) -> None:
        for rel in rel_paths:
            try:
                (self.snapshot_dir / rel).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot delete %s: %s", self.snapshot_dir / rel, exc)

    def apply_retention(self, retention_days: float, max_mb: float) -> int:
        """Drop snapshots older than the retention period or beyond the size budget, oldest
        first; event rows stay. Returns the number of files removed."""
        doomed = self.store.expire_snapshots(self.clock() - retention_days * DAY_SECONDS,
                                             int(max_mb * 1024 * 1024))
        self.delete_files(doomed)
        if doomed:
            log.info("retention removed %d snapshots", len(doomed))
        return len(doomed)


def _ymd(ts: float) -> tuple[int, int, int]:
    t = time.gmtime(ts)
    return t.tm_year, t.tm_mon, t.tm_mday


def free_disk_mb(path: Path) -> float:
    p = Path(path)
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free / 2**20
