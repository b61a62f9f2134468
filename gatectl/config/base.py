"""The one strict base every config schema is built on (unknown keys forbidden), the field
types they share, and the one config error (a line per problem, naming the key)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from gatectl.core.errors import GatectlError


class ConfigError(GatectlError):
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


def file_problem(key: str, path: Path, file: bool) -> str | None:
    """``key: file not found: path`` (or folder / unreadable), None when ``path`` is usable."""
    p = Path(path)
    what = "file" if file else "folder"
    if not (p.is_file() if file else p.is_dir()):
        return f"{key}: {what} not found: {p}"
    if not os.access(p, os.R_OK | (0 if file else os.X_OK)):
        return f"{key}: cannot read {what} {p} (permission denied)"
    return None
