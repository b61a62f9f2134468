"""Device configuration: one TOML file per device, parsed into typed pydantic models.

This module is the single source of truth for settings. Every model forbids unknown keys so a
typo in the field fails loudly instead of silently running on a default, and every error is
reported as one line naming its key path (``gates[0].camera: unknown camera 'lobby2'``).
"""

from __future__ import annotations

import operator
import os
import sys
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


class ConfigError(Exception):
    """Bad configuration; ``lines`` holds one ``key.path: message`` line per problem."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on
    assignment."""

    # inf and nan are never a sensible setting: an infinite timeout is a hang, nan fails every
    # comparison
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="1-64 characters of A-Z a-z 0-9 _ . - (used in topics, logs, references).",
    ),
]
Label = Annotated[str, Field(min_length=1, max_length=64, description="1-64 characters.")]
MAX_ITEMS = 64  # of any one section list (cameras, boards, gates, ...): a device, not a site


class DeviceConfig(Strict):
    id: Name = Field(
        "gate-01", description="This device's id (1-64 of A-Z a-z 0-9 _ . -), unique in the site."
    )
    site: Name = Field("default-site", description="The compound's id (1-64 of A-Z a-z 0-9 _ . -).")


class ModelsConfig(Strict):
    dir: Path | None = Field(
        None, description="Folder holding the ONNX weights; default: the bundled models/."
    )
    intra_op_threads: int = Field(2, ge=1, le=64, description="onnxruntime threads per session.")
    embedding_backend: Literal["mobilefacenet", "insightface"] = Field(
        "mobilefacenet",
        description="mobilefacenet (bundled, Apache-2.0) or insightface (a pack of your own).",
    )
    embedding_flip: bool = Field(
        True,
        description="MobileFaceNet: embed the face and its mirror image and sum (more accurate, ~1 "
        "ms).",
    )
    insightface_pack: Path | None = Field(
        None,
        description="insightface model-pack folder; only with embedding_backend='insightface'.",
    )

    @model_validator(mode="after")
    def _pack_needed(self) -> ModelsConfig:
        if self.embedding_backend == "insightface" and self.insightface_pack is None:
            raise ValueError("embedding_backend 'insightface' needs insightface_pack = <folder>")
        return self


class CameraConfig(Strict):
    """One camera. ``source`` is a V4L2 index ("0") or device path, an RTSP/HTTP URL,
    a video file, or a folder of images; ``kind`` is inferred from it unless given."""

    name: Name
    source: str = Field(
        min_length=1,
        max_length=1024,
        description="V4L2 index or device, RTSP/HTTP URL, video file or image folder (1-1024 "
        "chars).",
    )
    kind: Literal["auto", "v4l2", "url", "video", "images"] = Field(
        "auto", description="auto: inferred from source."
    )
    width: int | None = Field(
        None, ge=16, le=7680, description="Capture width asked of the camera, 16-7680 px."
    )
    height: int | None = Field(
        None, ge=16, le=4320, description="Capture height asked of the camera, 16-4320 px."
    )
    fps: float | None = Field(
        None, gt=0, le=240, description="Frame rate asked of the camera, up to 240."
    )
    max_frame_age_ms: int = Field(
        500, ge=10, le=5000, description="Older frames are dropped, never acted on (10-5000 ms)."
    )
    stall_timeout_s: float = Field(
        10.0, ge=0.2, le=300, description="No frame for this long reopens the source (0.2-300 s)."
    )
    reconnect_max_s: float = Field(
        30.0, ge=0.1, le=600, description="Cap of the exponential reopen backoff (0.1-600 s)."
    )
    loop: bool = Field(False, description="Video file / image folder: start again at the end.")

    @model_validator(mode="after")
    def _infer_kind(self) -> CameraConfig:
        if self.kind == "auto":
            object.__setattr__(self, "kind", infer_camera_kind(self.source))
        return self


def infer_camera_kind(source: str) -> Literal["v4l2", "url", "video", "images"]:
    """Guess the source kind the way a technician would read the string."""
    if source.isdigit() or source.startswith("/dev/video"):
        return "v4l2"
    if "://" in source:
        return "url"
    if Path(source).is_dir() or source.endswith("/"):
        return "images"
    return "video"


class BoardBase(Strict):
    """What every [[boards]] entry has, whatever its driver: outputs and inputs refer to these.
    Each driver's model below adds its own keys (and may narrow ``inputs``) and its tag."""

    name: Name = "main"
    driver: str = Field(max_length=32, description="simulated, or a serial relay dialect.")
    channels: int = Field(8, ge=1, le=32, description="Relays on the board, 1-32.")
    inputs: int = Field(8, ge=0, le=32, description="Discrete inputs the board has, 0-32.")


class SimulatedBoardConfig(BoardBase):
    """The in-memory board (`hw.relay.SimulatedRelay`): demos, tests, no relay wired yet."""

    driver: Literal["simulated"] = Field("simulated", description="In memory: no port.")


class SerialBoardConfig(BoardBase):
    """What every board on a serial port has; its dialect (`gatectl.hw.serial.<driver>`) adds
    the rest. ``port`` is a device path (prefer a udev symlink such as /dev/gatectl-relay0:
    CH340 boards have no serial number) or any pyserial URL."""

    port: str = Field(min_length=1, max_length=256,
                      description="Serial device (a udev symlink) or pyserial URL, 1-256 chars.")
    baud: int = Field(9600, ge=1200, le=921600, description="Line speed, 1200-921600.")
    timeout_ms: int = Field(200, ge=10, le=5000, description="Per-request answer timeout.")
    retries: int = Field(2, ge=0, le=10, description="Repeats of an unanswered request, 0-10.")
    poll_ms: int = Field(100, ge=20, le=10000, description="Input polling period.")
    reconnect_max_s: float = Field(30.0, ge=0.1, le=600,
                                   description="Cap of the port reopen backoff (0.1-600 s).")


class ModbusBoardConfig(SerialBoardConfig):
    """A Modbus RTU relay board on RS-485 (Waveshare address map; LCTech clones without the
    all-relays coil work too: the driver learns to switch them off one by one)."""

    driver: Literal["modbus"] = Field("modbus", description="Modbus RTU (Waveshare-style) board.")
    address: int = Field(1, ge=1, le=255, description="Unit address (LCTech boards ship with 255).")
    inputs: int = Field(8, ge=0, le=32, description="Discrete inputs (Modbus FC 02), 0-32.")
    hw_pulse: bool = Field(True, description="Board has timed 'flash on' (Waveshare 0x0200+ch).")


class LcusBoardConfig(SerialBoardConfig):
    """A CH340 "LCUS" USB relay module: latch-only, silent, no inputs."""

    driver: Literal["lcus"] = Field("lcus", description="LCUS / CH340 latch-only USB relay module.")
    inputs: Literal[0] = Field(0, description="LCUS modules have no inputs: 0.")


# The board drivers, one line each: the [[boards]] union is derived from this, and a serial
# driver's code is the module gatectl.hw.serial.<driver> (its DIALECT).
BOARD_DRIVERS: tuple[type[BoardBase], ...] = (
    SimulatedBoardConfig,
    ModbusBoardConfig,
    LcusBoardConfig,
)
BOARD_TAGS = frozenset(b.model_fields["driver"].default for b in BOARD_DRIVERS)


def _default_driver(board: object) -> object:
    """A [[boards]] entry without ``driver`` is the in-memory simulated board (the default)."""
    return {"driver": "simulated", **board} if isinstance(board, dict) else board


if TYPE_CHECKING:
    BoardConfig = BoardBase
else:
    BoardConfig = Annotated[reduce(operator.or_, BOARD_DRIVERS), Field(discriminator="driver"),
                            BeforeValidator(_default_driver)]


def _simulated_board() -> BoardConfig:
    """The default [[boards]]: one in-memory board (typed as the union it is a member of)."""
    return SimulatedBoardConfig()


class OutputConfig(Strict):
    """A named relay output, e.g. a door strike, a barrier's open contact, an elevator hold."""

    name: Name
    board: Name = Field("main", description="The board ([[boards]] name) the relay is on.")
    channel: int = Field(0, ge=0, le=31, description="0-based relay number on the board.")
    max_on_s: float = Field(
        120.0, gt=0, le=600, description="Cap of any one activation: no output is held on longer."
    )


class InputConfig(Strict):
    name: Name
    board: Name = Field("main", description="The board ([[boards]] name) the input is on.")
    index: int = Field(0, ge=0, le=31, description="0-based discrete input on the board.")
    role: Literal["door_contact", "exit_button", "fire_alarm", "vehicle_guard", "other"] = Field(
        "other", description="What the contact means to the door, barrier and elevator controllers."
    )
    door: Name | None = Field(
        None, description="The door a door_contact or exit_button belongs to."
    )
    active_low: bool = Field(
        False, description="True for normally-closed wiring: an open circuit reads as active."
    )


class DoorConfig(Strict):
    name: Name
    output: Name = Field(description="The output that drives the lock.")
    unlock_seconds: float = Field(
        5.0, gt=0, le=60, description="BACnet Door_Pulse_Time default: 5 s."
    )
    held_open_s: float = Field(
        30.0, ge=0.2, le=3600, description="Open longer than this raises door_held_open (1-3600 s)."
    )
    fail_mode: Literal["secure", "safe"] = Field(
        "secure",
        description="secure: strike, locked without power; safe: maglock, released by fire alarm.",
    )
    anti_passback_s: float = Field(
        0.0,
        ge=0,
        le=86400,
        description="Same resident refused again within this time (0 = off, <= 1 day).",
    )


class ElevatorConfig(Strict):
    """An elevator car's "hold doors open" contact, renewed as short board-timed pulses."""

    name: Name
    hold_output: Name = Field(
        description="Dry contact in parallel with the car's door-open button."
    )
    alarm_output: Name | None = Field(None, description="Buzzer / voice module in the car.")
    pulse_s: float = Field(
        3.0, ge=0.5, le=10, description="Each renewal's length: how long a hung gatectl can hold."
    )
    renew_s: float = Field(
        1.0, ge=0.2, le=5, description="Renewal period, 0.2-5 s, shorter than pulse_s."
    )
    release_after_s: float = Field(
        5.0, gt=0, le=120, description="E-bike unseen this long pauses the hold."
    )
    cap_s: float = Field(
        120.0,
        gt=0,
        le=600,
        description="Longest total hold per episode (one object's stay); then release and alert.",
    )
    episode_gap_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Nothing seen this long: the object has left; ends the episode.",
    )
    cooldown_s: float = Field(
        300.0,
        ge=0,
        le=3600,
        description="After a capped or staff-released hold, no new hold for this long.",
    )

    @model_validator(mode="after")
    def _renew_inside_pulse(self) -> ElevatorConfig:
        if self.renew_s >= self.pulse_s:
            raise ValueError(
                "renew_s must be shorter than pulse_s, or the hold would drop between renewals"
            )
        if self.episode_gap_s < self.release_after_s:
            raise ValueError("episode_gap_s must not be shorter than release_after_s")
        return self


class BarrierConfig(Strict):
    """A vehicle barrier arm driven by momentary contacts."""

    name: Name
    open_output: Name = Field(description="The output whose pulse opens the arm.")
    close_output: Name | None = Field(
        None, description="Only for arms that do not close by themselves."
    )
    guard_input: Name | None = Field(
        None, description="Loop detector / photocell: vehicle under the arm."
    )
    pulse_s: float = Field(0.5, ge=0.1, le=5, description="Open/close contact pulse, 0.1-5 s.")
    auto_close_s: float = Field(
        30.0, ge=1, le=600, description="Close when no vehicle passed within this time (1-600 s)."
    )
    closing_s: float = Field(
        6.0, gt=0, le=60, description="Arm travel time; the guard re-opens it meanwhile."
    )


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


class FaceGateConfig(Strict):
    kind: Literal["face"] = Field("face", description="Gate kind (selects this section's schema).")
    name: Name
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


class PlateGateConfig(Strict):
    """A vehicle lane: a camera on the lane, the barrier it opens, and the lane's direction."""

    kind: Literal["plate"] = Field(
        "plate", description="Gate kind (selects this section's schema)."
    )
    name: Name
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
        description="Output layout of `file`: yolox (raw YOLOX head) or yolov8 ([1, 4 + C, A] "
        "boxes and class scores); see gatectl/vision/object_detect.py.",
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
        if self.file is None and self.family != "yolox":
            raise ValueError(
                "family applies to a model of your own (file = ...); the bundled models are yolox"
            )
        return self


class EbikeGateConfig(Strict):
    """A camera in an elevator car: a confirmed e-bike holds the doors through the elevator."""

    kind: Literal["ebike"] = Field(
        "ebike", description="Gate kind (selects this section's schema)."
    )
    name: Name
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
        if self.car_region is not None:
            if len(self.car_region) < 3:
                raise ValueError("car_region needs at least 3 points")
            if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in self.car_region):
                raise ValueError("car_region points are fractions of the image (0..1)")
        return self


GateConfig = Annotated[
    FaceGateConfig | PlateGateConfig | EbikeGateConfig, Field(discriminator="kind")
]


SYSTEM_DIRS = ("bin", "boot", "dev", "etc", "lib", "lib64", "proc", "run", "sbin", "sys", "usr")


class StorageConfig(Strict):
    state_dir: Path | None = Field(
        None,
        description="Absolute state folder of the service and the CLI (else $STATE_DIRECTORY, then "
        "/var/lib/gatectl); the relative paths below are inside it.",
    )
    database: Path = Field(
        Path("gatectl.db"),
        description="SQLite file: relative (inside the state folder) or absolute, never '..', a "
        "system folder or a device.",
    )
    snapshots: Path = Field(
        Path("snapshots"), description="Snapshot folder, same rules as database."
    )
    retention_days: float = Field(
        30, ge=1, le=3650, description="Snapshots are kept this long (1-3650 days)."
    )
    retention_max_mb: float = Field(
        2048, ge=10, le=10_000_000, description="... and within this size (10 MB-10 TB)."
    )
    snapshot_jpeg_quality: int = Field(
        85, ge=30, le=100, description="JPEG quality of snapshots, 30-100."
    )
    keep_enrollment_photos: bool = Field(
        False, description="GB/T 35273: enrollment photos are discarded once templates exist."
    )
    event_retention_days: float = Field(
        180, ge=1, le=3650,
        description="Event rows older than this are deleted; access events are kept exactly this "
        "long (180 days: the usual requirement for access records in China).",
    )
    event_max_rows: int = Field(
        1_000_000, ge=1000, le=50_000_000,
        description="Above this many event rows the oldest non-access events are deleted; access "
        "events younger than event_retention_days are never deleted to meet it.",
    )
    lock_wait_ms: int = Field(
        300, ge=20, le=2000,
        description="Longest a decision waits for the database write lock (a backup, a sqlite3 "
        "shell) before its event goes to the spool and the door opens anyway.",
    )
    spool_max_kb: int = Field(
        1024, ge=16, le=65536,
        description="Size cap of the fsynced spool of events the store could not take (about 3 "
        "events per KB); beyond it an event reaches only the journal (EVENT NOT STORED).",
    )

    @field_validator("state_dir", "database", "snapshots")
    @classmethod
    def _safe_location(cls, p: Path | None, info: ValidationInfo) -> Path | None:
        """Where the daemon writes (as root on some sites): never out of the state folder by
        '..', never into a system folder (a snapshot folder of /etc/cron.d runs code), never a
        device (a database of /dev/null loses every event)."""
        if p is None:
            return p
        if ".." in p.parts:
            raise ValueError(
                f"'{p}': '..' is not allowed; give a path inside the state folder or an "
                "absolute one"
            )
        if info.field_name == "state_dir" and not p.is_absolute():
            raise ValueError(f"'{p}': must be an absolute folder")
        if p.is_absolute() and (p == Path("/") or p.parts[1] in SYSTEM_DIRS):
            raise ValueError(
                f"'{p}': a system folder ({', '.join('/' + d for d in SYSTEM_DIRS)}) is not a "
                "place for gatectl's data"
            )
        if info.field_name == "database" and p.exists() and not p.is_file():
            raise ValueError(f"'{p}': exists and is not a regular file")
        return p


class EnrollmentConfig(Strict):
    """Enrollment is stricter than a gate: a poor template hurts every later pass."""

    quality: FaceQuality = Field(
        FaceQuality(min_face_px=80, min_sharpness=30.0, max_yaw=0.35, min_detail=0.55),
        description="Stricter than a gate's: 80 px, sharper, frontal, not enlarged.",
    )
    detect_threshold: float = Field(
        0.8, ge=0.3, le=1.0, description="YuNet score for an enrollment photo, 0.3-1."
    )
    liveness: bool = Field(True, description="Refuse photos of photos and screens at enrollment.")
    liveness_threshold: float = Field(
        0.5, ge=0.2, le=0.99, description="Fused MiniFASNet p(real), 0.2-0.99."
    )
    duplicate_threshold: float = Field(
        0.40,
        ge=0.25,
        le=0.95,
        description="A new face this close (0.25-0.95) to someone enrolled is refused; also the "
        "same-person check between photos.",
    )
    keep_templates: int = Field(
        3,
        ge=1,
        le=10,
        description="Templates kept per person: the best by quality, near-copies skipped.",
    )


# typed here: mypy cannot see a lambda's list of strings as a list of the Literal
_DEFAULT_ENTRY_CHECKS: list[Literal["account_active"]] = ["account_active"]


class PolicyConfig(Strict):
    reenroll_after_days: float = Field(
        15, ge=1, le=3650, description="No pass for this long -> re-enroll (1-3650 days)."
    )
    entry_checks: list[Literal["account_active"]] = Field(
        default_factory=_DEFAULT_ENTRY_CHECKS.copy, max_length=8,
        description="Pluggable checks run on every otherwise-granted resident.",
    )


class ClockConfig(Strict):
    """Jump detection for devices without an RTC or with a bad NTP server: the wall clock is
    compared with the monotonic clock; time-based rules (snapshot and event retention, the
    re-enrollment rule) do not act on a clock that just jumped (docs/architecture.md)."""

    jump_s: float = Field(
        60, ge=1, le=3600,
        description="A change of wall minus monotonic time larger than this is a clock jump.",
    )
    settle_s: float = Field(
        3600, ge=60, le=7 * 86400,
        description="After a jump the clock is trusted again once it has agreed with the monotonic "
        "clock (no further jump) for this long, or at once when it returns to the pre-jump time "
        "base.",
    )


class TlsConfig(Strict):
    """Broker TLS. ``ca`` alone: server authentication; with ``cert`` and ``key``: mutual TLS
    (the broker can take the certificate's CN as the device's user name for its ACL)."""

    ca: Path = Field(description="CA certificate (PEM) the broker's certificate must chain to.")
    cert: Path | None = Field(None, description="Client certificate (PEM), with key: mutual TLS.")
    key: Path | None = Field(None, description="Client private key (PEM) of cert.")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")
        return self


class SyncConfig(Strict):
    """Central sync over MQTT 5 (paho-mqtt). Offline-first: everything goes through the durable
    outbox; the device works the same with the broker down."""

    enabled: bool = Field(False, description="Sync with the centre over MQTT 5.")
    host: str = Field(
        "127.0.0.1", min_length=1, max_length=253, description="Broker host name or address."
    )
    port: int = Field(1883, ge=1, le=65535, description="Broker port (1883, 8883 for TLS).")
    prefix: str = Field(
        "gatectl",
        pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$",
        description="Topic root; the tree is <prefix>/v1/<site>/<device>/...",
    )
    client_id: str | None = Field(
        None, min_length=1, max_length=128, description="Default: gatectl-<site>-<device>."
    )
    username: str | None = Field(
        None, min_length=1, max_length=128, description="Broker user (the device's ACL)."
    )
    password_file: Path | None = Field(
        None, description="File holding the broker password (not in this file)."
    )
    tls: TlsConfig | None = Field(None, description="Broker TLS (ca; cert and key for mutual TLS).")
    keepalive_s: int = Field(30, ge=5, le=600, description="MQTT keepalive, 5-600 s.")
    session_expiry_s: int = Field(
        7 * 86400,
        ge=0,
        le=90 * 86400,
        description="Broker keeps our commands this long while offline (<= 90 days).",
    )
    health_interval_s: float = Field(
        30.0, ge=1, le=3600, description="Status (health) publish period, 1-3600 s."
    )
    max_inflight: int = Field(
        200, ge=1, le=65535, description="Published but not yet acknowledged."
    )
    outbox_max: int = Field(
        200_000,
        ge=50_000,
        le=10_000_000,
        description="Entries kept while offline (50k-10M); beyond, oldest dropped.",
    )
    snapshots: bool = Field(True, description="Publish snapshot JPEGs on their own topic.")
    command_keys: dict[Name, str] = Field(
        default_factory=dict,
        max_length=16,
        description="Key id -> Ed25519 public key (base64 of the raw 32 bytes, or PEM) allowed to "
        "sign commands.",
    )
    ack_timeout_s: float = Field(
        60.0, ge=1, le=3600,
        description="An outbox row the broker took but the centre has not confirmed (ack topic) "
        "within this is sent again; the wait doubles per attempt up to 32 x. Rows are deleted only "
        "on the centre's ack.",
    )
    command_max_ttl_s: float = Field(
        300.0, gt=0, le=86400, description="Longest validity a command may claim (<= 1 day)."
    )
    clock_skew_s: float = Field(
        30.0, ge=0, le=3600, description="Clock difference to the centre tolerated, 0-3600 s."
    )
    max_command_bytes: int = Field(
        16_384,
        ge=1024,
        le=1 << 20,
        description="Larger messages on the cmd topic are refused unread.",
    )
    max_templates: int = Field(
        10, ge=1, le=100, description="Templates per person accepted in one enrollment."
    )
    max_enroll_bytes: int | None = Field(
        None,
        ge=4096,
        le=64 << 20,
        description="Larger enrollment messages are refused unread; default: max_templates x "
        "embedding size.",
    )
    max_json_depth: int = Field(
        16, ge=4, le=64, description="Deeper-nested inbound JSON is refused unparsed."
    )
    refusals_per_s: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Refused messages logged (and answered) per second per topic.",
    )
    refusal_burst: int = Field(
        10, ge=1, le=1000, description="Refusals logged at once before the rate applies."
    )

    @field_validator("command_keys")
    @classmethod
    def _keys_load(cls, keys: dict[str, str]) -> dict[str, str]:
        from gatectl.sync.signing import load_public_key

        for kid, text in keys.items():
            try:
                load_public_key(text)
            except ValueError as exc:
                raise ValueError(f"key '{kid}': {exc}") from None
        return keys

    def missing_files(self) -> list[str]:
        """The broker password and TLS files that are absent or unreadable, one line each."""
        named = [("sync.password_file", self.password_file)]
        if self.tls is not None:
            named += [(f"sync.tls.{k}", getattr(self.tls, k)) for k in ("ca", "cert", "key")]
        return [
            line
            for key, path in named
            if path is not None and (line := _file_problem(key, path, file=True))
        ]

    @model_validator(mode="after")
    def _password_needs_user(self) -> SyncConfig:
        if self.password_file is not None and not self.username:
            raise ValueError("password_file needs username")
        return self


class DisplayConfig(Strict):
    """The announcement display (door panel, lift LED text display); see gatectl/display.py.
    Without one, announcements are stored and echoed in the status, and said not to be shown."""

    kind: Literal["none", "http", "command"] = Field(
        "none",
        description="http: POST the JSON announcement to url; command: run it with the JSON on "
        "stdin.",
    )
    url: str | None = Field(
        None,
        max_length=2048,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description='The display\'s endpoint (kind = "http").',
    )
    command: list[Annotated[str, Field(min_length=1, max_length=4096)]] | None = Field(
        None, min_length=1, max_length=64, description='argv, no shell (kind = "command").'
    )
    timeout_s: float = Field(
        2.0, gt=0, le=10, description="Longest wait for the display to accept."
    )

    @model_validator(mode="after")
    def _target(self) -> DisplayConfig:
        if self.kind == "http" and (self.url is None or self.command is not None):
            raise ValueError('kind = "http" needs url (and no command)')
        if self.kind == "command" and (self.command is None or self.url is not None):
            raise ValueError('kind = "command" needs command (and no url)')
        if self.kind == "none" and (self.url is not None or self.command is not None):
            raise ValueError('url and command need kind = "http" or "command"')
        return self


class Config(Strict):
    device: DeviceConfig = Field(DeviceConfig(), description="Who this device is.")
    models: ModelsConfig = Field(
        ModelsConfig(), description="Where the weights are, threads, embedder."
    )
    cameras: list[CameraConfig] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Frame sources."
    )
    boards: list[BoardConfig] = Field(default_factory=lambda: [_simulated_board()],
                                      max_length=MAX_ITEMS, description="Relay boards.")
    outputs: list[OutputConfig] = Field(
        default_factory=list, max_length=MAX_ITEMS * 4, description="Named relays."
    )
    inputs: list[InputConfig] = Field(
        default_factory=list, max_length=MAX_ITEMS * 4, description="Named contacts."
    )
    doors: list[DoorConfig] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Door locks."
    )
    barriers: list[BarrierConfig] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Vehicle barriers."
    )
    elevators: list[ElevatorConfig] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Elevator cars."
    )
    gates: list[GateConfig] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        description="Face doors, plate lanes, e-bike cars: what `run` runs.",
    )
    storage: StorageConfig = Field(StorageConfig(), description="Store, snapshots, retention.")
    enrollment: EnrollmentConfig = Field(
        EnrollmentConfig(), description="How strict enrollment is."
    )
    policy: PolicyConfig = Field(PolicyConfig(), description="Re-enrollment and entry checks.")
    clock: ClockConfig = Field(
        ClockConfig(), description="When the wall clock is trusted after a jump."
    )
    sync: SyncConfig = Field(SyncConfig(), description="Central sync over MQTT 5.")
    display: DisplayConfig = Field(DisplayConfig(), description="Where announcements are shown.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="The daemon's log level."
    )

    def camera(self, name: str) -> CameraConfig:
        return next(c for c in self.cameras if c.name == name)

    def door(self, name: str) -> DoorConfig:
        return next(d for d in self.doors if d.name == name)

    def output(self, name: str) -> OutputConfig:
        return next(o for o in self.outputs if o.name == name)

    def board(self, name: str) -> BoardConfig:
        return next(b for b in self.boards if b.name == name)

    def startup_problems(self) -> list[str]:
        """What makes `gatectl run` refuse to start beyond the schema: nothing to run, or a file
        the config names that is missing or unreadable. The one list `config check`, `doctor`
        and `run` all use (and the sync client, for its files), so they cannot disagree."""
        problems = (
            [] if self.gates else ["gates: no gate configured: `gatectl run` would watch nothing"]
        )
        m = self.models
        if m.dir is not None:
            problems += filter(None, [_file_problem("models.dir", m.dir, file=False)])
        if m.embedding_backend == "insightface" and m.insightface_pack is not None:
            problems += filter(
                None, [_file_problem("models.insightface_pack", m.insightface_pack, file=False)]
            )
        for i, g in enumerate(self.gates):
            if isinstance(g, EbikeGateConfig) and g.detector.file is not None:
                problems += filter(
                    None, [_file_problem(f"gates[{i}].detector.file", g.detector.file, file=True)]
                )
        if self.sync.enabled:
            problems += self.sync.missing_files()
        return problems

    def cross_check(self) -> list[str]:
        """References between sections, reported with the key path of the referring field."""
        errors: list[str] = []
        for section, items in (
            ("cameras", self.cameras),
            ("boards", self.boards),
            ("outputs", self.outputs),
            ("inputs", self.inputs),
            ("doors", self.doors),
            ("barriers", self.barriers),
            ("elevators", self.elevators),
            ("gates", self.gates),
        ):
            seen: set[str] = set()
            for i, item in enumerate(items):
                if item.name in seen:
                    errors.append(f"{section}[{i}].name: duplicate name '{item.name}'")
                seen.add(item.name)
        cameras = {c.name for c in self.cameras}
        doors = {d.name for d in self.doors}
        boards = {b.name: b for b in self.boards}
        outputs = {o.name for o in self.outputs}
        wired: dict[tuple[str, int], str] = {}
        for i, o in enumerate(self.outputs):
            b = boards.get(o.board)
            if b is None:
                errors.append(f"outputs[{i}].board: unknown board '{o.board}'")
            elif o.channel >= b.channels:
                errors.append(
                    f"outputs[{i}].channel: board '{o.board}' has channels 0..{b.channels - 1}"
                )
            elif (o.board, o.channel) in wired:
                errors.append(
                    f"outputs[{i}].channel: channel {o.channel} of board '{o.board}' already "
                    f"drives output '{wired[(o.board, o.channel)]}'"
                )
            wired.setdefault((o.board, o.channel), o.name)
        for i, inp in enumerate(self.inputs):
            b = boards.get(inp.board)
            if b is None:
                errors.append(f"inputs[{i}].board: unknown board '{inp.board}'")
            elif inp.index >= b.inputs:
                errors.append(f"inputs[{i}].index: board '{inp.board}' has {b.inputs} input(s)")
            if inp.role in ("door_contact", "exit_button") and inp.door not in doors:
                errors.append(
                    f"inputs[{i}].door: a {inp.role} needs a known door (got {inp.door!r})"
                )
        inputs = {inp.name: inp for inp in self.inputs}
        refs: list[tuple[str, str | None]] = [
            (f"doors[{i}].output", d.output) for i, d in enumerate(self.doors)
        ]
        for i, bar in enumerate(self.barriers):
            refs += [
                (f"barriers[{i}].open_output", bar.open_output),
                (f"barriers[{i}].close_output", bar.close_output),
            ]
            if bar.guard_input is not None and bar.guard_input not in inputs:
                errors.append(f"barriers[{i}].guard_input: unknown input '{bar.guard_input}'")
            elif bar.guard_input is not None and inputs[bar.guard_input].role != "vehicle_guard":
                errors.append(
                    f"barriers[{i}].guard_input: input '{bar.guard_input}' needs "
                    "role = \"vehicle_guard\""
                )
        for i, e in enumerate(self.elevators):
            refs += [
                (f"elevators[{i}].hold_output", e.hold_output),
                (f"elevators[{i}].alarm_output", e.alarm_output),
            ]
        for key, name in refs:
            if name is not None and name not in outputs:
                errors.append(f"{key}: unknown output '{name}'")
        used: dict[str, str] = {}
        for i, g in enumerate(self.gates):
            if g.camera in used:
                errors.append(
                    f"gates[{i}].camera: camera '{g.camera}' already serves gate '{used[g.camera]}'"
                )
            used.setdefault(g.camera, g.name)
            if g.camera not in cameras:
                errors.append(f"gates[{i}].camera: unknown camera '{g.camera}'")
            if isinstance(g, FaceGateConfig) and g.door not in doors:
                errors.append(f"gates[{i}].door: unknown door '{g.door}'")
            if isinstance(g, PlateGateConfig) and g.barrier not in {b.name for b in self.barriers}:
                errors.append(f"gates[{i}].barrier: unknown barrier '{g.barrier}'")
            if isinstance(g, EbikeGateConfig) and g.elevator not in {
                e.name for e in self.elevators
            }:
                errors.append(f"gates[{i}].elevator: unknown elevator '{g.elevator}'")
        return errors


def _file_problem(key: str, path: Path, file: bool) -> str | None:
    """``key: file not found: path`` (or folder / unreadable), None when ``path`` is usable."""
    p = Path(path)
    what = "file" if file else "folder"
    if not (p.is_file() if file else p.is_dir()):
        return f"{key}: {what} not found: {p}"
    if not os.access(p, os.R_OK | (0 if file else os.X_OK)):
        return f"{key}: cannot read {what} {p} (permission denied)"
    return None


def default_config() -> Config:
    """Built-in defaults: one face gate on the first USB camera, driving a simulated relay."""
    return Config(
        cameras=[CameraConfig(name="cam0", source="0")],
        outputs=[OutputConfig(name="door", channel=0)],
        doors=[DoorConfig(name="door", output="door")],
        gates=[FaceGateConfig(name="gate", camera="cam0", door="door")],
    )


def _loc(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("face", "plate", "ebike") or part in BOARD_TAGS:  # union tags, not keys
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: ``key.path: message (got value)``."""
    lines = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"{_loc(err['loc'])}: {msg}")
    return lines


def parse_config(data: dict, origin: str = "<config>") -> Config:
    """Validate a config mapping; raise ConfigError with every problem found."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    errors = cfg.cross_check()
    if errors:
        raise ConfigError(errors)
    return cfg


def load_config(path: Path | str) -> Config:
    """Read and validate a TOML file; every failure becomes a ConfigError naming the file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{p}: config file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read config file ({exc.strerror})"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{p}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{p}: TOML syntax error: {exc}"]) from None
    # an empty or all-comment file is a mistake (wrong path, truncated copy), not defaults
    if not data:
        raise ConfigError(
            [f"{p}: empty config: nothing is set (start from config/lobby-face-gate.toml)"]
        )
    return parse_config(data, str(p))
