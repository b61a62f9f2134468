"""The gate kinds' schemas and `GATE_KINDS`, the one list the `gates` union and its error
paths are derived from (each kind's code is the package `gatectl.gates.<kind>`)."""

from __future__ import annotations

from functools import reduce
from operator import or_
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from gatectl.config.base import Label, Name, Strict


class FaceThresholds(Strict):
    detect: float = Field(
        0.8, ge=0.3, le=1.0, description="YuNet score; the MANIFEST advises 0.8-0.9."
    )
    match: float = Field(
        0.40,
        ge=0.30,
        le=0.95,
        description="Cosine similarity for a 1:N match, 0.30-0.95: impostor pairs reach 0.23 "
        "(README), lower opens doors.",
    )
    margin: float = Field(
        0.08,
        ge=0.02,
        le=0.5,
        description="Best minus best other person, 0.02-0.5: 0 lets a look-alike through.",
    )
    stranger_far: float = Field(
        0.001, ge=0.0, le=0.1,
        description="Chance a stranger may be granted as someone at the current gallery size: "
        "raises `match` as the gallery grows (from the embedder's measured impostor tail in "
        "models.toml); 0 keeps `match` fixed.",
    )
    liveness: float = Field(
        0.5,
        ge=0.2,
        le=0.99,
        description="Fused MiniFASNet p(real), 0.2-0.99 (liveness = false turns the check off, not "
        "a threshold of 0).",
    )


class FaceQuality(Strict):
    min_face_px: int = Field(
        60, ge=16, le=1000, description="Shorter side of the face box, 16-1000 px."
    )
    min_sharpness: float = Field(
        25.0, ge=5, le=2000, description="Laplacian variance of the aligned face, 5-2000."
    )
    max_yaw: float = Field(
        0.45, gt=0, le=1, description="Nose offset from the eye midline / eye distance."
    )
    max_roll_deg: float = Field(
        30.0, gt=0, le=90, description="Head tilt allowed, up to 90 degrees."
    )
    min_detail: float = Field(
        0.0,
        ge=0,
        le=1.5,
        description="Fine over coarse detail of the aligned face (face_quality.detail_ratio); "
        "refuses a face enlarged from a tiny one. 0 = off; real faces score >= 0.7.",
    )


class GateConfigBase(Strict):
    """What every gate kind's section has; each kind narrows ``kind`` to its own tag."""

    kind: str = Field(description="Gate kind (selects this section's schema).")
    name: Name
    camera: Name = Field(description="The camera ([[cameras]] name) the gate watches.")


class FaceGateConfig(GateConfigBase):
    kind: Literal["face"] = Field("face", description="Gate kind (selects this section's schema).")
    camera: Name = Field(description="The camera ([[cameras]] name) watching the door.")
    door: Name = Field(description="The door ([[doors]] name) a grant unlocks.")
    liveness: bool = Field(
        True, description="Refuse printed photos and screens (MiniFASNet); false only on a bench."
    )
    thresholds: FaceThresholds = Field(
        FaceThresholds(), description="Detection, match, margin and liveness."
    )
    quality: FaceQuality = Field(
        FaceQuality(), description="Faces too small, blurred or turned away are not matched."
    )
    detect_long_side: int = Field(
        640,
        ge=160,
        le=1920,
        multiple_of=32,
        description="Detector input long side, 160-1920 px, a multiple of 32.",
    )
    confirm_frames: int = Field(2, ge=1, le=10, description="Agreeing frames needed (1-10) ...")
    confirm_window: int = Field(
        3, ge=1, le=20, description="... among the last this many (1-20) of one face track."
    )
    cooldown_s: float = Field(
        5.0, ge=0, le=3600, description="One grant per resident per gate in this time (0-3600 s)."
    )
    track_timeout_s: float = Field(
        1.5, ge=0.1, le=30, description="A face unseen this long ends its track (0.1-30 s)."
    )
    fusion: Literal["fused", "votes"] = Field(
        "fused",
        description="fused: match the mean embedding of a track's live frames once it has "
        "confirm_frames of them; votes: confirm_frames agreeing per-frame matches.",
    )

    @model_validator(mode="after")
    def _window(self) -> FaceGateConfig:
        if self.confirm_frames > self.confirm_window:
            raise ValueError("confirm_frames must not exceed confirm_window")
        return self


class PlateThresholds(Strict):
    detect: float = Field(0.6, ge=0.3, le=1.0, description="Plate detector score needed to act.")
    char: float = Field(
        0.4, ge=0.2, le=1.0, description="EVERY character's confidence must reach this (0.2-1)."
    )


class PlateGateConfig(GateConfigBase):
    """A vehicle lane: a camera on the lane, the barrier it opens, and the lane's direction."""

    kind: Literal["plate"] = Field(
        "plate", description="Gate kind (selects this section's schema)."
    )
    camera: Name = Field(description="The camera ([[cameras]] name) on the lane.")
    barrier: Name = Field(description="The barrier ([[barriers]] name) the lane opens.")
    direction: Literal["entry", "exit"] = Field(
        "entry", description="entry or exit lane (exit: time inside)."
    )
    detector_size: Literal[320, 640] = Field(
        320, description="320: ~8 ms; 640: more reach for small plates."
    )
    thresholds: PlateThresholds = Field(
        PlateThresholds(), description="Detector and per-character scores."
    )
    min_votes: int = Field(
        2, ge=1, le=20, description="Frames with a whole-plate reading before deciding."
    )
    track_timeout_s: float = Field(
        2.0, ge=0.2, le=60, description="A plate unseen this long: the vehicle has gone (0.2-60 s)."
    )
    cooldown_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="The same plate again within this time is the same vehicle (0-3600 s).",
    )
    open_unknown_on_exit: bool = Field(
        True, description="Exit lanes let every vehicle out except blacklisted ones."
    )
    inside_days_alert: float = Field(
        30.0,
        gt=0,
        le=3650,
        description="`gatectl vehicles inside` flags longer stays (up to 3650 days).",
    )


class EbikeDetectorConfig(Strict):
    """The detector of an e-bike gate: the bundled YOLOX-nano (COCO) or a site's own model."""

    model: Name = Field(
        "yolox_nano_ebike",
        description="Registry name in the models folder (yolox_nano_ebike: YOLOX-nano fine-tuned "
        "for elevator e-bikes; yolox_nano: COCO).",
    )
    file: Path | None = Field(
        None, description="An ONNX detector of your own instead (sha256 not checked)."
    )
    family: Literal["yolox", "yolov8"] = Field(
        "yolox",
        description="Output layout of the model: yolox (raw YOLOX head; the bundled ones) or "
        "yolov8 ([1, 4 + C, A] boxes and class scores: a site model or `file`); see "
        "gatectl/vision/objects.py.",
    )
    input_size: int = Field(
        416,
        ge=160,
        le=1280,
        multiple_of=32,
        description="Model input side, 160-1280 px, a multiple of 32.",
    )
    classes: dict[Label, Annotated[int, Field(ge=0, le=1000)]] = Field(
        default_factory=lambda: {"bicycle": 1, "motorcycle": 3},
        max_length=32,
        description="Class name -> output index (0-1000), for every class the gate looks at (<= "
        "32).",
    )
    ebike_classes: list[Label] = Field(
        default_factory=lambda: ["motorcycle"],
        min_length=1,
        max_length=32,
        description="Classes that count as an e-bike / moped / scooter (1-32).",
    )
    threshold: float = Field(
        0.22,
        ge=0.01,
        le=1.0,
        description="Detection score to count a frame, 0.01-1 (0.22: yolox_nano_ebike's point of "
        "0 false alarms).",
    )
    tiles: int = Field(
        2,
        ge=1,
        le=4,
        description="1: whole region only; 2/3/4: also a 2x2/3x3/4x4 grid of overlapping tiles "
        "(one model run each: more reach, more time).",
    )

    @model_validator(mode="after")
    def _known(self) -> EbikeDetectorConfig:
        unknown = [c for c in self.ebike_classes if c not in self.classes]
        if unknown:
            raise ValueError(f"ebike_classes {unknown} are not in classes")
        return self


class EbikeGateConfig(GateConfigBase):
    """A camera in an elevator car: a confirmed e-bike holds the doors through the elevator."""

    kind: Literal["ebike"] = Field(
        "ebike", description="Gate kind (selects this section's schema)."
    )
    camera: Name = Field(description="The camera ([[cameras]] name) in the car.")
    elevator: Name = Field(description="The elevator ([[elevators]] name) whose doors are held.")
    detector: EbikeDetectorConfig = Field(
        EbikeDetectorConfig(), description="The detector and its classes."
    )
    car_region: list[tuple[float, float]] | None = Field(
        None,
        max_length=64,
        description="Polygon (3-64 points) of the car floor in 0..1 image coordinates; the landing "
        "outside is ignored.",
    )
    bicycles_allowed: bool = Field(
        True, description="False: a 'bicycle' detection also holds the car."
    )
    confirm_frames: int = Field(
        3, ge=1, le=30, description="Frames with an e-bike needed (1-30) ..."
    )
    confirm_window: int = Field(5, ge=1, le=60, description="... among the last this many (1-60).")
    track_threshold: float | None = Field(
        None,
        ge=0.01,
        le=1.0,
        description="Evidence over frames (off when unset): detections from this score (0.01-1, "
        "below detector.threshold) are tracked, and a tracked object confirms once its scores "
        "over the last confirm_window frames add up to `evidence`.",
    )
    evidence: float = Field(
        1.0,
        ge=0.05,
        le=60.0,
        description="Sum of one tracked object's scores over confirm_window frames that confirms "
        "it (0.05-60; with track_threshold).",
    )
    announcement: str = Field(
        "电动车禁止进入电梯，请推出轿厢。E-bikes are not allowed in the lift, please take it out.",
        min_length=1,
        max_length=500,
        description="Said / shown in the car, 1-500 chars.",
    )

    @model_validator(mode="after")
    def _checks(self) -> EbikeGateConfig:
        if self.confirm_frames > self.confirm_window:
            raise ValueError("confirm_frames must not exceed confirm_window")
        if self.track_threshold is not None and self.track_threshold >= self.detector.threshold:
            raise ValueError("track_threshold must be below detector.threshold")
        if self.car_region is not None:
            if len(self.car_region) < 3:
                raise ValueError("car_region needs at least 3 points")
            if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in self.car_region):
                raise ValueError("car_region points are fractions of the image (0..1)")
        return self


# The gate kinds, one line each: the `gates` union and its error paths are derived from this, and
# `gatectl.gates.registry` finds each kind's code as the package `gatectl.gates.<kind>`.
GATE_KINDS: tuple[type[GateConfigBase], ...] = (FaceGateConfig, PlateGateConfig, EbikeGateConfig)


GATE_TAGS = frozenset(k.model_fields["kind"].default for k in GATE_KINDS)


if TYPE_CHECKING:
    GateConfig = GateConfigBase
else:
    GateConfig = Annotated[reduce(or_, GATE_KINDS), Field(discriminator="kind")]
