"""Where bundled files live and where state goes.

A wheel carries the models and demo photos under ``gatectl/_bundled``; a source checkout has them
at the repository root (``models/``, ``tests/data``).

The CLI must act on the same store as the service, or `sudo gatectl enroll` enrolls someone the
gates never see. So the config is ``--config``, else ``$GATECTL_CONFIG``, else the service's
``/etc/gatectl/gatectl.toml`` if present, else built-in defaults; the state folder (database,
snapshots) is ``--data``, else the config's ``storage.state_dir``, else systemd's
``$STATE_DIRECTORY``, else the service's ``/var/lib/gatectl`` when it exists or the config is the
service's, else the XDG state folder. ``$GATECTL_ROOT`` (default ``/``) prefixes both system
paths, so tests and images built in a chroot never need the real /etc and /var/lib.
"""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent  # gatectl/ (this file is gatectl/core/paths.py)
_REPO = _PKG.parent


def _first_existing(*candidates: Path) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[-1]


def bundled_models_dir() -> Path:
    return _first_existing(_PKG / "_bundled" / "models", _REPO / "models")


def sample_dir() -> Path:
    """Photos the demo replays: the test set's faces and liveness attacks."""
    return _first_existing(_PKG / "_bundled" / "samples", _REPO / "tests" / "data")


def _root() -> Path:
    return Path(os.environ.get("GATECTL_ROOT") or "/")


def system_config_path() -> Path:
    """Where the service's unit reads its config (systemd/gatectl.service)."""
    return _root() / "etc" / "gatectl" / "gatectl.toml"


def system_state_dir() -> Path:
    """The service's StateDirectory=gatectl."""
    return _root() / "var" / "lib" / "gatectl"


def find_config(explicit: str | None) -> tuple[Path | None, str]:
    """(config file or None for built-in defaults, where it came from)."""
    if explicit:
        return Path(explicit), "--config"
    env = os.environ.get("GATECTL_CONFIG")
    if env:
        return Path(env), "$GATECTL_CONFIG"
    system = system_config_path()
    if system.is_file():
        return system, "the service's config"
    return None, f"built-in defaults (no {system})"


def default_data_dir(
    state_dir: Path | None = None, service_config: bool = False
) -> tuple[Path, str]:
    """(state folder, where it came from) when ``--data`` is not given; ``state_dir`` is the
    config's ``storage.state_dir``, ``service_config`` whether the config is the service's own."""
    if state_dir is not None:
        return state_dir, "storage.state_dir"
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]), "$STATE_DIRECTORY"
    system = system_state_dir()
    if service_config or system.is_dir():
        return system, "the service's state folder"
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "gatectl", "no service installed"


def foreign_owner(folder: Path) -> str | None:
    """The user (name, or #uid) owning an existing ``folder``, if that is not us: files we would
    create there (the SQLite WAL and shm files, snapshots) would belong to us and lock the
    service out of its own store. We refuse rather than chown: a chown needs root, and half-done
    it is worse."""
    try:
        uid = folder.stat().st_uid
    except OSError:
        return None
    if uid == os.geteuid():
        return None
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return f"#{uid}"  # how sudo -u names a user without a passwd entry
