"""`[run]`: what `gatectl run` may spend and how it supervises its gates.

CPU is bounded here, not in each gate's section: a device has two cores whatever its gates, so
the frame budget (``max_fps``), the inference threads and the motion pre-filter are one page
of settings. Execution providers are per model (``providers``), CPU unless a site says so.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from gatectl.config.base import MAX_ITEMS, Name, Strict

#: The onnxruntime execution providers a config may name (onnxruntime's own spelling). Whether
#: this device's onnxruntime offers one is checked at start (`Config.startup_problems`).
Provider = Literal[
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "XnnpackExecutionProvider",
    "OpenVINOExecutionProvider",
    "ROCMExecutionProvider",
    "ACLExecutionProvider",
    "ArmNNExecutionProvider",
    "CoreMLExecutionProvider",
    "NnapiExecutionProvider",
    "QNNExecutionProvider",
    "DmlExecutionProvider",
]

DEFAULT_PROVIDERS = "default"  # the key of `run.providers` that applies to every other model


class MotionConfig(Strict):
    """A cheap presence test before any model runs: the frame, shrunk to ``side`` pixels wide
    and grey, against the previous one. An empty corridor then costs a resize per frame."""

    enabled: bool = Field(
        False,
        description="Analyse a frame only after motion (off by default: replay and the tests "
        "feed still images, which never move).",
    )
    side: int = Field(
        64, ge=16, le=320, description="Width the frame is shrunk to for the comparison, 16-320 px."
    )
    pixel_delta: int = Field(
        18, ge=1, le=255,
        description="A shrunk pixel changed when its grey level moved by this much (1-255).",
    )
    min_changed: float = Field(
        0.01, ge=0.0005, le=0.5,
        description="Motion: at least this fraction of the shrunk pixels changed (0.0005-0.5).",
    )
    hold_s: float = Field(
        5.0, ge=0, le=120,
        description="Frames keep being analysed this long after the last motion (0-120 s), so "
        "a person who stops in front of the camera is still recognised.",
    )
    idle_every_s: float = Field(
        0, ge=0, le=3600,
        description="Without motion, still analyse one frame this often (0 = never, up to 1 h).",
    )


class RunConfig(Strict):
    max_fps: float = Field(
        8.0, ge=0.2, le=60,
        description="Frames analysed per second per gate, at most (0.2-60); a camera delivering "
        "more has the excess skipped, counted in the gate's health (skipped_rate).",
    )
    gate_max_fps: dict[Name, float] = Field(
        default_factory=dict, max_length=MAX_ITEMS,
        description="max_fps for the named gates (0.2-60 each), overriding max_fps.",
    )
    intra_op_threads: int | None = Field(
        None, ge=1, le=64,
        description="onnxruntime's process-wide pool (1-64 threads); default models."
        "intra_op_threads.",
    )
    inter_op_threads: int = Field(
        1, ge=1, le=16,
        description="onnxruntime threads running graph branches side by side (1-16); above 1 "
        "the sessions run in parallel mode.",
    )
    providers: dict[str, list[Provider]] = Field(
        default_factory=dict, max_length=MAX_ITEMS,
        description="Execution providers per model name (or 'default'), in order of preference, "
        "e.g. [\"CUDAExecutionProvider\", \"CPUExecutionProvider\"]; CPU when unset.",
    )
    motion: MotionConfig = Field(MotionConfig(), description="The motion pre-filter.")
    restart_after_errors: int = Field(
        5, ge=1, le=1000,
        description="A gate whose frames raise this many times in a row is restarted (1-1000).",
    )
    stall_s: float = Field(
        10.0, ge=1, le=300,
        description="A gate worker with no heartbeat, or failing on every frame, this long "
        "(1-300 s) is restarted.",
    )
    restart_backoff_max_s: float = Field(
        60.0, ge=1, le=3600,
        description="Cap of the doubling wait before each restart of the same gate (1-3600 s; "
        "the first wait is 1 s).",
    )
    trim_heap_s: float = Field(
        60.0, ge=0, le=3600,
        description="Every this many seconds (0: never, up to 3600) the C heap's free pages "
        "go back to the system (glibc malloc_trim), so RSS follows what is in use.",
    )
    stop_timeout_s: float = Field(
        10.0, ge=1, le=30,
        description="On SIGTERM: the longest spent stopping gates and flushing the outbox "
        "(1-30 s; the unit's TimeoutStopSec is longer).",
    )

    @field_validator("gate_max_fps")
    @classmethod
    def _fps_bounded(cls, v: dict[str, float]) -> dict[str, float]:
        for name, fps in v.items():
            if not 0.2 <= fps <= 60:
                raise ValueError(f"gate '{name}': max_fps must be 0.2-60 (got {fps!r})")
        return v

    @field_validator("providers")
    @classmethod
    def _providers_named(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for model, chain in v.items():
            if not 1 <= len(model) <= 64 or not chain or len(chain) > 4:
                raise ValueError(
                    f"'{model[:64]}': a model name (1-64 chars) with 1-4 providers"
                )
        return v

    def fps_of(self, gate: str) -> float:
        return self.gate_max_fps.get(gate, self.max_fps)

    def providers_of(self, model: str) -> list[str]:
        """The providers a model's session asks for: its own, the default, else CPU."""
        chain = self.providers.get(model) or self.providers.get(DEFAULT_PROVIDERS)
        return list(chain) if chain else ["CPUExecutionProvider"]
