"""What the device is wired to: cameras, relay boards, outputs, inputs, doors, elevators,
barriers, the announcement display."""

from __future__ import annotations

from functools import reduce
from operator import or_
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    model_validator,
)

from gatectl.config.base import Name, Strict


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



def default_boards() -> list[BoardBase]:
    """The boards of a config that names none: the in-memory board."""
    return [SimulatedBoardConfig()]

if TYPE_CHECKING:
    BoardConfig = BoardBase
else:
    BoardConfig = Annotated[reduce(or_, BOARD_DRIVERS), Field(discriminator="driver"),
                            BeforeValidator(_default_driver)]


class OutputConfig(Strict):
    """A named relay output, e.g. a door strike, a barrier's open contact, an elevator hold."""

    name: Name
    board: Name = Field("main", description="The board ([[boards]] name) the relay is on.")
    channel: int = Field(0, ge=0, le=31, description="0-based relay number on the board.")
    max_on_s: float = Field(
        120.0, gt=0, le=600, description="Cap of any one activation: no output is held on longer."
    )


class InputConfig(Strict):
    """A discrete input of a board. ``ebike_detected`` is the alarm contact of a camera that
    detects e-bikes itself: it feeds the same elevator hold as an e-bike gate. ``sensor`` is a
    named alarm contact (hydrant pressure, manhole tilt, cabinet tamper, water leak): every
    debounced change is an alert (`gatectl.analysis.sensors`). A supervised sensor's loop
    module reports an open circuit (a cut or unplugged cable) on a second input of the board,
    ``fault_index``: while that reads active the sensor is ``silent`` - an alert too."""

    name: Name
    board: Name = Field("main", description="The board ([[boards]] name) the input is on.")
    index: int = Field(0, ge=0, le=31, description="0-based discrete input on the board.")
    role: Literal[
        "door_contact", "exit_button", "fire_alarm", "vehicle_guard", "ebike_detected", "sensor",
        "other",
    ] = Field(
        "other", description="What the contact means to the door, barrier and elevator controllers."
    )
    door: Name | None = Field(
        None, description="The door a door_contact or exit_button belongs to."
    )
    elevator: Name | None = Field(
        None, description="The elevator ([[elevators]] name) an ebike_detected contact is in."
    )
    confirm_s: float = Field(
        1.0,
        ge=0.2,
        le=30,
        description="ebike_detected: the contact must stay active this long (0.2-30 s) before it "
        "holds the car; a shorter blip is ignored.",
    )
    active_low: bool = Field(
        False, description="True for normally-closed wiring: an open circuit reads as active."
    )
    severity: Literal["info", "warning", "critical"] = Field(
        "warning", description='sensor: how urgent its alert is (in the alert\'s reason).'
    )
    debounce_s: float = Field(
        0.5, ge=0.05, le=60,
        description="sensor: a new level must hold this long (0.05-60 s) to count as a change.",
    )
    fault_index: int | None = Field(
        None, ge=0, le=31,
        description="sensor: the board input (0-based) its supervised loop module sets while "
        "the loop reads open-circuit (the sensor is silent).",
    )

    @model_validator(mode="after")
    def _ebike_keys(self) -> InputConfig:
        if self.role != "ebike_detected" and (
            self.elevator is not None or "confirm_s" in self.model_fields_set
        ):
            raise ValueError('elevator and confirm_s apply to role = "ebike_detected" only')
        if self.role != "sensor" and self.model_fields_set & {
            "severity", "debounce_s", "fault_index"
        }:
            raise ValueError('severity, debounce_s and fault_index apply to role = "sensor" only')
        if self.fault_index is not None and self.fault_index == self.index:
            raise ValueError("fault_index must be another input than index")
        return self


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
