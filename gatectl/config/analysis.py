"""The ``[analysis]`` section: behaviour rules over the event history (repeated strangers, night
pattern, residents not seen or not back, vehicles) and tailgating on door cameras.

Every threshold a rule uses is here, so a site tunes a rule without code and `gatectl analyse`
shows what the tuned rules would raise over the stored history before they run.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from gatectl.config.base import MAX_ITEMS, Name, Strict

MIN_FACE_THRESHOLD = 0.3  # the lowest tailgate face_threshold: a face gate shares faces from it


class StrangersRule(Strict):
    """Unknown faces clustered into anonymous ids; one seen ``times`` times in ``days`` days is
    an alert with their snapshots."""

    enabled: bool = Field(True, description="Raise repeated_stranger alerts.")
    times: int = Field(5, ge=2, le=1000, description="Sightings of one stranger (2-1000) ...")
    days: float = Field(3.0, gt=0, le=90, description="... within this many days (0-90).")
    threshold: float | None = Field(
        None,
        ge=0.2,
        le=0.95,
        description="Cosine similarity (0.2-0.95) that makes two unknown faces one stranger; "
        "default: the face gate's match threshold (domain.face_match), so a stranger is "
        "clustered as strictly as a resident is recognised.",
    )
    window_days: float = Field(
        7.0,
        gt=0,
        le=90,
        description="A face seen once is kept this long (0-90 days) waiting for a second sighting, "
        "then deleted: no anonymous id for a face seen once.",
    )
    expire_days: float = Field(
        30.0,
        gt=0,
        le=365,
        description="An anonymous id and its embeddings are deleted this long (0-365 days) after "
        "the stranger was last seen.",
    )
    max_faces: int = Field(
        20000, ge=100, le=1_000_000,
        description="Unknown-face embeddings kept at most (100-1e6): the oldest go first.",
    )

    @model_validator(mode="after")
    def _windows(self) -> StrangersRule:
        if self.window_days > self.expire_days:
            raise ValueError("window_days must not be longer than expire_days")
        return self


class NightRule(Strict):
    """Someone whose passes fall mostly inside a night window."""

    enabled: bool = Field(True, description="Raise night_pattern alerts.")
    start_hour: float = Field(23.0, ge=0, lt=24, description="Night starts at this local hour.")
    end_hour: float = Field(5.0, ge=0, lt=24, description="Night ends at this local hour.")
    days: float = Field(14.0, gt=0, le=90, description="Over the last this many days (0-90).")
    min_passes: int = Field(
        4, ge=2, le=1000, description="At least this many passes (2-1000) before judging."
    )
    fraction: float = Field(
        0.8, gt=0.5, le=1, description="Share of the passes at night that flags (0.5-1)."
    )
    utc_offset_h: float = Field(
        8.0, ge=-12, le=14, description="The site's offset from UTC, hours (China: 8)."
    )


class CareRule(Strict):
    """Residents marked ``care`` (`gatectl residents care ID on`) with no pass for a while."""

    enabled: bool = Field(True, description="Raise not_seen alerts for care residents.")
    hours: float = Field(24.0, ge=1, le=720, description="No pass for this many hours (1-720).")


class NotBackRule(Strict):
    """Residents who went out and have not come back."""

    enabled: bool = Field(True, description="Raise not_back alerts.")
    hours: float = Field(48.0, ge=1, le=720, description="Out for this many hours (1-720).")
    exit_gates: list[Name] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        description="Face gates whose grants are a way out (exit doors); a plate lane's exits "
        "are known from its direction.",
    )


class VehicleRules(Strict):
    """Vehicles parked too long, in and out repeatedly, unknown ones at several lanes."""

    enabled: bool = Field(True, description="Raise the vehicle alerts.")
    inside_days: float = Field(
        30.0, gt=0, le=365, description="Inside longer than this many days (0-365)."
    )
    repeat_passes: int = Field(
        4, ge=2, le=100, description="This many passes of one plate (2-100) ..."
    )
    repeat_minutes: float = Field(
        10.0, gt=0, le=1440, description="... within this many minutes (0-1440)."
    )
    lanes: int = Field(
        3, ge=2, le=64, description="An unknown plate seen at this many lanes (2-64) ..."
    )
    lanes_hours: float = Field(
        24.0, gt=0, le=720, description="... within this many hours (0-720)."
    )


class TailgateConfig(Strict):
    """Tailgating on one door's camera: people crossing the door line per grant, counted while
    the door is unlocked or its contact open. The line is in fractions of the frame (0..1)
    from (x1, y1) to (x2, y2); ``inside_x``/``inside_y`` is any point on the inside."""

    door: Name = Field(description="The door ([[doors]] name).")
    camera: Name = Field(description="The camera that sees the door (usually its face gate's).")
    x1: float = Field(0.0, ge=0, le=1, description="Door line start, fraction of the width.")
    y1: float = Field(0.5, ge=0, le=1, description="Door line start, fraction of the height.")
    x2: float = Field(1.0, ge=0, le=1, description="Door line end, fraction of the width.")
    y2: float = Field(0.5, ge=0, le=1, description="Door line end, fraction of the height.")
    inside_x: float = Field(0.5, ge=0, le=1, description="A point inside, fraction of width.")
    inside_y: float = Field(1.0, ge=0, le=1, description="A point inside, fraction of height.")
    fps: float = Field(
        5.0, ge=0.5, le=30, description="Detector runs per second while the door is open (0.5-30)."
    )
    model: Name = Field(
        "yolox_nano_person",
        description="Person detector, a registry name in the models folder: a YOLOX-family "
        "model whose class 0 is person, 416 px input (yolox_nano_person: YOLOX-nano fine-tuned "
        "for people a door camera sees, cut by the frame's edge too; yolox_nano: COCO).",
    )
    threshold: float = Field(
        0.35, ge=0.05, le=0.95, description="Person detector score threshold (0.05-0.95)."
    )
    start_threshold: float | None = Field(
        None, ge=0.05, le=0.95,
        description="Score a person box needs to start following someone (0.05-0.95, at least "
        "threshold; unset: threshold); a box between the two carries someone already "
        "followed, so a weak box the detector gives between two people, or on clutter, makes "
        "nobody up. Raising it trades missed tailgates for fewer false ones (README).",
    )
    faces: bool = Field(
        True,
        description="Also take a face (YuNet, the face gate's detector) outside every person "
        "box as a person: people walking towards a door camera show their faces, and the "
        "COCO person class misses some (masked, pale clothes on a pale wall) whose faces it "
        "finds. One more model run per frame the watch looks at, but on a face gate's camera "
        "(see face_threshold), where the gate's faces of that frame are taken.",
    )
    face_threshold: float = Field(
        0.5, ge=MIN_FACE_THRESHOLD, le=1.0,
        description="YuNet score (0.3-1) for a face to count as a person: as the privacy blur "
        "uses, lower than a face gate's (which must recognise the face, not just see it). On a "
        "face gate's camera the watch takes the faces the gate found in the same frame "
        "(found down to 0.3, the gate's own threshold applied to its own) instead of running "
        "YuNet again, when the gate's detect_long_side gives the same input scale as the "
        "watch's 640.",
    )
    hidden_s: float = Field(
        3.0, ge=1.5, le=10,
        description="Someone seen outside the line is still followed this long (1.5-10 s) unseen: "
        "one close behind another is hidden by them while they go through (some 2 s at walking "
        "pace); others are followed 1.5 s.",
    )
    grace_s: float = Field(
        3.0, ge=0, le=30,
        description="Crossings still count this long (0-30 s) after the door relocked.",
    )
    clip_s: float = Field(
        4.0, ge=0, le=20,
        description="Seconds of frames before the alert saved as a clip beside the snapshot "
        "(0 = none, <= 20).",
    )

    @property
    def start(self) -> float:
        """The score a person box needs to start following someone (start_threshold, or
        threshold when unset)."""
        return self.threshold if self.start_threshold is None else self.start_threshold

    @model_validator(mode="after")
    def _line(self) -> TailgateConfig:
        if self.start_threshold is not None and self.start_threshold < self.threshold:
            raise ValueError(f"start_threshold {self.start_threshold} is under threshold "
                             f"{self.threshold}: a box it drops cannot start anyone")
        if (self.x1, self.y1) == (self.x2, self.y2):
            raise ValueError("the door line needs two different points")
        side = (self.x2 - self.x1) * (self.inside_y - self.y1) - (self.y2 - self.y1) * (
            self.inside_x - self.x1
        )
        if side == 0:
            raise ValueError("the inside point lies on the door line")
        return self


class AnalysisConfig(Strict):
    """The behaviour rules: evaluated by `gatectl run` every ``every_s`` over the store."""

    every_s: float = Field(
        300.0, ge=10, le=86400, description="Rules run this often in `gatectl run` (10 s-1 day)."
    )
    repeat_after_h: float = Field(
        24.0, ge=0.1, le=720,
        description="The same rule for the same subject alerts again only after this many hours.",
    )
    strangers: StrangersRule = Field(StrangersRule(), description="Repeated strangers.")
    night: NightRule = Field(NightRule(), description="Passes mostly at night.")
    care: CareRule = Field(CareRule(), description="Care residents not seen.")
    not_back: NotBackRule = Field(NotBackRule(), description="Residents out and not back.")
    vehicles: VehicleRules = Field(VehicleRules(), description="Vehicle patterns.")
    tailgate: list[TailgateConfig] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Tailgating watches, one a door."
    )
