"""Tailgating on a door camera: people crossing the door line counted per grant.

Pure parts, fed boxes, door states and times: `DoorLine` (which side of the configured line a
point is, with a dead band), `PersonTracker` (boxes -> tracks, greedy by distance) and
`PassCounter` (grants against inward crossings within one pass). `TailgateWatch` is the edge:
it runs the person detector on the camera's frames only while the door is unlocked or open (or
within ``grace_s`` of it) and at most ``fps`` times a second, and records a ``tailgating``
alert with a snapshot and a short clip beside it.

People walk towards a door camera, so it sees their faces: with ``faces`` on, a face the face
detector finds outside every person box counts as a person too (`person_boxes`), its body
estimated from the face. The COCO person class misses some people a door camera sees (a masked
woman in a pale coat on a pale office wall scores 0.07 in her own CCTV frame, her face 0.77).

One pass is one open-close cycle of the door leaf: when the door contact reports the door
closed, the people counted so far went through on the grants so far, and counting starts
again - so two residents each opening the door for themselves are two passes, never a
tailgate. Without a contact, a pass lasts while the door is unlocked, plus ``grace_s``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from gatectl.config.analysis import TailgateConfig
from gatectl.domain.records import Event
from gatectl.store.recorder import EventRecorder, clip_of
from gatectl.vision.face.detect import FrameFaces

log = logging.getLogger("gatectl.tailgate")

OPEN_STATES = ("open", "held_open")  # the door contact reads open
WATCH_STATES = ("unlocked", *OPEN_STATES)
DEAD_BAND = 0.02  # of the frame's diagonal: a point this close to the line is on neither side
CLIP_SIDE = 480  # clip frames are scaled to this longest side (bounded memory and disk)
# the body a face stands for: an adult is some 7.5 heads tall and YuNet's box (brow to chin) a
# little shorter than the head, so about 7 boxes from the box's top down to the feet; three box
# widths wide (shoulders). Only the foot point matters to the door line: under the face.
BODY_PER_FACE = 7.0
BODY_WIDTH_PER_FACE = 3.0
COUNTED_GROWTH = 1.5  # see PersonTracker
PART_OF = 0.8  # a person box this much inside a taller one is part of that person (person_boxes)
# How far feet move between two sightings, in the person's own heights: at most
# FOOT_JITTER (the box's bottom moving with the gait, legs hidden and shown) plus
# MAX_FOOT_SPEED a second (running; the feet move faster in the image near a camera people
# walk towards). A move further than that is a detector's glitch for a frame (a box stretched
# to someone else's feet), not a step: no crossing is read from it (see `crossings`).
FOOT_JITTER = 0.25
MAX_FOOT_SPEED = 2.5


class DoorLine:
    """The door line in pixels of a ``width`` x ``height`` frame; `side` is +1 inside, -1
    outside, 0 within the dead band."""

    def __init__(self, cfg: TailgateConfig, width: int, height: int):
        self.p1 = np.array([cfg.x1 * width, cfg.y1 * height], np.float64)
        self.p2 = np.array([cfg.x2 * width, cfg.y2 * height], np.float64)
        d = self.p2 - self.p1
        self._normal = np.array([-d[1], d[0]]) / float(np.hypot(*d))
        inside = np.array([cfg.inside_x * width, cfg.inside_y * height]) - self.p1
        self._sign = 1.0 if float(inside @ self._normal) > 0 else -1.0
        self._band = DEAD_BAND * float(np.hypot(width, height))

    def side(self, point: np.ndarray) -> int:
        dist = self._sign * float((np.asarray(point, np.float64) - self.p1) @ self._normal)
        return 0 if abs(dist) < self._band else (1 if dist > 0 else -1)


def foot(box: np.ndarray) -> np.ndarray:
    """Where a person stands: the bottom centre of their box (the door line is on the floor)."""
    return np.array([(box[0] + box[2]) / 2, box[3]], np.float64)


def body_of(face: np.ndarray) -> np.ndarray:
    """The body box a face box stands for (see BODY_PER_FACE)."""
    x1, y1, x2, y2 = (float(v) for v in face)
    cx, w, h = (x1 + x2) / 2, x2 - x1, y2 - y1
    half = BODY_WIDTH_PER_FACE * w / 2
    return np.array([cx - half, y1, cx + half, y1 + BODY_PER_FACE * h], np.float32)


def _inside(a: np.ndarray, b: np.ndarray) -> float:
    """How much of box ``a`` lies inside box ``b`` (0..1 of a's area)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    area = float((a[2] - a[0]) * (a[3] - a[1]))
    return float(max(w, 0) * max(h, 0)) / area if area > 0 else 1.0


def person_boxes(persons: Sequence[np.ndarray],
                 faces: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(the person boxes, a body box for each face that is no person box's head): a face whose
    centre lies within a person box's width and its upper half (or up to one face height above
    it, a box cut at the brow) is that person's, already counted. A person box lying PART_OF
    inside a taller one is dropped: the detector gives one walker a second box at times (the
    upper body, a leg), which would cross the line too and make one person two; someone half
    hidden behind another shows more of themselves beside them than that."""
    boxes = [np.asarray(b, np.float32) for b in persons]
    people = [b for b in boxes if not any(
        o[3] - o[1] > b[3] - b[1] and _inside(b, o) >= PART_OF for o in boxes)]
    bodies = [body_of(np.asarray(f)) for f in faces
              if not any(b[0] <= (f[0] + f[2]) / 2 <= b[2]
                         and b[1] - (f[3] - f[1]) <= (f[1] + f[3]) / 2 <= (b[1] + b[3]) / 2
                         for b in people)]
    return people, bodies


@dataclass
class PersonTrack:
    id: int
    box: np.ndarray
    last_t: float
    side: int = 0  # the last side it was seen on (0: not yet on either)
    crossed: bool = False  # counted already: one person, one crossing
    leapt: bool = False  # its feet moved further since the last sighting than anyone walks


class PersonTracker:
    """Greedy nearest-centre association, gated by the box height (people walking at a few
    frames a second move less than their own height between frames). A track already counted
    across the line is not handed a box under 1/COUNTED_GROWTH or over COUNTED_GROWTH times its
    height: walking towards the camera, the one who went in leaves under it, large, while the
    one close behind, farther off and smaller, comes out from behind them - two people, and the
    second must not inherit the first one's crossing. (Only counted tracks: a track broken
    on the inside cannot count anyone twice; one broken outside could.)"""

    def __init__(self, timeout_s: float = 1.5, max_step: float = 1.0,
                 hidden_s: float = 1.5):
        """``hidden_s``: how long a track last seen outside the line (not yet counted) lives on
        unseen - the one close behind is hidden by the one in front while they go through."""
        self.timeout_s = timeout_s
        self.max_step = max_step
        self.hidden_s = max(hidden_s, timeout_s)
        self.tracks: list[PersonTrack] = []
        self._next = 1

    def reset(self) -> None:
        self.tracks = []

    def update(self, boxes: Sequence[np.ndarray], t: float,
               starts: Sequence[bool] | None = None) -> list[PersonTrack]:
        """The tracks of the boxes (in order); an unmatched box starts a track only where
        ``starts`` says it may (None: every one) - a weak box can carry someone already
        followed, not make someone up."""
        self.tracks = [tr for tr in self.tracks if t - tr.last_t <= (
            self.hidden_s if tr.side == -1 and not tr.crossed else self.timeout_s)]
        centres = [np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]) for b in boxes]
        pairs = []
        for bi, (b, c) in enumerate(zip(boxes, centres)):
            for ti, tr in enumerate(self.tracks):
                tc = np.array([(tr.box[0] + tr.box[2]) / 2, (tr.box[1] + tr.box[3]) / 2])
                h = max(float(b[3] - b[1]), float(tr.box[3] - tr.box[1]), 1.0)
                step = float(np.hypot(*(c - tc))) / h
                ratio = h / max(min(float(b[3] - b[1]), float(tr.box[3] - tr.box[1])), 1.0)
                if step <= self.max_step and not (tr.crossed and ratio > COUNTED_GROWTH):
                    pairs.append((step, bi, ti))
        out: list[PersonTrack | None] = [None] * len(boxes)
        used: set[int] = set()
        for _, bi, ti in sorted(pairs):
            if out[bi] is None and ti not in used:
                used.add(ti)
                out[bi] = self.tracks[ti]
        result = []
        for i, (b, found) in enumerate(zip(boxes, out)):
            if found is None and starts is not None and not starts[i]:
                continue
            tr = found or PersonTrack(self._next, np.asarray(b), t)
            if found is None:
                self._next += 1
                self.tracks.append(tr)
            height = max(float(tr.box[3] - tr.box[1]), 1.0)
            moved = float(np.hypot(*(foot(b) - foot(tr.box)))) / height
            tr.leapt = moved > FOOT_JITTER + MAX_FOOT_SPEED * (t - tr.last_t)
            tr.box, tr.last_t = np.asarray(b), t
            result.append(tr)
        return result


def crossings(tracks: Sequence[PersonTrack], line: DoorLine) -> list[PersonTrack]:
    """Tracks that went from outside to inside on this frame (each counts once). A track whose
    feet leapt (`PersonTrack.leapt`) keeps the side it had: where a glitch puts them says
    nothing, and the next sighting tells."""
    out = []
    for tr in tracks:
        s = line.side(foot(tr.box))
        if s == 0 or tr.leapt:
            continue
        if tr.side == -1 and s == 1 and not tr.crossed:
            tr.crossed = True
            out.append(tr)
        tr.side = s
    return out


@dataclass
class PassCounter:
    """Grants against inward crossings over one pass (pure: fed door states and times).

    The grant count is the door's since the controls started (`Controls.door_view`: from 0, as
    is ``grants_seen``), and the counter reads it on the frames it is fed, so grants may come
    before its first reading - a card, or a remote command, between a daemon (re)start and the
    camera's first frame. Those of the pass in progress count; grants read while the door is
    locked and closed past the grace belong to a pass that is over (each grant unlocks the
    door) and are dropped, so no earlier pass's grant excuses a follower."""

    grace_s: float
    granted: int = 0
    crossed: int = 0
    alerted: bool = False
    grants_seen: int = 0  # the door's count at the last reading
    _open: bool = False
    _until: float | None = None  # counting until then (door unlocked or open, plus grace)

    def door(self, now: float, state: str, grants: int) -> None:
        """The door's state word and its grant count (`Controls.door_view`) at ``now``."""
        if not self.watching(now):
            self.granted = self.crossed = 0
            self.alerted = False
        new = max(grants - self.grants_seen, 0)
        self.grants_seen = grants
        if state in WATCH_STATES or self.watching(now):
            self.granted += new
        is_open = state in OPEN_STATES
        if self._open and not is_open:  # the leaf closed: whoever crossed went on these grants
            self.crossed = 0
            self.alerted = False
        self._open = is_open
        if state in WATCH_STATES:
            self._until = now + self.grace_s

    def watching(self, now: float) -> bool:
        """Whether people crossing now are counted: the detector runs only then."""
        return self._until is not None and now <= self._until

    def crossing(self, now: float) -> bool:
        """One person crossed inward; True when that makes this pass a tailgate (once a pass).
        A pass with no grant (exit button, a fire release) is not counted: no one was let in."""
        if not self.watching(now) or self.granted == 0:
            return False
        self.crossed += 1
        if self.crossed > self.granted and not self.alerted:
            self.alerted = True
            return True
        return False


class PersonDetector(Protocol):
    def detect(self, image: np.ndarray) -> Sequence[Any]:
        """Detections with ``box``, ``score``, ``label``."""
        ...


class FaceFinder(Protocol):
    def detect(self, image: np.ndarray) -> Sequence[Any]:
        """Faces with ``box`` (x1, y1, x2, y2) and ``score``, at the finder's own threshold."""
        ...

    def reuse(self, shared: FrameFaces | None, image: np.ndarray) -> Sequence[Any] | None:
        """What `detect` would give, from another run on this frame (None: run `detect`)."""
        ...


@dataclass(frozen=True)
class TailgateAlert:
    door: str
    crossed: int
    granted: int
    event: Event


@dataclass
class _Clip:
    event: Event
    until: float
    frames: list[np.ndarray] = field(default_factory=list)


class TailgateWatch:
    """One door's tailgate watch over its camera's frames (`process(image, t)`, like a gate);
    ``faces``: the face finder whose faces count as people too (None: the person class only)."""

    def __init__(self, cfg: TailgateConfig, detector: PersonDetector,
                 door_view: Callable[[], tuple[str, int]], recorder: EventRecorder,
                 faces: FaceFinder | None = None):
        self.cfg = cfg
        self.name = f"tailgate-{cfg.door}"
        self.camera = cfg.camera
        self.detector = detector
        self.faces = faces
        self.door_view = door_view
        self.recorder = recorder
        self.counter = PassCounter(cfg.grace_s)
        self.tracker = PersonTracker(hidden_s=cfg.hidden_s)
        self._line: DoorLine | None = None
        self._last_run: float | None = None
        self._recent: deque[tuple[float, np.ndarray]] = deque()
        self._clip: _Clip | None = None
        self.runs = 0
        self.faces_reused = 0  # runs on the faces the gate found in the frame (no YuNet run)
        self.alerts = 0
        self.run_ms: deque[float] = deque(maxlen=200)

    def reset(self) -> None:
        self.tracker.reset()
        # the grants read so far stay read: a pass in progress is not credited them again
        self.counter = PassCounter(self.cfg.grace_s, grants_seen=self.counter.grants_seen)
        self._recent.clear()
        self._last_run = None

    def process(self, image: np.ndarray, t: float,
                faces: FrameFaces | None = None) -> list[TailgateAlert]:
        """One frame taken at ``t``; ``faces``: what the gate on this camera found in it (its
        worker hands them over), used instead of a face detector run of the watch's own when
        they cover it (`FaceDetector.reuse`)."""
        state, grants = self.door_view()
        self.counter.door(t, state, grants)
        watching = self.counter.watching(t)
        if not watching and self._clip is None:
            if self.tracker.tracks:
                self.tracker.reset()
                self._recent.clear()
            return []
        due = self._last_run is None or t - self._last_run >= 1.0 / self.cfg.fps - 1e-6
        if not due:
            return []
        self._last_run = t
        self._keep(image, t)
        if not watching:
            return []
        t0 = time.perf_counter()
        dets = [(np.asarray(d.box, np.float32), float(d.score)) for d in self.detector.detect(image)
                if d.label == "person" and d.score >= self.cfg.threshold]
        people, bodies = person_boxes([b for b, _ in dets],
                                      [np.asarray(f.box) for f in self._faces(image, faces)])
        score = {id(b): sc for b, sc in dets}  # person_boxes hands back these same arrays
        starts = [score[id(b)] >= self.cfg.start for b in people] + [True] * len(bodies)
        boxes = people + bodies
        self.runs += 1
        self.run_ms.append((time.perf_counter() - t0) * 1000)
        if self._line is None:
            self._line = DoorLine(self.cfg, image.shape[1], image.shape[0])
        tracks = self.tracker.update(boxes, t, starts)
        out = []
        for _ in crossings(tracks, self._line):
            if self.counter.crossing(t):
                out.append(self._alert(image, t, boxes))
        return out

    def _faces(self, image: np.ndarray, shared: FrameFaces | None) -> Sequence[Any]:
        """The faces in ``image``: the gate's of this frame when they cover the watch's own
        run, else that run (none without ``faces``)."""
        if self.faces is None:
            return []
        found = self.faces.reuse(shared, image)
        if found is None:
            return self.faces.detect(image)
        self.faces_reused += 1
        return found

    def _keep(self, image: np.ndarray, t: float) -> None:
        """The last ``clip_s`` / 2 seconds of frames, and the frames of a clip being taken."""
        if self.cfg.clip_s <= 0:
            return
        small = _scaled(image)
        if self._clip is not None:
            self._clip.frames.append(small)
            if t >= self._clip.until:
                self._write_clip(self._clip)
                self._clip = None
        self._recent.append((t, small))
        while self._recent and t - self._recent[0][0] > self.cfg.clip_s / 2:
            self._recent.popleft()

    def _alert(self, image: np.ndarray, t: float, boxes: list[np.ndarray]) -> TailgateAlert:
        c = self.counter
        snap = image.copy()
        if self._line is not None:
            cv2.line(snap, tuple(int(v) for v in self._line.p1),
                     tuple(int(v) for v in self._line.p2), (0, 255, 255), 2)
        for b in boxes:
            cv2.rectangle(snap, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 0, 255), 2)
        reason = (f"tailgating: {c.crossed} people crossed on {c.granted} grant(s) "
                  f"at door {self.cfg.door}")
        log.warning("%s", reason)
        ev = self.recorder.record(self.cfg.door, "alert", "alert", reason, snap)
        self.alerts += 1
        if self.cfg.clip_s > 0 and ev.snapshot and self._clip is None:
            self._clip = _Clip(ev, t + self.cfg.clip_s / 2, [f for _, f in self._recent])
        return TailgateAlert(self.cfg.door, c.crossed, c.granted, ev)

    def flush(self, t: float) -> list[TailgateAlert]:
        """End of an input (replay, a test clip): a clip being taken is written as it is."""
        if self._clip is not None:
            self._write_clip(self._clip)
            self._clip = None
        return []

    def _write_clip(self, clip: _Clip) -> None:
        """MJPEG in AVI (OpenCV's own writer: no codec library needed), written under a
        temporary name and renamed, beside the alert's snapshot."""
        if not clip.frames or clip.event.snapshot is None:
            return
        final = self.recorder.snapshot_dir / clip_of(clip.event.snapshot)
        tmp = final.with_name(final.name.replace(".clip.avi", ".clip-tmp.avi"))
        h, w = clip.frames[0].shape[:2]
        try:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"MJPG"), self.cfg.fps,
                                     (w, h))
            if not writer.isOpened():
                raise OSError("the MJPEG writer did not open")
            for f in clip.frames:
                writer.write(f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h)))
            writer.release()
            Path(tmp).replace(final)
        except OSError as exc:
            log.error("clip of event %s not saved: %s", clip.event.id, exc)

    def health(self) -> dict[str, Any]:
        ms = sorted(self.run_ms)
        return {"runs": self.runs, "alerts": self.alerts, "faces_reused": self.faces_reused,
                "detect_ms_p50": round(ms[len(ms) // 2], 1) if ms else None}


def _scaled(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    r = CLIP_SIDE / max(h, w)
    return image.copy() if r >= 1 else cv2.resize(image, (round(w * r), round(h * r)),
                                                  interpolation=cv2.INTER_AREA)
