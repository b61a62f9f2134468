"""Model registry: which file each model is, its sha256, and how its onnxruntime session is made.

Weights are verified before a session is created, so a truncated copy or a swapped file on an
SD card fails at start with one line naming the file, instead of producing silent garbage.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from gatectl.core.errors import GatectlError
from gatectl.core.paths import bundled_models_dir

if TYPE_CHECKING:
    from onnxruntime import InferenceSession


class ModelError(GatectlError):
    """A model is missing, corrupt or unloadable; the message is one line naming the file."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    file: str
    sha256: str
    task: str
    licence: str
    default: bool
    # embedders: (mean, sigma) of the normal fitted to the upper tail of per-identity stranger
    # scores on the dev set (scripts/eval_face.py prints it); sets the gallery-size-aware threshold
    impostor_tail: tuple[float, float] | None = None


def load_registry(models_dir: Path) -> dict[str, ModelSpec]:
    path = models_dir / "models.toml"
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"{path}: model registry not found (models.dir points at the wrong folder?)"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"{path}: unreadable model registry ({exc})") from None
    try:
        return {name: ModelSpec(name=name, **_spec_fields(fields)) for name, fields in data.items()}
    except TypeError as exc:
        raise ModelError(f"{path}: bad model entry ({exc})") from None


def _spec_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A registry entry as ModelSpec keywords (TOML has arrays, the spec a tuple)."""
    return {k: tuple(v) if k == "impostor_tail" else v for k, v in fields.items()}


@cache
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(spec: ModelSpec, models_dir: Path) -> Path:
    """Return the model's path once its sha256 matches the registry; else raise ModelError."""
    path = models_dir / spec.file
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelError(f"{path}: model '{spec.name}' is missing") from None
    digest = _file_sha256(path, st.st_size, st.st_mtime_ns)
    if digest != spec.sha256:
        raise ModelError(
            f"{path}: sha256 mismatch for model '{spec.name}' "
            f"(expected {spec.sha256[:12]}…, got {digest[:12]}…); the file is corrupt or replaced"
        )
    return path


# One session per model file for the whole process: every gate, the enroller and the benchmark
# share them. All sessions run on ONE process-wide onnxruntime thread pool: a gate runs four
# models back to back, and with a pool per session the idle pools spin-wait on the same two
# cores the next model needs (measured here: 60 ms for the four calls with per-session pools,
# 16 ms without spinning, 13 ms on one shared pool).
_SESSIONS: dict[Path, InferenceSession] = {}
_POOL_THREADS: int | None = None


def _shared_pool(threads: int) -> None:
    """Create the global pool once, before the first session; its size is fixed after that."""
    global _POOL_THREADS
    if _POOL_THREADS is None:
        from onnxruntime.capi import _pybind_state

        _pybind_state.set_global_thread_pool_sizes(threads, 1)
        _POOL_THREADS = threads
    elif _POOL_THREADS != threads:
        logging.getLogger("gatectl.models").warning(
            "models.intra_op_threads=%d ignored: the shared pool already has %d threads",
            threads, _POOL_THREADS)


class ModelStore:
    """Opens verified onnxruntime sessions from one models folder, with shared session options."""

    def __init__(self, models_dir: Path | None = None, intra_op_threads: int = 2):
        self.dir = Path(models_dir) if models_dir else bundled_models_dir()
        self.threads = intra_op_threads
        self.registry = load_registry(self.dir)

    def spec(self, name: str) -> ModelSpec:
        try:
            return self.registry[name]
        except KeyError:
            raise ModelError(f"{self.dir / 'models.toml'}: no model named '{name}'") from None

    def path(self, name: str) -> Path:
        return verify(self.spec(name), self.dir)

    def session(self, name: str) -> InferenceSession:
        """A CPU onnxruntime session, created once and shared by every gate that needs it."""
        path = self.path(name)
        key = path.resolve()
        if key not in _SESSIONS:
            _SESSIONS[key] = self._open(name, path)
        return _SESSIONS[key]

    def session_for_file(self, path: Path) -> InferenceSession:
        """A session for a site's own model file (not in the registry, so no sha256 check)."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        key = path.resolve()
        if key not in _SESSIONS:
            _SESSIONS[key] = self._open(path.name, path)
        return _SESSIONS[key]

    def _open(self, name: str, path: Path) -> InferenceSession:
        import onnxruntime as ort

        _shared_pool(self.threads)
        opts = ort.SessionOptions()
        opts.use_per_session_threads = False
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        # onnxruntime raises several private exception types, with no public base but Exception
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: onnxruntime cannot load model '{name}' ({exc})") from None

    def check_all(self) -> list[tuple[ModelSpec, str | None]]:
        """(spec, error or None) for every registered model; used by `gatectl doctor`."""
        out: list[tuple[ModelSpec, str | None]] = []
        for spec in self.registry.values():
            try:
                verify(spec, self.dir)
                out.append((spec, None))
            except ModelError as exc:
                out.append((spec, str(exc)))
        return out
