"""Device configuration: one TOML file per device, parsed into typed pydantic models.

This module is the single source of truth for settings. Every model forbids unknown keys so a
typo in the field fails loudly instead of silently running on a default, and every error is
reported as one line naming its key path (``gates[0].camera: unknown camera 'lobby2'``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class DeviceConfig(Strict):
    id: Name = "gate-01"
    site: Name = "default-site"


class ModelsConfig(Strict):
    dir: Path | None = Field(
        None, description="Folder holding the ONNX weights; default: the bundled models/."
    )
    intra_op_threads: int = Field(2, ge=1, le=64, description="onnxruntime threads per session.")
    embedding_backend: Literal["mobilefacenet", "insightface"] = "mobilefacenet"
    insightface_pack: Path | None = Field(
        None, description="insightface model-pack folder; only with embedding_backend='insightface'."
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
    source: str = Field(min_length=1)
    kind: Literal["auto", "v4l2", "url", "video", "images"] = "auto"
    width: int | None = Field(None, ge=16, le=7680)
    height: int | None = Field(None, ge=16, le=4320)
    fps: float | None = Field(None, gt=0, le=240)
    max_frame_age_ms: int = Field(500, ge=10, description="Older frames are dropped, never acted on.")
    stall_timeout_s: float = Field(10.0, gt=0, description="No frame for this long reopens the source.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Cap of the exponential reopen backoff.")
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


class BoardConfig(Strict):
    """A relay board on a serial port. ``port`` is a device path (prefer a udev symlink such as
    /dev/gatectl-relay0: CH340 boards have no serial number) or any pyserial URL."""

    name: Name = "main"
    driver: Literal["simulated", "modbus", "lcus"] = "simulated"
    port: str = ""
    baud: int = Field(9600, ge=1200, le=921600)
    address: int = Field(1, ge=1, le=255, description="Modbus unit address (LCTech boards ship with 255).")
    channels: int = Field(8, ge=1, le=32)
    inputs: int = Field(8, ge=0, le=32, description="Discrete inputs the board has (Modbus FC 02).")
    hw_pulse: bool = Field(True, description="Modbus board has timed 'flash on' (Waveshare 0x0200+ch).")
    timeout_ms: int = Field(200, ge=10, le=5000, description="Per-request answer timeout.")
    retries: int = Field(2, ge=0, le=10)
    poll_ms: int = Field(100, ge=20, le=10000, description="Input polling period.")
    reconnect_max_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _port_needed(self) -> BoardConfig:
        if self.driver != "simulated" and not self.port:
            raise ValueError(f"driver '{self.driver}' needs port = <device or pyserial URL>")
        return self


class OutputConfig(Strict):
    """A named relay output, e.g. a door strike, a barrier's open contact, an elevator hold."""

    name: Name
    board: Name = "main"
    channel: int = Field(0, ge=0, le=31, description="0-based relay number on the board.")
    max_on_s: float = Field(
        120.0, gt=0, le=600, description="Cap of any one activation: no output is held on longer."
    )


class InputConfig(Strict):
    name: Name
    board: Name = "main"
    index: int = Field(0, ge=0, le=31, description="0-based discrete input on the board.")
    role: Literal["door_contact", "exit_button", "fire_alarm", "vehicle_guard", "other"] = "other"
    door: Name | None = Field(None, description="The door a door_contact or exit_button belongs to.")
    active_low: bool = Field(
        False, description="True for normally-closed wiring: an open circuit reads as active."
    )


class DoorConfig(Strict):
    name: Name
    output: Name = Field(description="The output that drives the lock.")
    unlock_seconds: float = Field(5.0, gt=0, le=60, description="BACnet Door_Pulse_Time default: 5 s.")
    held_open_s: float = Field(30.0, gt=0, description="Open longer than this raises door_held_open.")
    fail_mode: Literal["secure", "safe"] = Field(
        "secure", description="secure: strike, locked without power; safe: maglock, released by fire alarm."
    )
    anti_passback_s: float = Field(0.0, ge=0, description="Same resident refused again within this time.")


class ElevatorConfig(Strict):
    """An elevator car's "hold doors open" contact, renewed as short board-timed pulses."""

    name: Name
    hold_output: Name = Field(description="Dry contact in parallel with the car's door-open button.")
    alarm_output: Name | None = Field(None, description="Buzzer / voice module in the car.")
    pulse_s: float = Field(3.0, ge=0.5, le=10, description="Each renewal's length: how long a hung gatectl can hold.")
    renew_s: float = Field(1.0, gt=0, le=5)
    release_after_s: float = Field(5.0, gt=0, le=120, description="E-bike unseen this long ends the hold.")
    cap_s: float = Field(120.0, gt=0, le=600, description="Longest hold; then release and alarm.")

    @model_validator(mode="after")
    def _renew_inside_pulse(self) -> ElevatorConfig:
        if self.renew_s >= self.pulse_s:
            raise ValueError("renew_s must be shorter than pulse_s, or the hold would drop between renewals")
        return self


class BarrierConfig(Strict):
    """A vehicle barrier arm driven by momentary contacts."""

    name: Name
    open_output: Name
    close_output: Name | None = Field(None, description="Only for arms that do not close by themselves.")
    guard_input: Name | None = Field(None, description="Loop detector / photocell: vehicle under the arm.")
    pulse_s: float = Field(0.5, gt=0, le=5)
    auto_close_s: float = Field(30.0, gt=0, description="Close when no vehicle passed within this time.")
    closing_s: float = Field(6.0, gt=0, le=60, description="Arm travel time; the guard re-opens it meanwhile.")


class FaceThresholds(Strict):
    detect: float = Field(0.8, ge=0.3, le=1.0, description="YuNet score; the MANIFEST advises 0.8-0.9.")
    match: float = Field(0.40, ge=0.0, le=1.0, description="Cosine similarity for a 1:N match.")
    margin: float = Field(0.08, ge=0.0, le=1.0, description="Best minus best other person.")
    liveness: float = Field(0.5, ge=0.0, le=1.0, description="Fused MiniFASNet p(real).")


class FaceQuality(Strict):
    min_face_px: int = Field(60, ge=16, description="Shorter side of the face box, in pixels.")
    min_sharpness: float = Field(25.0, ge=0, description="Laplacian variance of the aligned face.")
    max_yaw: float = Field(0.45, gt=0, le=1, description="Nose offset from the eye midline / eye distance.")
    max_roll_deg: float = Field(30.0, gt=0, le=90)
    min_detail: float = Field(
        0.0, ge=0, le=1.5, description="Fine over coarse detail of the aligned face (face_quality.detail_ratio); "
                                       "refuses a face enlarged from a tiny one. 0 = off; real faces score >= 0.7.")


class FaceGateConfig(Strict):
    kind: Literal["face"] = "face"
    name: Name
    camera: Name
    door: Name
    liveness: bool = True
    thresholds: FaceThresholds = FaceThresholds()
    quality: FaceQuality = FaceQuality()
    detect_long_side: int = Field(640, ge=160, le=1920, multiple_of=32)
    confirm_frames: int = Field(2, ge=1, description="Agreeing frames needed ...")
    confirm_window: int = Field(3, ge=1, description="... among the last this many of one face track.")
    cooldown_s: float = Field(5.0, ge=0, description="One grant per resident per gate in this time.")
    track_timeout_s: float = Field(1.5, gt=0, description="A face unseen this long ends its track.")

    @model_validator(mode="after")
    def _window(self) -> FaceGateConfig:
        if self.confirm_frames > self.confirm_window:
            raise ValueError("confirm_frames must not exceed confirm_window")
        return self


class PlateThresholds(Strict):
    detect: float = Field(0.6, ge=0.3, le=1.0, description="Plate detector score needed to act.")
    char: float = Field(0.4, ge=0.0, le=1.0, description="EVERY character's confidence must reach this.")


class PlateGateConfig(Strict):
    """A vehicle lane: a camera on the lane, the barrier it opens, and the lane's direction."""

    kind: Literal["plate"] = "plate"
    name: Name
    camera: Name
    barrier: Name
    direction: Literal["entry", "exit"] = "entry"
    detector_size: Literal[320, 640] = Field(320, description="320: ~8 ms; 640: more reach for small plates.")
    thresholds: PlateThresholds = PlateThresholds()
    min_votes: int = Field(2, ge=1, le=20, description="Frames with a whole-plate reading before deciding.")
    track_timeout_s: float = Field(2.0, gt=0, description="A plate unseen this long: the vehicle has gone.")
    cooldown_s: float = Field(30.0, ge=0, description="The same plate again within this time is the same vehicle.")
    open_unknown_on_exit: bool = Field(True, description="Exit lanes let every vehicle out except blacklisted ones.")
    inside_days_alert: float = Field(30.0, gt=0, description="`gatectl vehicles inside` flags longer stays.")


class EbikeDetectorConfig(Strict):
    """The detector of an e-bike gate: the bundled YOLOX-nano (COCO) or a site's own model."""

    model: str = Field("yolox_nano", description="Registry name in the models folder.")
    file: Path | None = Field(None, description="An ONNX detector of your own instead (sha256 not checked).")
    family: Literal["yolox", "yolov8"] = Field(
        "yolox", description="Output layout of `file`: yolox (raw YOLOX head) or yolov8 ([1, 4 + C, A] boxes "
                             "and class scores); see gatectl/vision/object_detect.py.")
    input_size: int = Field(416, ge=160, le=1280, multiple_of=32)
    classes: dict[str, int] = Field(
        default_factory=lambda: {"bicycle": 1, "motorcycle": 3},
        description="Class name -> output index, for every class the gate looks at.")
    ebike_classes: list[str] = Field(
        default_factory=lambda: ["motorcycle"], description="Classes that count as an e-bike / moped / scooter.")
    threshold: float = Field(0.15, ge=0.01, le=1.0)
    tiles: int = Field(2, ge=1, le=4, description="1: whole region only; 2/3/4: also a 2x2/3x3/4x4 grid of "
                                                   "overlapping tiles (one model run each: more reach, more time).")

    @model_validator(mode="after")
    def _known(self) -> EbikeDetectorConfig:
        unknown = [c for c in self.ebike_classes if c not in self.classes]
        if unknown:
            raise ValueError(f"ebike_classes {unknown} are not in classes")
        if self.file is None and self.family != "yolox":
            raise ValueError("family applies to a model of your own (file = ...); the bundled models are yolox")
        return self


class EbikeGateConfig(Strict):
    """A camera in an elevator car: a confirmed e-bike holds the doors through the elevator."""

    kind: Literal["ebike"] = "ebike"
    name: Name
    camera: Name
    elevator: Name
    detector: EbikeDetectorConfig = EbikeDetectorConfig()
    car_region: list[tuple[float, float]] | None = Field(
        None, description="Polygon of the car floor in 0..1 image coordinates; the landing outside is ignored.")
    bicycles_allowed: bool = Field(True, description="False: a 'bicycle' detection also holds the car.")
    confirm_frames: int = Field(3, ge=1, description="Frames with an e-bike needed ...")
    confirm_window: int = Field(5, ge=1, description="... among the last this many.")
    announcement: str = Field("电动车禁止进入电梯，请推出轿厢。E-bikes are not allowed in the lift, please take it out.",
                              min_length=1, max_length=500)

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


GateConfig = Annotated[Union[FaceGateConfig, PlateGateConfig, EbikeGateConfig], Field(discriminator="kind")]


class StorageConfig(Strict):
    state_dir: Path | None = Field(
        None, description="Absolute state folder of the service and the CLI (else $STATE_DIRECTORY, then "
                          "/var/lib/gatectl); the relative paths below are inside it.")
    database: Path = Path("gatectl.db")
    snapshots: Path = Path("snapshots")
    retention_days: float = Field(30, gt=0)
    retention_max_mb: float = Field(2048, gt=0)
    snapshot_jpeg_quality: int = Field(85, ge=30, le=100)
    keep_enrollment_photos: bool = Field(
        False, description="GB/T 35273: enrollment photos are discarded once templates exist."
    )


class EnrollmentConfig(Strict):
    """Enrollment is stricter than a gate: a poor template hurts every later pass."""

    quality: FaceQuality = FaceQuality(min_face_px=80, min_sharpness=30.0, max_yaw=0.35, min_detail=0.55)
    detect_threshold: float = Field(0.8, ge=0.3, le=1.0)
    liveness: bool = True
    liveness_threshold: float = Field(0.5, ge=0.0, le=1.0)
    duplicate_threshold: float = Field(
        0.40, ge=0.0, le=1.0, description="A new face this close to someone enrolled is refused."
    )


class PolicyConfig(Strict):
    reenroll_after_days: float = Field(15, gt=0, description="No pass for this long -> re-enroll.")
    entry_checks: list[Literal["account_active"]] = Field(
        default_factory=lambda: ["account_active"],
        description="Pluggable checks run on every otherwise-granted resident.",
    )


class TlsConfig(Strict):
    """Broker TLS. ``ca`` alone: server authentication; with ``cert`` and ``key``: mutual TLS
    (the broker can take the certificate's CN as the device's user name for its ACL)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")
        return self


class SyncConfig(Strict):
    """Central sync over MQTT 5 (paho-mqtt). Offline-first: everything goes through the durable
    outbox; the device works the same with the broker down."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    prefix: str = Field("gatectl", pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$",
                        description="Topic root; the tree is <prefix>/v1/<site>/<device>/...")
    client_id: str | None = Field(None, description="Default: gatectl-<site>-<device>.")
    username: str | None = None
    password_file: Path | None = Field(None, description="File holding the broker password (not in this file).")
    tls: TlsConfig | None = None
    keepalive_s: int = Field(30, ge=5, le=600)
    session_expiry_s: int = Field(7 * 86400, ge=0, description="Broker keeps our commands this long while offline.")
    health_interval_s: float = Field(30.0, ge=1)
    max_inflight: int = Field(200, ge=1, le=65535, description="Published but not yet acknowledged.")
    outbox_max: int = Field(200_000, ge=50_000, description="Entries kept while offline; beyond, oldest dropped.")
    snapshots: bool = Field(True, description="Publish snapshot JPEGs on their own topic.")
    command_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Key id -> Ed25519 public key (base64 of the raw 32 bytes, or PEM) allowed to sign commands.")
    command_max_ttl_s: float = Field(300.0, gt=0, le=86400)
    clock_skew_s: float = Field(30.0, ge=0, le=3600)
    max_command_bytes: int = Field(16_384, ge=1024, le=1 << 20,
                                   description="Larger messages on the cmd topic are refused unread.")
    max_templates: int = Field(10, ge=1, le=100, description="Templates per person accepted in one enrollment.")
    max_enroll_bytes: int | None = Field(
        None, ge=4096, le=64 << 20,
        description="Larger enrollment messages are refused unread; default: max_templates x embedding size.")
    max_json_depth: int = Field(16, ge=4, le=64, description="Deeper-nested inbound JSON is refused unparsed.")
    refusals_per_s: float = Field(1.0, gt=0, le=100,
                                  description="Refused messages logged (and answered) per second per topic.")
    refusal_burst: int = Field(10, ge=1, le=1000, description="Refusals logged at once before the rate applies.")

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
        return [line for key, path in named if path is not None and (line := _file_problem(key, path, file=True))]

    @model_validator(mode="after")
    def _password_needs_user(self) -> SyncConfig:
        if self.password_file is not None and not self.username:
            raise ValueError("password_file needs username")
        return self


class Config(Strict):
    device: DeviceConfig = DeviceConfig()
    models: ModelsConfig = ModelsConfig()
    cameras: list[CameraConfig] = Field(default_factory=list)
    boards: list[BoardConfig] = Field(default_factory=lambda: [BoardConfig()])
    outputs: list[OutputConfig] = Field(default_factory=list)
    inputs: list[InputConfig] = Field(default_factory=list)
    doors: list[DoorConfig] = Field(default_factory=list)
    barriers: list[BarrierConfig] = Field(default_factory=list)
    elevators: list[ElevatorConfig] = Field(default_factory=list)
    gates: list[GateConfig] = Field(default_factory=list)
    storage: StorageConfig = StorageConfig()
    enrollment: EnrollmentConfig = EnrollmentConfig()
    policy: PolicyConfig = PolicyConfig()
    sync: SyncConfig = SyncConfig()
    log_level: Literal["debug", "info", "warning", "error"] = "info"

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
        problems = [] if self.gates else ["gates: no gate configured: `gatectl run` would watch nothing"]
        m = self.models
        if m.dir is not None:
            problems += filter(None, [_file_problem("models.dir", m.dir, file=False)])
        if m.embedding_backend == "insightface" and m.insightface_pack is not None:
            problems += filter(None, [_file_problem("models.insightface_pack", m.insightface_pack, file=False)])
        for i, g in enumerate(self.gates):
            if isinstance(g, EbikeGateConfig) and g.detector.file is not None:
                problems += filter(None, [_file_problem(f"gates[{i}].detector.file", g.detector.file, file=True)])
        if self.sync.enabled:
            problems += self.sync.missing_files()
        return problems

    def cross_check(self) -> list[str]:
        """References between sections, reported with the key path of the referring field."""
        errors: list[str] = []
        for section, items in (("cameras", self.cameras), ("boards", self.boards), ("outputs", self.outputs),
                               ("inputs", self.inputs), ("doors", self.doors), ("barriers", self.barriers),
                               ("elevators", self.elevators), ("gates", self.gates)):
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
                errors.append(f"outputs[{i}].channel: board '{o.board}' has channels 0..{b.channels - 1}")
            elif (o.board, o.channel) in wired:
                errors.append(f"outputs[{i}].channel: channel {o.channel} of board '{o.board}' already "
                              f"drives output '{wired[(o.board, o.channel)]}'")
            wired.setdefault((o.board, o.channel), o.name)
        for i, inp in enumerate(self.inputs):
            b = boards.get(inp.board)
            if b is None:
                errors.append(f"inputs[{i}].board: unknown board '{inp.board}'")
            elif inp.index >= b.inputs:
                errors.append(f"inputs[{i}].index: board '{inp.board}' has {b.inputs} input(s)")
            if inp.role in ("door_contact", "exit_button") and inp.door not in doors:
                errors.append(f"inputs[{i}].door: a {inp.role} needs a known door (got {inp.door!r})")
        inputs = {inp.name: inp for inp in self.inputs}
        refs: list[tuple[str, str | None]] = [(f"doors[{i}].output", d.output) for i, d in enumerate(self.doors)]
        for i, b in enumerate(self.barriers):
            refs += [(f"barriers[{i}].open_output", b.open_output), (f"barriers[{i}].close_output", b.close_output)]
            if b.guard_input is not None and b.guard_input not in inputs:
                errors.append(f"barriers[{i}].guard_input: unknown input '{b.guard_input}'")
            elif b.guard_input is not None and inputs[b.guard_input].role != "vehicle_guard":
                errors.append(f"barriers[{i}].guard_input: input '{b.guard_input}' needs role = \"vehicle_guard\"")
        for i, e in enumerate(self.elevators):
            refs += [(f"elevators[{i}].hold_output", e.hold_output), (f"elevators[{i}].alarm_output", e.alarm_output)]
        for key, name in refs:
            if name is not None and name not in outputs:
                errors.append(f"{key}: unknown output '{name}'")
        used: dict[str, str] = {}
        for i, g in enumerate(self.gates):
            if g.camera in used:
                errors.append(f"gates[{i}].camera: camera '{g.camera}' already serves gate '{used[g.camera]}'")
            used.setdefault(g.camera, g.name)
            if g.camera not in cameras:
                errors.append(f"gates[{i}].camera: unknown camera '{g.camera}'")
            if isinstance(g, FaceGateConfig) and g.door not in doors:
                errors.append(f"gates[{i}].door: unknown door '{g.door}'")
            if isinstance(g, PlateGateConfig) and g.barrier not in {b.name for b in self.barriers}:
                errors.append(f"gates[{i}].barrier: unknown barrier '{g.barrier}'")
            if isinstance(g, EbikeGateConfig) and g.elevator not in {e.name for e in self.elevators}:
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
        elif part in ("face", "plate", "ebike"):  # discriminator tags of the gate union are not keys in the file
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
    if not data:  # an empty or all-comment file is a mistake (wrong path, truncated copy), not defaults
        raise ConfigError([f"{p}: empty config: nothing is set (start from config/lobby-face-gate.toml)"])
    return parse_config(data, str(p))
