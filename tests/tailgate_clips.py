"""Door-camera clips composed from real photos of people (tests/data/people, cut from the
CC BY 4.0 "Capston2" set: see tests/data/MANIFEST.md) with the door's grant and contact changes
on the clip's timeline, in two views (`VIEWS`, each with its door line):

- ``side``: people walk left to right across a vertical door line at mid-frame, about half the
  frame high all the way;
- ``approach``: what a face gate's camera at the door sees: people walk towards it, from 6 m
  to 1.2 m at 1.2 m/s (a 1.7 m person seen by a camera 1.6 m high, 470 px focal length: 133 px
  high far off, 400 px at 2 m, feet below the frame's edge from 2.3 m), crossing a floor line
  across the frame at 85 % of its height; a follower 1.2 m behind is smaller, higher in the
  frame and partly hidden behind the one in front.

`group_clips` walks group photos (two people side by side: the shared face set's, in
tests/data/faces) through the door together.

Used by tests/test_tailgate.py and scripts/bench_tailgate.py. A clip is a list of `Step`s, one
frame each at FPS; ``door`` is what happens to the door just before that frame.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from gatectl.config import parse_config
from gatectl.control.controls import Controls
from gatectl.hw.relay import SimulatedRelay
from gatectl.runtime.app import App
from gatectl.runtime.runner import GateWorker

PEOPLE = Path(__file__).parent / "data" / "people"
FACES = Path(__file__).parent / "data" / "faces"
GROUPS = ["multi_rose_kit", "multi_two_people_obama_biden"]  # two people each, side by side
W, H, FPS = 640, 480, 5.0
STEP_PX = 40  # walking speed: 200 px/s
# the people the bundled COCO detector (yolox_nano) finds on these backgrounds; person_12
# (masked, a pale coat on a pale wall) and person_13 (head cut by the photo's top edge, legs
# behind a pot) it does not - YuNet finds person_12's face once she is near the camera, and the
# default person model (yolox_nano_person) finds both (scripts/bench_tailgate.py reports all)
DETECTABLE = ["person_00", "person_01", "person_02", "person_05", "person_06", "person_07",
              "person_08"]
ALL = sorted(p.stem for p in PEOPLE.glob("person_*.jpg"))
SITE_LINE = {"x1": 0.5, "y1": 0.0, "x2": 0.5, "y2": 1.0, "inside_x": 1.0, "inside_y": 0.5}
APPROACH_LINE = {"x1": 0.0, "y1": 0.85, "x2": 1.0, "y2": 0.85, "inside_x": 0.5, "inside_y": 1.0}
VIEWS = {"side": SITE_LINE, "approach": APPROACH_LINE}  # view -> its door line
# the approach view's camera (see the docstring): metres and pixels
FOCAL, CAM_H, PERSON_H, HORIZON = 470.0, 1.6, 1.7, 0.3 * H
FAR_M, NEAR_M, SPEED_MS = 6.0, 1.2, 1.2


@dataclass
class Step:
    t: float
    image: np.ndarray
    door: list[str] = field(default_factory=list)  # "grant", "open", "close"


@dataclass
class Clip:
    name: str
    steps: list[Step]
    tailgate: bool  # ground truth: more people went in on this pass than were granted


def background(seed: int, floor: float = 0.72) -> np.ndarray:
    """A hallway seen by a door camera: wall, floor (from ``floor`` of the height down), the
    door's frame (a far door, looking along the hallway), sensor noise."""
    rng = np.random.default_rng(seed)
    img = np.empty((H, W, 3), np.uint8)
    img[:] = rng.integers(130, 180, 3)
    img[int(H * floor):] = rng.integers(70, 120, 3)
    cv2.rectangle(img, (W // 2 - 70, 50), (W // 2 + 70, int(H * floor)), (55, 65, 85), -1)
    noise = rng.normal(0, 4, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def person(name: str, height: int, folder: Path = PEOPLE) -> np.ndarray:
    """``folder``/``name``.jpg (a photo cut to one person) resized to ``height`` px."""
    im = cv2.imread(str(folder / f"{name}.jpg"))
    if im is None:
        raise FileNotFoundError(folder / f"{name}.jpg")
    return cv2.resize(im, (max(1, round(im.shape[1] * height / im.shape[0])), height),
                      interpolation=cv2.INTER_AREA)


def paste(frame: np.ndarray, sprite: np.ndarray, foot_x: int, foot_y: int) -> None:
    """``sprite`` standing with its feet at (foot_x, foot_y), clipped at the frame's edges."""
    h, w = sprite.shape[:2]
    x0, y0 = foot_x - w // 2, foot_y - h
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = sprite[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]


def walk(walkers: list[tuple[str, int, int, float]], seed: int, seconds: float,
         door: dict[int, list[str]], folder: Path = PEOPLE) -> list[Step]:
    """Frames of people walking right: (name, height px, feet y, start time in s); ``door``:
    frame index -> door changes before it."""
    sprites = [(person(n, h, folder), y, t0) for n, h, y, t0 in walkers]
    bg = background(seed)
    steps = []
    for i in range(round(seconds * FPS)):
        t = i / FPS
        frame = bg.copy()
        for sprite, y, t0 in sorted(sprites, key=lambda s: -s[2]):  # the later one is behind
            if t >= t0:
                paste(frame, sprite, int(-40 + (t - t0) * FPS * STEP_PX), y)
        steps.append(Step(t, frame, door.get(i, [])))
    return steps


def approach(walkers: list[tuple[str, float, float]], seed: int, seconds: float,
             door: dict[int, list[str]], folder: Path = PEOPLE) -> list[Step]:
    """Frames of people walking towards the camera: (name, lane as a fraction of the width,
    start time in s); gone once nearer than NEAR_M (under the camera). ``door``: frame index ->
    door changes before it."""
    photos = {n: person(n, 480, folder) for n, _, _ in walkers}
    bg = background(seed, HORIZON / H + 0.02)
    steps = []
    for i in range(round(seconds * FPS)):
        t = i / FPS
        frame = bg.copy()
        on = [(FAR_M - (t - t0) * SPEED_MS, n, lane) for n, lane, t0 in walkers if t >= t0]
        for d, n, lane in sorted(on, reverse=True):  # the farther one is behind
            if d >= NEAR_M:
                h = round(FOCAL * PERSON_H / d)
                sprite = cv2.resize(photos[n], (max(1, round(photos[n].shape[1] * h / 480)), h),
                                    interpolation=cv2.INTER_AREA)
                paste(frame, sprite, int(lane * W), int(HORIZON + FOCAL * CAM_H / d))
        steps.append(Step(t, frame, door.get(i, [])))
    return steps


def clips(people: list[str], view: str = "side", folder: Path = PEOPLE) -> Iterator[Clip]:
    """For each person: a single pass; with the next person: a tailgate (one grant, the second
    close behind), a pass where the door closed between them (no tailgate), and two grants for
    two people (no tailgate). Made one at a time: a clip is some 25 MB of frames. ``view``: one
    of VIEWS (the watch's door line must be that view's); ``folder``: where the people's
    photos are (`cut_people` makes more)."""
    if view == "approach":
        yield from approach_clips(people, folder)
        return
    walk_ = partial(walk, folder=folder)
    n = len(people)
    for i, p in enumerate(people):
        q = people[(i + 1) % n]
        hp, hq = 250 + 10 * (i % 3), 235 + 10 * ((i + 1) % 3)
        single = walk_([(p, hp, 460, 0.2)], i, 4.8, {0: ["grant"], 2: ["open"], 23: ["close"]})
        yield Clip(f"single:{p}", single, False)
        follow = walk_([(p, hp, 462, 0.2), (q, hq, 452, 1.2)], i, 5.4,
                       {0: ["grant"], 2: ["open"], 26: ["close"]})
        yield Clip(f"tailgate:{p}+{q}", follow, True)
        # the first one through closes the door; the second opens it again (the door's own
        # door_forced alert is not this rule's business)
        apart = walk_([(p, hp, 462, 0.2), (q, hq, 452, 3.4)], i, 8.0,
                      {0: ["grant"], 2: ["open"], 16: ["close"], 19: ["open"], 39: ["close"]})
        yield Clip(f"closed_between:{p}+{q}", apart, False)
        both = walk_([(p, hp, 462, 0.2), (q, hq, 452, 1.2)], i, 5.4,
                     {0: ["grant", "grant"], 2: ["open"], 26: ["close"]})
        yield Clip(f"two_grants:{p}+{q}", both, False)


def approach_clips(people: list[str], folder: Path = PEOPLE) -> Iterator[Clip]:
    """`clips` in the approach view: each one crosses the line 2.6 s after setting off (at
    2.85 m) and is gone 4 s after; the follower sets off 1 s after the one in front, in the
    next lane but overlapping them (or 3.2 s after, once the door closed behind the first)."""
    approach_ = partial(approach, folder=folder)
    n = len(people)
    for i, p in enumerate(people):
        q = people[(i + 1) % n]
        lp, lq = (0.42, 0.56) if i % 2 else (0.58, 0.44)
        single = approach_([(p, lp, 0.2)], i, 4.8, {0: ["grant"], 2: ["open"], 23: ["close"]})
        yield Clip(f"single:{p}", single, False)
        follow = approach_([(p, lp, 0.2), (q, lq, 1.2)], i, 5.6,
                           {0: ["grant"], 2: ["open"], 27: ["close"]})
        yield Clip(f"tailgate:{p}+{q}", follow, True)
        apart = approach_([(p, lp, 0.2), (q, lq, 3.4)], i, 8.0,
                          {0: ["grant"], 2: ["open"], 22: ["close"], 25: ["open"], 39: ["close"]})
        yield Clip(f"closed_between:{p}+{q}", apart, False)
        both = approach_([(p, lp, 0.2), (q, lq, 1.2)], i, 5.6,
                         {0: ["grant", "grant"], 2: ["open"], 27: ["close"]})
        yield Clip(f"two_grants:{p}+{q}", both, False)


def group_clips(groups: list[str], view: str = "side", folder: Path = FACES) -> Iterator[Clip]:
    """Two people through side by side: each of ``groups`` is a photo of two people standing
    together (``folder``/``name``.jpg; the shared set's group photos by default), walking
    through as one - on one grant a tailgate, on two grants none. The people cross together,
    half hiding each other, so the tracker must keep two people apart where the one-behind-
    the-other clips of `clips` give it time."""
    for i, g in enumerate(groups):
        for grants in (1, 2):
            door = ["grant"] * grants
            if view == "approach":
                steps = approach([(g, 0.5, 0.2)], i, 5.6, {0: door, 2: ["open"], 27: ["close"]},
                                 folder)
            else:
                steps = walk([(g, 260, 462, 0.2)], i, 5.4, {0: door, 2: ["open"], 26: ["close"]},
                             folder)
            yield Clip(f"{'together' if grants == 1 else 'together_two_grants'}:{g}", steps,
                       grants == 1)


SITE = {
    "cameras": [{"name": "door_cam", "source": "0"}],
    "outputs": [{"name": "door", "channel": 0}],
    "inputs": [{"name": "contact", "index": 0, "role": "door_contact", "door": "door"}],
    "doors": [{"name": "door", "output": "door", "unlock_seconds": 5}],
    "gates": [{"kind": "face", "name": "gate", "camera": "door_cam", "door": "door"}],
    "analysis": {"tailgate": [{"door": "door", "camera": "door_cam", "fps": 5, **SITE_LINE}]},
}


class Clock:
    t = 10_000.0

    def __call__(self) -> float:
        return self.t


class Rig:
    """The door, its controls on a fed clock and the App's tailgate watch over them."""

    def __init__(self, tmp_path: Path, **tailgate: object):
        """``tailgate``: keys of the door's [[analysis.tailgate]] table over SITE's. The watch
        first reads the door on the first clip's first frame, after that frame's grant: as in
        the daemon, where a card may unlock the door before the camera's first frame."""
        self.clock = Clock()
        self.relay = SimulatedRelay(clock=self.clock)
        site = {**SITE, "analysis": {"tailgate": [{**SITE["analysis"]["tailgate"][0], **tailgate}]}}
        cfg = parse_config(site)
        cfg.sync.enabled = True  # events go to the outbox: the alert syncs like any event
        self.app = App(cfg, tmp_path / "state", boards={"main": self.relay})
        self.controls = Controls(cfg, self.app.outputs, self.app.recorder, clock=self.clock)
        self.app.__dict__["controls"] = self.controls
        [self.watch] = self.app.tailgate_watches()
        # how a frame reaches the watch: the benchmark times it, a test sends it through the
        # face gate's worker
        self.watch_step: Callable[[np.ndarray, float], list] = self.watch.process

    def through_gate(self) -> GateWorker:
        """Frames reach the watch as in the daemon: through the worker of the face gate on its
        camera (the gate's step, then its observers: the watch, handed the gate's faces).
        Alerts are then counted by ``watch.alerts`` (the worker keeps no observer's result)."""
        worker = GateWorker(partial(self.app.gate, self.app.cfg.gates[0]),
                            None, threading.Event())  # type: ignore[arg-type]  # never started
        worker.observers.append(self.watch)

        def step(image: np.ndarray, t: float) -> list:
            worker.gate.process(image, t)
            worker._observe(image, t, 0)
            return []

        self.watch_step = step
        return worker

    def play(self, clip: Clip) -> list:
        """The clip through the door and the watch; then the door rests (the pass is over)."""
        start = self.clock.t
        alerts = []
        for step in clip.steps:
            self.clock.t = start + step.t
            for change in step.door:
                if change == "grant":
                    self.controls.grant("door", None)
                else:
                    self.relay.set_input(0, change == "open")
            self.controls.poll()
            alerts += self.watch_step(step.image, self.clock.t)
        self.watch.flush(self.clock.t)
        self.clock.t += 30
        self.controls.poll()
        self.watch_step(clip.steps[-1].image, self.clock.t)
        return alerts
