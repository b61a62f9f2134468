"""Device configuration: one TOML file per device, parsed into typed pydantic models.

This package is the single source of truth for settings: small schema modules over one strict
base (`base`: unknown keys forbidden, so a typo in the field fails loudly instead of silently
running on a default), `site`, `hardware`, `gates` (with `GATE_KINDS`), `sync`; here, the whole
`Config` with its cross-references, and loading with every error reported as one line naming
its key path (``gates[0].camera: unknown camera 'lobby2'``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationError,
)

from gatectl.config.access import AccessConfig
from gatectl.config.analysis import AnalysisConfig
from gatectl.config.base import MAX_ITEMS, ConfigError, Strict, file_problem
from gatectl.config.gates import (
    GATE_TAGS,
    EbikeGateConfig,
    FaceGateConfig,
    GateConfig,
    PlateGateConfig,
)
from gatectl.config.hardware import (
    BOARD_TAGS,
    BarrierConfig,
    BoardConfig,
    CameraConfig,
    DisplayConfig,
    DoorConfig,
    ElevatorConfig,
    InputConfig,
    OutputConfig,
    default_boards,
)
from gatectl.config.push import PushConfig
from gatectl.config.readers import PrivacyConfig, ReaderConfig
from gatectl.config.run import RunConfig
from gatectl.config.site import (
    ClockConfig,
    DeviceConfig,
    EnrollmentConfig,
    LoggingConfig,
    ModelsConfig,
    PolicyConfig,
    StorageConfig,
)
from gatectl.config.status import StatusConfig
from gatectl.config.sync import SyncConfig
from gatectl.core.safe_text import shown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


class Config(Strict):
    device: DeviceConfig = Field(DeviceConfig(), description="Who this device is.")
    models: ModelsConfig = Field(
        ModelsConfig(), description="Where the weights are, threads, embedder."
    )
    cameras: list[CameraConfig] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Frame sources."
    )
    boards: list[BoardConfig] = Field(default_factory=default_boards,
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
    push: PushConfig = Field(PushConfig(), description="AI cameras pushing e-bike events.")
    status: StatusConfig = Field(StatusConfig(), description="The local status page and metrics.")
    access: AccessConfig = Field(
        AccessConfig(), description="Credential policies per door, schedules, PIN/QR/TOTP limits."
    )
    run: RunConfig = Field(
        RunConfig(), description="`gatectl run`: CPU budget, providers, supervision, stop."
    )
    readers: list[ReaderConfig] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="OSDP card and PIN readers."
    )
    privacy: PrivacyConfig = Field(
        PrivacyConfig(), description="The face-recognition notice at the doors."
    )
    analysis: AnalysisConfig = Field(
        AnalysisConfig(), description="Behaviour rules and tailgating (gatectl.analysis)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="The daemon's log level."
    )
    logging: LoggingConfig = Field(
        LoggingConfig(), description="The daemon's log format and optional log file."
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
            problems += filter(None, [file_problem("models.dir", m.dir, file=False)])
        if m.embedding_backend == "insightface" and m.insightface_pack is not None:
            problems += filter(
                None, [file_problem("models.insightface_pack", m.insightface_pack, file=False)]
            )
        for i, g in enumerate(self.gates):
            if isinstance(g, EbikeGateConfig) and g.detector.file is not None:
                problems += filter(
                    None, [file_problem(f"gates[{i}].detector.file", g.detector.file, file=True)]
                )
        if self.sync.enabled:
            problems += self.sync.missing_files()
        problems += self.status.missing_files()
        problems += missing_providers(self.run)
        for i, r in enumerate(self.readers):
            try:
                r.key()
            except ValueError as exc:
                problems.append(f"readers[{i}].{exc}")
        return problems

    def cross_check(self) -> list[str]:
        """References between sections, reported with the key path of the referring field."""
        errors: list[str] = []
        for section, names in (
            ("cameras", [c.name for c in self.cameras]),
            ("boards", [b.name for b in self.boards]),
            ("outputs", [o.name for o in self.outputs]),
            ("inputs", [i.name for i in self.inputs]),
            ("doors", [d.name for d in self.doors]),
            ("barriers", [b.name for b in self.barriers]),
            ("elevators", [e.name for e in self.elevators]),
            ("gates", [g.name for g in self.gates]),
            ("readers", [r.name for r in self.readers]),
        ):
            seen: set[str] = set()
            for i, item in enumerate(names):
                if item in seen:
                    errors.append(f"{section}[{i}].name: duplicate name '{item}'")
                seen.add(item)
        cameras = {c.name for c in self.cameras}
        doors = {d.name for d in self.doors}
        elevators = {e.name for e in self.elevators}
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
            if inp.role == "ebike_detected" and inp.elevator not in elevators:
                errors.append(
                    f"inputs[{i}].elevator: an ebike_detected input needs a known elevator "
                    f"(got {inp.elevator!r})"
                )
        for i, cam in enumerate(self.push.cameras):
            if cam.elevator not in elevators:
                errors.append(f"push.cameras[{i}].elevator: unknown elevator '{cam.elevator}'")
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
        errors += self.access_problems(doors)
        for i, g in enumerate(self.gates):  # gates may share a camera: it is opened once
            if g.camera not in cameras:
                errors.append(f"gates[{i}].camera: unknown camera '{g.camera}'")
            if isinstance(g, FaceGateConfig) and g.door not in doors:
                errors.append(f"gates[{i}].door: unknown door '{g.door}'")
            if isinstance(g, PlateGateConfig) and g.barrier not in {b.name for b in self.barriers}:
                errors.append(f"gates[{i}].barrier: unknown barrier '{g.barrier}'")
            if isinstance(g, EbikeGateConfig) and g.elevator not in elevators:
                errors.append(f"gates[{i}].elevator: unknown elevator '{g.elevator}'")
        gate_names = {g.name for g in self.gates}
        errors += [
            f"run.gate_max_fps.{name}: unknown gate '{name}'"
            for name in self.run.gate_max_fps
            if name not in gate_names
        ]
        errors += self._reader_errors(doors)
        return errors + self.status.problems() + self._analysis_refs(doors, cameras)

    def access_problems(self, doors: set[str]) -> list[str]:
        """The ``[access]`` section's door references."""
        errors = [f"access.doors[{i}].door: unknown door '{d.door}'"
                  for i, d in enumerate(self.access.doors) if d.door not in doors]
        errors += [f"access.door_groups.{g}: unknown door '{d}'"
                   for g, members in self.access.door_groups.items() for d in members
                   if d not in doors]
        return errors

    def _analysis_refs(self, doors: set[str], cameras: set[str]) -> list[str]:
        """The analysis section's references: tailgate doors and cameras, exit gates, sensors'
        fault inputs."""
        errors = []
        for i, t in enumerate(self.analysis.tailgate):
            if t.door not in doors:
                errors.append(f"analysis.tailgate[{i}].door: unknown door '{t.door}'")
            if t.camera not in cameras:
                errors.append(f"analysis.tailgate[{i}].camera: unknown camera '{t.camera}'")
            elif t.camera not in {g.camera for g in self.gates}:
                errors.append(f"analysis.tailgate[{i}].camera: camera '{t.camera}' serves no "
                              "gate (the watch uses the frames of the gate on it)")
        faces = {g.name for g in self.gates if isinstance(g, FaceGateConfig)}
        for i, name in enumerate(self.analysis.not_back.exit_gates):
            if name not in faces:
                errors.append(f"analysis.not_back.exit_gates[{i}]: unknown face gate '{name}'")
        boards = {b.name: b for b in self.boards}
        for i, inp in enumerate(self.inputs):
            b = boards.get(inp.board)
            if inp.fault_index is not None and b is not None and inp.fault_index >= b.inputs:
                errors.append(
                    f"inputs[{i}].fault_index: board '{inp.board}' has {b.inputs} input(s)"
                )
        return errors

    def _reader_errors(self, doors: set[str]) -> list[str]:
        """A reader's door must exist; readers sharing a port are one bus: one baud, distinct
        addresses."""
        errors: list[str] = []
        buses: dict[str, tuple[int, dict[int, str]]] = {}
        for i, r in enumerate(self.readers):
            if r.door not in doors:
                errors.append(f"readers[{i}].door: unknown door '{r.door}'")
            baud, addresses = buses.setdefault(r.port, (r.baud, {}))
            if r.baud != baud:
                errors.append(
                    f"readers[{i}].baud: port {r.port} runs at {baud} for another reader"
                )
            if r.address in addresses:
                errors.append(
                    f"readers[{i}].address: address {r.address} on {r.port} is already "
                    f"reader '{addresses[r.address]}'"
                )
            addresses.setdefault(r.address, r.name)
        return errors


def missing_providers(run: RunConfig) -> list[str]:
    """``run.providers.<model>: ...`` for each provider this device's onnxruntime does not
    offer (a CUDA chain copied to a Pi): a line naming it at start, not a silent CPU fallback.
    onnxruntime is imported only when a config asks for something besides the CPU."""
    wanted = {p for chain in run.providers.values() for p in chain} - {"CPUExecutionProvider"}
    if not wanted:
        return []
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [
        f"run.providers.{model}: execution provider '{p}' is not available in this onnxruntime "
        f"(available: {', '.join(available)})"
        for model, chain in run.providers.items()
        for p in chain
        if p not in available
    ]


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
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        # the unions' tags, not keys in the file
        elif i == 2 and part in {"gates": GATE_TAGS, "boards": BOARD_TAGS}.get(str(loc[0]), ()):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


SECRET_KEYS = re.compile(r"secret|scbk|password")  # a rejected value of these is not echoed


def _secret(err: Any) -> bool:
    """Whether the problem is with a secret's value: echoing it would put a key, half-typed or
    not, into a terminal scrollback or a journal."""
    last = next((p for p in reversed(err["loc"]) if isinstance(p, str)), "")
    return bool(SECRET_KEYS.search(last))


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: ``key.path: message (got value)``."""
    lines = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and not isinstance(err["input"], (dict, list)) and not _secret(err):
            msg = f"{msg} (got {shown(repr(err['input']), 80)})"
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
