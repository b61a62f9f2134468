"""Where bundled files live and where state goes.

A wheel carries the models and demo photos under ``gatectl/_bundled``; a source checkout has them
at the repository root (``models/``, ``tests/data``). State (database, snapshots) goes to
``--data``, else systemd's ``$STATE_DIRECTORY``, else the XDG state folder.
"""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent
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


def default_data_dir() -> Path:
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "gatectl"
