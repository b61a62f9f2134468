"""Tailgating on a door camera: people crossing the door line counted per grant.

Pure parts, fed boxes, door states and times: `DoorLine` (which side of the configured line a
point is, with a dead band), `PersonTracker` (sightings -> tracks, greedy by distance) and
`PassCounter` (grants against inward crossings within one pass). `TailgateWatch` is the edge:
it runs the person detector on the camera's frames only while the door is unlocked or open (or
within ``grace_s`` of it) and at most ``fps`` times a second, and records a ``tailgating``
alert with a snapshot and a short clip beside it.

People walk towards a door camera, so it sees their faces: with ``faces`` on, a face the face
detector finds outside every person box counts as a person too (`person_boxes`), its body
estimated from the face (by the person's own measure once a track has seen the two together).
The COCO person class misses some people a door camera sees (a masked woman in a pale coat on
a pale office wall scores 0.07 in her own CCTV frame, her face 0.77).

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
FEET_PER_FACE = (2.0, 9.0)  # the measures a track takes (a box cut at the chest .. long legs)
COUNTED_GROWTH = 1.5  # see PersonTracker
PART_OF = 0.8  # a person box this much inside a taller one is part of that person (person_boxes)
# ... or this much inside it with its feet where the taller one's are (within SAME_FEET of its
# height): two people do not stand on one spot, and someone behind stands higher in the frame
SAME_FEET_PART_OF, SAME_FEET = 0.5, 0.1
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


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def body_of(face: np.ndarray, per_face: float = BODY_PER_FACE) -> np.ndarray:
    """The body box a face box stands for: its feet ``per_face`` face heights under the brow
    (BODY_PER_FACE for anyone; `PersonTrack.feet_per_face` for someone measured)."""
    x1, y1, x2, y2 = (float(v) for v in face)
    cx, w, h = (x1 + x2) / 2, x2 - x1, y2 - y1
    half = BODY_WIDTH_PER_FACE * w / 2
    return np.array([cx - half, y1, cx + half, y1 + per_face * h], np.float32)


def _inside(a: np.ndarray, b: np.ndarray) -> float:
    """How much of box ``a`` lies inside box ``b`` (0..1 of a's area)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    area = float((a[2] - a[0]) * (a[3] - a[1]))
    return float(max(w, 0) * max(h, 0)) / area if area > 0 else 1.0


@dataclass
class Sighting:
    """One person on one frame: a person box, or (``face_only``) the body a face outside every
    person box stands for. ``face``: a person box's own face, when its feet are in the frame
    (the track measures from it how far under the brow this person's feet are), or the face a
    body stands for (a measured track places the feet by that measure, not by BODY_PER_FACE).
    ``starts``: whether it may start a track (`PersonTracker.update`)."""

    box: np.ndarray
    face: np.ndarray | None = None
    face_only: bool = False
    starts: bool = True


def _head_of(face: np.ndarray, box: np.ndarray) -> bool:
    """Whether ``face`` is the head of person ``box``: its centre within the box's width (or
    half a face width beyond its side: a box cut at the shoulder) and its upper half, or up to
    one face height above it (a box cut at the brow)."""
    cx, cy = _centre(face)
    half = (face[2] - face[0]) / 2
    return bool(box[0] - half <= cx <= box[2] + half
                and box[1] - (face[3] - face[1]) <= cy <= (box[1] + box[3]) / 2)


def _part_of(b: np.ndarray, o: np.ndarray) -> bool:
    """Whether person box ``b`` is part of the person of the taller box ``o`` (PART_OF,
    SAME_FEET)."""
    tall = float(o[3] - o[1])
    if tall <= b[3] - b[1]:
        return False
    inside = _inside(b, o)
    return inside >= PART_OF or (inside >= SAME_FEET_PART_OF
                                 and abs(float(o[3] - b[3])) <= SAME_FEET * tall)


def person_boxes(persons: Sequence[tuple[np.ndarray, float]], faces: Sequence[np.ndarray],
                 start: float = 0.0, frame_h: float = float("inf")) -> list[Sighting]:
    """The people on a frame: each person box (scored, ``start`` the score to start a track)
    with its head's face when its feet are clear of the frame's bottom (``frame_h``), then a
    `Sighting.face_only` body for each face that is no person box's head. A person box lying
    inside a taller one (`_part_of`) is dropped: the detector gives one walker a second box at
    times (the upper body, a leg, one side), which would cross the line too and make one person
    two; someone half hidden behind another shows more of themselves beside them than that, or
    stands higher in the frame."""
    boxes = [(np.asarray(b, np.float32), s) for b, s in persons]
    people = [(b, s) for b, s in boxes if not any(_part_of(b, o) for o, _ in boxes)]
    fs = [np.asarray(f, np.float32) for f in faces]
    out = [Sighting(b, next((f for f in fs if _head_of(f, b)), None) if b[3] < frame_h - 2
                    else None, starts=s >= start) for b, s in people]
    return out + [Sighting(body_of(f), f, face_only=True) for f in fs
                  if not any(_head_of(f, b) for b, _ in people)]


@dataclass
class PersonTrack:
    id: int
    box: np.ndarray
    last_t: float
    side: int = 0  # the last side it was seen on (0: not yet on either)
    crossed: bool = False  # counted already: one person, one crossing
    leapt: bool = False  # its feet moved further since the last sighting than anyone walks
    # how many face heights under the brow this person's feet were when last seen together
    # (None: never): a face seen without its person box then puts the feet there - the bodies
    # photos show vary (head and shoulders, a child, a coat to the ground), and a face taken
    # as an average adult's could stand someone past the line they have not reached
    feet_per_face: float | None = None


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

    def update(self, seen: Sequence[Sighting], t: float) -> list[PersonTrack]:
        """The tracks of the sightings (in order); an unmatched one starts a track only where
        it `Sighting.starts` - a weak box can carry someone already followed, not make someone
        up."""
        self.tracks = [tr for tr in self.tracks if t - tr.last_t <= (
            self.hidden_s if tr.side == -1 and not tr.crossed else self.timeout_s)]
        pairs = []
        for si, s in enumerate(seen):
            for ti, tr in enumerate(self.tracks):
                b = _placed(s, tr)
                h = max(float(b[3] - b[1]), float(tr.box[3] - tr.box[1]), 1.0)
                step = float(np.hypot(*(_centre(b) - _centre(tr.box)))) / h
                ratio = h / max(min(float(b[3] - b[1]), float(tr.box[3] - tr.box[1])), 1.0)
                if step <= self.max_step and not (tr.crossed and ratio > COUNTED_GROWTH):
                    pairs.append((step, si, ti))
        out: list[PersonTrack | None] = [None] * len(seen)
        used: set[int] = set()
        for _, si, ti in sorted(pairs):
            if out[si] is None and ti not in used:
                used.add(ti)
                out[si] = self.tracks[ti]
        result = []
        for s, found in zip(seen, out):
            if found is None and not s.starts:
                continue
            tr = found or PersonTrack(self._next, s.box, t)
            if found is None:
                self._next += 1
                self.tracks.append(tr)
            b = _placed(s, tr)
            height = max(float(tr.box[3] - tr.box[1]), 1.0)
            moved = float(np.hypot(*(foot(b) - foot(tr.box)))) / height
            tr.leapt = moved > FOOT_JITTER + MAX_FOOT_SPEED * (t - tr.last_t)
            tr.box, tr.last_t = b, t
            if s.face is not None and not s.face_only:
                fh = max(float(s.face[3] - s.face[1]), 1.0)
                tr.feet_per_face = float(np.clip((b[3] - s.face[1]) / fh, *FEET_PER_FACE))
            result.append(tr)
        return result


def _placed(s: Sighting, tr: PersonTrack) -> np.ndarray:
    """Where sighting ``s`` puts the person of track ``tr``: a face-only body by the track's own
    measure (`PersonTrack.feet_per_face`) when it has one."""
    if s.face_only and s.face is not None and tr.feet_per_face is not None:
        return body_of(s.face, tr.feet_per_face)
    return s.box


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
class Tally:
    """The people counted through one pass, and whether that pass was alerted on already."""

    crossed: int = 0
    alerted: bool = False

    def add(self, granted: int) -> bool:
        """One more through; True when that makes the pass a tailgate (once a pass)."""
        self.crossed += 1
        if self.crossed > granted and not self.alerted:
            self.alerted = True
            return True
        return False


@dataclass
class PassCounter:
    """Grants against inward crossings over one pass (pure: fed door states and times).

    The grant count is the door's since the controls started (`Controls.door_view`: from 0, as
    is ``grants_seen``), and the counter reads it on the frames it is fed, so grants may come
    before its first reading - a card, or a remote command, between a daemon (re)start and the
    camera's first frame. Those of the pass in progress count; grants read while the door is
    locked and closed past the grace belong to a pass that is over (each grant unlocks the
    door) and are dropped, so no earlier pass's grant excuses a follower.

    Someone first seen inside while the leaf is shut went through before it shut: at a few
    frames a second the detector can miss a walker from before the line until after the door
    closed behind them. Their crossing counts for the pass that ended then (``ended``), not
    for the next one, where it would make the next person a tailgater."""

    grace_s: float
    granted: int = 0
    grants_seen: int = 0  # the door's count at the last reading
    tally: Tally = field(default_factory=Tally)  # the pass in progress
    ended: Tally | None = None  # the pass that ended when the leaf shut, while it stays shut
    _open: bool = False
    _until: float | None = None  # counting until then (door unlocked or open, plus grace)

    def door(self, now: float, state: str, grants: int) -> None:
        """The door's state word and its grant count (`Controls.door_view`) at ``now``."""
        if not self.watching(now):
            self.granted = 0
            self.tally, self.ended = Tally(), None
        new = max(grants - self.grants_seen, 0)
        self.grants_seen = grants
        if state in WATCH_STATES or self.watching(now):
            self.granted += new
        is_open = state in OPEN_STATES
        if self._open and not is_open:  # the leaf closed: whoever crossed went on these grants
            self.tally, self.ended = Tally(), self.tally
        elif is_open:
            self.ended = None
        self._open = is_open
        if state in WATCH_STATES:
            self._until = now + self.grace_s

    def watching(self, now: float) -> bool:
        """Whether people crossing now are counted: the detector runs only then."""
        return self._until is not None and now <= self._until

    def crossing(self, now: float) -> Tally | None:
        """One person crossed inward: the pass they went through on when that makes it a
        tailgate (once a pass), else None. A pass with no grant (exit button, a fire release) is
        not counted: no one was let in."""
        if not self.watching(now) or self.granted == 0:
            return None
        through = self.ended if self.ended is not None else self.tally
        return through if through.add(self.granted) else None


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
        seen = person_boxes(dets, [np.asarray(f.box) for f in self._faces(image, faces)],
                            self.cfg.start, image.shape[0])
        self.runs += 1
        self.run_ms.append((time.perf_counter() - t0) * 1000)
        if self._line is None:
            self._line = DoorLine(self.cfg, image.shape[1], image.shape[0])
        tracks = self.tracker.update(seen, t)
        out = []
        for _ in crossings(tracks, self._line):
            tailgated = self.counter.crossing(t)
            if tailgated is not None:
                out.append(self._alert(image, t, [s.box for s in seen], tailgated.crossed))
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

    def _alert(self, image: np.ndarray, t: float, boxes: list[np.ndarray],
               crossed: int) -> TailgateAlert:
        c = self.counter
        snap = image.copy()
        if self._line is not None:
            cv2.line(snap, tuple(int(v) for v in self._line.p1),
                     tuple(int(v) for v in self._line.p2), (0, 255, 255), 2)
        for b in boxes:
            cv2.rectangle(snap, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 0, 255), 2)
        reason = (f"tailgating: {crossed} people crossed on {c.granted} grant(s) "
                  f"at door {self.cfg.door}")
        log.warning("%s", reason)
        ev = self.recorder.record(self.cfg.door, "alert", "alert", reason, snap)
        self.alerts += 1
        if self.cfg.clip_s > 0 and ev.snapshot and self._clip is None:
            self._clip = _Clip(ev, t + self.cfg.clip_s / 2, [f for _, f in self._recent])
        return TailgateAlert(self.cfg.door, crossed, c.granted, ev)

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
