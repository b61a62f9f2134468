"""The strict base every config model is built on, apart from the assembled `gatectl.config`.

A leaf (pydantic only) so that a plug-in can define its own config section next to its code -
a relay dialect's board settings live in its `gatectl.hw.serial` module - while `gatectl.config`
derives its unions from the registries that import those modules.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    # inf and nan are never a sensible setting: an infinite timeout is a hang, nan fails every comparison
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                            description="1-64 characters of A-Z a-z 0-9 _ . - (used in topics, logs, references).")]
