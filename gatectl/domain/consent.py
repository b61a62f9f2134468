"""Consent to face recognition, per resident (the 2025 Measures: separate consent, and face
information stays on the device unless the person separately agrees to more).

``local``: the templates stay on the device that enrolled the person. ``site``: they are
replicated, through the centre, to the site's other devices. No recorded consent counts as
``local``. Withdrawal erases the templates (everywhere they went) and keeps the resident and
their other credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ConsentScope = Literal["local", "site"]
SCOPES: tuple[ConsentScope, ...] = ("local", "site")
BY_MAX = 64  # characters of who recorded the consent


@dataclass(frozen=True)
class Consent:
    """Consent as given at enrollment: its scope and who recorded it (staff, not the resident)."""

    scope: ConsentScope
    by: str


@dataclass(frozen=True)
class ConsentRecord:
    scope: ConsentScope
    by: str
    given_at: float
    withdrawn_at: float | None

    @property
    def replicated(self) -> bool:
        """Whether this person's templates may leave the device."""
        return self.scope == "site" and self.withdrawn_at is None
