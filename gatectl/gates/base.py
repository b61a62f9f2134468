"""What every gate kind is to the rest of gatectl: a `Gate` fed frames, a common `Decision`, and
a `GateKind` entry (builder and replay report) that its package declares as ``KIND``.

The runner, replay, the demo and the benchmarks see only these types, so a new kind (a QR
visitor-pass gate, say) is its config schema, its package under `gatectl/gates/` and one line
in `gatectl.config.gates.GATE_KINDS`; nothing here or in the runtime changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from gatectl.domain.records import Event

if TYPE_CHECKING:  # the parts a builder may use; types only, so a kind imports no assembly
    from gatectl.access.point import AccessPoint
    from gatectl.analysis.strangers import StrangerBook
    from gatectl.config import Config
    from gatectl.config.gates import FaceQuality, GateConfigBase
    from gatectl.control.controls import Controls
    from gatectl.hw.display import Display
    from gatectl.people.directory import Directory
    from gatectl.sources.media import MediaFrame
    from gatectl.store import Store
    from gatectl.store.recorder import EventRecorder
    from gatectl.vision.face.analyzer import FaceAnalyzer
    from gatectl.vision.face.detect import FrameFaces
    from gatectl.vision.models import ModelStore


@dataclass(frozen=True)
class Decision:
    """What a gate decided, common to every kind: the gate, the decision word (granted, denied,
    alert, ebike, clear...), why, and the score it rests on. Kinds add their own fields."""

    gate: str
    decision: str
    reason: str
    score: float | None

    def as_json(self) -> dict[str, Any]:
        """The decision as `gatectl replay --json` prints it (kinds add their fields)."""
        return {
            "gate": self.gate,
            "decision": self.decision,
            "reason": self.reason,
            "score": None if self.score is None else round(self.score, 4),
        }


def event_json(event: Event) -> dict[str, Any]:
    """The event fields a decision's JSON carries."""
    return {"event": event.id, "snapshot": event.snapshot}


@dataclass(frozen=True)
class Mark:
    """One thing a gate found in its last frame, as the live view draws it: a box in image
    pixels, its label (a name, "unknown", a plate, a class) and what it is."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    label: str
    what: str  # face_known | face_unknown | plate | ebike


@dataclass(frozen=True)
class GateView:
    """The last frame a gate analysed with what it found there (`gatectl.web` draws it)."""

    image: np.ndarray
    t: float  # monotonic seconds when it was analysed
    marks: tuple[Mark, ...]
    region: tuple[tuple[float, float], ...] = ()  # the polygon the gate looks in (pixels)


def box_of(box: np.ndarray) -> tuple[float, float, float, float]:
    """A model's box as plain floats: a view outlives the frame's arrays being reused."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return x1, y1, x2, y2


@runtime_checkable
class FaceSource(Protocol):
    """A gate that hands the faces it found in a frame to the analysers fed the same frame (the
    face gate: the tailgate watch on its camera then runs no face detector of its own)."""

    def frame_faces(self) -> FrameFaces | None:
        """The faces of the frame `process` last ran on, as found (None: none kept)."""
        ...


@runtime_checkable
class Viewable(Protocol):
    """A gate that can show its last frame (every bundled kind; a new kind may add it later)."""

    def view(self) -> GateView | None:
        """The last analysed frame and its marks; None before the first frame. Called from
        another thread than `process`: it reads one reference the gate replaces per frame."""
        ...


class Gate(Protocol):
    """One gate's whole frame -> decision step, the same for `run`, `replay` and `demo`."""

    def process(self, image: np.ndarray, t: float) -> Sequence[Decision]:
        """Analyse one frame taken at ``t`` (monotonic seconds); the decisions it completed."""
        ...

    def reset(self) -> None:
        """Forget tracks and cooldowns (replay: between unrelated input files)."""
        ...

    def flush(self, t: float) -> Sequence[Decision]:
        """Decide what is still in view (replay: end of a file)."""
        ...

    def health(self) -> dict[str, Any]:
        """The gate's counters (`gatectl.core.health`)."""
        ...

    @property
    def cfg(self) -> GateConfigBase:
        """Its config section: ``name`` and ``camera`` are what the runner needs."""
        ...


class GateParts(Protocol):
    """What a builder may take from the assembly (`runtime.app.App` is one): shared, built once."""

    @property
    def cfg(self) -> Config: ...
    @property
    def models(self) -> ModelStore: ...

    def clock(self) -> float:
        """Wall time."""
        ...

    @property
    def store(self) -> Store: ...
    @property
    def recorder(self) -> EventRecorder: ...

    def rule_time(self) -> float:
        """The wall time time-based rules may use (the clock watch's trusted base)."""
        ...

    @property
    def controls(self) -> Controls: ...
    @property
    def directory(self) -> Directory: ...

    def analyzer(
        self,
        quality: FaceQuality,
        detect_threshold: float,
        long_side: int,
        liveness: bool,
        liveness_threshold: float,
        share_from: float | None = None,
    ) -> FaceAnalyzer:
        """A face analyzer over the shared models; ``share_from``: its detector keeps each
        frame's faces down to this score for the analysers on the same camera
        (`vision.face.detect.FrameFaces`)."""
        ...

    @property
    def display(self) -> Display: ...
    @property
    def strangers(self) -> StrangerBook:
        """Where unknown faces go for the repeated-stranger rule."""
        ...

    def access_point(self, door: str) -> AccessPoint:
        """The door's one credential decision path (shared by every source at the door)."""
        ...


class ReplayReport(Protocol):
    """How `gatectl replay` reports one kind: a row per decision, plus one row for an input on
    which the gate decided nothing (no face, no plate, clear), saying why."""

    def begin(self, source: str) -> None: ...

    def frame(
        self, frame: MediaFrame | None, decisions: Sequence[Decision]
    ) -> list[dict[str, Any]]:
        """Rows for the decisions of one frame (``frame`` None: the end-of-file flush)."""
        ...

    def end(self) -> list[dict[str, Any]]:
        """The row for an input with no decision, if it had none."""
        ...


@dataclass(frozen=True)
class GateKind:
    """A gate kind's plug-in entry, declared as ``KIND`` in `gatectl.gates.<kind>`."""

    build: Callable[[GateParts, Any], Gate]  # (parts, that kind's config section) -> the gate
    replay: Callable[[Any], ReplayReport]  # (the gate it built) -> how replay reports it


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes: how trackers tell "the same object
    one frame later" (the face and e-bike trackers)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
