"""Model registry: which file each model is, its sha256, and how its onnxruntime session is made.

Weights are verified before a session is created, so a truncated copy or a swapped file on an
SD card fails at start with one line naming the file, instead of producing silent garbage.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Callable
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
    # installed by `gatectl models install` into the site's model folder (the state folder),
    # not shipped with the package: the doctor and `gatectl models list` say which is which
    site: bool = False

    @property
    def origin(self) -> str:
        return "site" if self.site else "bundled"


REGISTRY = "models.toml"  # the registry's name in the bundled folder and in the site's


def load_registry(models_dir: Path, site: bool = False) -> dict[str, ModelSpec]:
    """The registry of one models folder; ``site``: the site's own (entries marked as such)."""
    path = models_dir / REGISTRY
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"{path}: model registry not found (models.dir points at the wrong folder?)"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"{path}: unreadable model registry ({exc})") from None
    try:
        return {
            name: ModelSpec(name=name, **{**_spec_fields(fields), "site": site})
            for name, fields in data.items()
        }
    except TypeError as exc:
        raise ModelError(f"{path}: bad model entry ({exc})") from None


def _spec_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A registry entry as ModelSpec keywords (TOML has arrays, the spec a tuple)."""
    return {k: tuple(v) if k == "impostor_tail" else v for k, v in fields.items()}


def file_sha256(path: Path) -> str:
    """The sha256 of a file, remembered per (path, size, mtime) so a restart check is cheap."""
    st = path.stat()
    return _file_sha256(path, st.st_size, st.st_mtime_ns)


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
        digest = file_sha256(path)
    except FileNotFoundError:
        raise ModelError(f"{path}: model '{spec.name}' is missing") from None
    if digest != spec.sha256:
        raise ModelError(
            f"{path}: sha256 mismatch for model '{spec.name}' "
            f"(expected {spec.sha256[:12]}…, got {digest[:12]}…); the file is corrupt or replaced"
        )
    return path


# One session per model file (and provider chain) for the whole process: every gate, the
# enroller and the benchmark share them. All sessions run on ONE process-wide onnxruntime
# thread pool: a gate runs four models back to back, and with a pool per session the idle
# pools spin-wait on the same two cores the next model needs (measured here: 60 ms for the four
# calls with per-session pools, 16 ms without spinning, 13 ms on one shared pool).
_SESSIONS: dict[tuple[Path, tuple[str, ...]], InferenceSession] = {}
_POOL_THREADS: tuple[int, int] | None = None


def _shared_pool(threads: int, inter_threads: int) -> None:
    """Create the global pool once, before the first session; its size is fixed after that."""
    global _POOL_THREADS
    if _POOL_THREADS is None:
        from onnxruntime.capi import _pybind_state

        _pybind_state.set_global_thread_pool_sizes(threads, inter_threads)
        _POOL_THREADS = (threads, inter_threads)
    elif _POOL_THREADS != (threads, inter_threads):
        logging.getLogger("gatectl.models").warning(
            "onnxruntime threads %d/%d (intra/inter) ignored: the shared pool already has %d/%d",
            threads, inter_threads, *_POOL_THREADS)


def _no_providers(model: str) -> list[str]:
    return ["CPUExecutionProvider"]


class ModelStore:
    """Opens verified onnxruntime sessions from the bundled models folder and the site's own
    (``site_dir``: what `gatectl models install` wrote, in the state folder so an upgrade of the
    package keeps it), with shared session options."""

    def __init__(
        self,
        models_dir: Path | None = None,
        intra_op_threads: int = 2,
        site_dir: Path | None = None,
        providers: Callable[[str], list[str]] = _no_providers,
        inter_op_threads: int = 1,
    ):
        """``providers(model name)``: the execution providers its session asks for, in order
        (`config.run.RunConfig.providers_of`); ``inter_op_threads`` > 1 runs graph branches in
        parallel on the shared pool."""
        self.dir = Path(models_dir) if models_dir else bundled_models_dir()
        self.site_dir = Path(site_dir) if site_dir else None
        self.threads = intra_op_threads
        self.inter_threads = inter_op_threads
        self.providers = providers
        self.registry = load_registry(self.dir)
        site = self.site_registry()
        for name in site:  # a site model never silently replaces a bundled one of the same name
            if name in self.registry:
                raise ModelError(
                    f"{self.site_dir}/{REGISTRY}: site model '{name}' has the name of a bundled "
                    "model; reinstall it under another name"
                )
        self.registry.update(site)

    def site_registry(self) -> dict[str, ModelSpec]:
        """The site's installed models (none when the site registry does not exist yet)."""
        if self.site_dir is None or not (self.site_dir / REGISTRY).is_file():
            return {}
        return load_registry(self.site_dir, site=True)

    def dir_of(self, spec: ModelSpec) -> Path:
        return self.site_dir if spec.site and self.site_dir else self.dir

    def spec(self, name: str) -> ModelSpec:
        try:
            return self.registry[name]
        except KeyError:
            where = f"{self.dir / REGISTRY}" + (
                f" or {self.site_dir / REGISTRY}" if self.site_dir else ""
            )
            raise ModelError(f"{where}: no model named '{name}'") from None

    def path(self, name: str) -> Path:
        spec = self.spec(name)
        return verify(spec, self.dir_of(spec))

    def describe(self, name: str) -> str:
        """'name (site, sha256 0123456789ab)': which file a config's model name really is."""
        spec = self.spec(name)
        return f"{name} ({spec.origin}, sha256 {spec.sha256[:12]})"

    def session(self, name: str) -> InferenceSession:
        """An onnxruntime session (on the model's configured providers), created once and
        shared by every gate that needs it: two face doors run one detector session."""
        return self._shared(name, self.path(name))

    def session_for_file(self, path: Path) -> InferenceSession:
        """A session for a site's own model file (not in the registry, so no sha256 check)."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        return self._shared(path.stem, path)

    def _shared(self, name: str, path: Path) -> InferenceSession:
        providers = tuple(self.providers(name))
        key = (path.resolve(), providers)
        if key not in _SESSIONS:
            _SESSIONS[key] = self._open(name, path, providers)
        return _SESSIONS[key]

    def _open(self, name: str, path: Path, providers: tuple[str, ...]) -> InferenceSession:
        import onnxruntime as ort

        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:  # config check says so at start; replay and enrollment land here
            raise ModelError(
                f"run.providers: execution provider '{missing[0]}' for model '{name}' is not "
                f"available in this onnxruntime (available: "
                f"{', '.join(ort.get_available_providers())})"
            )
        _shared_pool(self.threads, self.inter_threads)
        opts = ort.SessionOptions()
        opts.use_per_session_threads = False
        opts.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL
            if self.inter_threads > 1
            else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(str(path), opts, providers=list(providers))
        # onnxruntime raises several private exception types, with no public base but Exception
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: onnxruntime cannot load model '{name}' ({exc})") from None

    def check_all(self) -> list[tuple[ModelSpec, str | None]]:
        """(spec, error or None) for every registered model; used by `gatectl doctor`."""
        out: list[tuple[ModelSpec, str | None]] = []
        for spec in self.registry.values():
            try:
                verify(spec, self.dir_of(spec))
                out.append((spec, None))
            except ModelError as exc:
                out.append((spec, str(exc)))
        return out


def install_site_model(site_dir: Path, name: str, src: Path, task: str) -> ModelSpec:
    """Copy a checked model file into the site's model folder and record its sha256 in the site
    registry, so a config selects it by name and every load verifies it like a bundled one.

    The copy and the registry are each written to a temporary file, fsynced and renamed: a power
    cut leaves the old registry or the new one, never half of one. The copy's sha256 must be the
    source's: a file changing while it was copied is refused.
    """
    import json
    import os
    import shutil

    site_dir.mkdir(parents=True, exist_ok=True)
    digest = file_sha256(src)
    spec = ModelSpec(name=name, file=f"{name}.onnx", sha256=digest, task=task,
                     licence="site's own", default=False, site=True)
    dst = site_dir / spec.file
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    if file_sha256(tmp) != digest:
        tmp.unlink()
        raise ModelError(f"{src}: the file changed while it was copied; install it again")
    os.replace(tmp, dst)
    registry = load_registry(site_dir, site=True) if (site_dir / REGISTRY).is_file() else {}
    registry[name] = spec
    lines = ["# Written by `gatectl models install`: the site's own models, sha256 checked.\n"]
    for s in registry.values():  # JSON strings are valid TOML basic strings
        lines.append(
            f"\n[{json.dumps(s.name)}]\nfile = {json.dumps(s.file)}\n"
            f"sha256 = {json.dumps(s.sha256)}\n"
            f"task = {json.dumps(s.task)}\nlicence = {json.dumps(s.licence)}\ndefault = false\n"
        )
    reg = site_dir / REGISTRY
    tmp_reg = reg.with_name(f".{REGISTRY}.tmp")
    with tmp_reg.open("w", encoding="utf-8") as f:
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp_reg, reg)
    return spec
