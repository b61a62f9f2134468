"""The ``[access]`` section: which credentials open each door and when (policies, schedules,
groups of residents), visitor-pass door groups, and the limits of PINs, QR codes and TOTP codes.

The rules themselves are `gatectl.domain.door_policy`; this module only checks the text parses,
so a typo in a policy fails `config check` instead of locking a door."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from gatectl.config.base import MAX_ITEMS, Name, Strict
from gatectl.domain.door_policy import Rule, Window, parse_clock, parse_days, parse_rule


def _policy(text: str) -> str:
    parse_rule(text)
    return text


def _days(text: str) -> str:
    parse_days(text)
    return text


def _clock(text: str) -> str:
    parse_clock(text)
    return text


Policy = Annotated[
    str,
    Field(min_length=1, max_length=200),
    AfterValidator(_policy),
]


class WindowConfig(Strict):
    days: Annotated[str, Field(max_length=64), AfterValidator(_days)] = Field(
        "mon-sun", description="Days: mon..sun, ranges (mon-fri), commas (sat,sun)."
    )
    start: Annotated[str, Field(max_length=5), AfterValidator(_clock)] = Field(
        "00:00", description="Local opening time HH:MM."
    )
    end: Annotated[str, Field(max_length=5), AfterValidator(_clock)] = Field(
        "24:00", description="Local closing time HH:MM (before start: runs past midnight)."
    )

    def window(self) -> Window:
        return Window(parse_days(self.days), parse_clock(self.start), parse_clock(self.end))


class ScheduleConfig(Strict):
    name: Name = Field(description="Referenced by doors and groups.")
    windows: list[WindowConfig] = Field(
        min_length=1, max_length=32, description="Weekly windows; open when any one is."
    )

    def parsed(self) -> list[Window]:
        return [w.window() for w in self.windows]


class DoorAccessConfig(Strict):
    """One door's credential policy (a door not listed here: ``face`` at all times)."""

    door: Name = Field(description="The door (doors[].name).")
    policy: Policy = Field(
        "face", description="Credentials that open it: face, card, pin, qr, totp; '|' any, '+' all."
    )
    schedule: Name | None = Field(
        None, description="When `policy` applies (a schedule name); None: always."
    )
    off_policy: Policy | None = Field(
        None, description="Outside `schedule`: this policy instead; None: no credential opens it."
    )
    face_refused: Policy = Field(
        "card|totp|qr",
        description="What a resident who refused face recognition shows instead of a face.",
    )
    within_s: float = Field(
        10.0, gt=0, le=120, description="Factors of a '+' policy must all come within this."
    )

    def rule(self) -> Rule:
        return parse_rule(self.policy)


class GroupConfig(Strict):
    """Residents (by unit pattern or id) who may use some doors only on a schedule."""

    name: Name = Field(description="The group's name (logs and events).")
    units: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=64, description="Unit patterns (fnmatch: 'B2-*')."
    )
    residents: list[Annotated[int, Field(ge=1, le=2**53)]] = Field(
        default_factory=list, max_length=1024, description="Resident ids on this device."
    )
    schedule: Name = Field(description="When members may pass.")
    doors: list[Name] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Doors it applies to; empty: all."
    )


class PinConfig(Strict):
    max_failures: int = Field(
        5, ge=1, le=100, description="Wrong PINs at one door within window_s before it locks out."
    )
    window_s: float = Field(60.0, ge=1, le=3600, description="Counting window of wrong PINs.")
    lockout_s: float = Field(
        300.0, ge=1, le=86400, description="How long the door refuses every PIN after that."
    )


class QrConfig(Strict):
    every_n_frames: int = Field(
        3, ge=1, le=100, description="The face gate looks for QR codes in one frame in N."
    )
    repeat_s: float = Field(
        5.0, ge=0.5, le=600, description="The same code seen again within this is one showing."
    )


class TotpConfig(Strict):
    window_steps: int = Field(
        1, ge=0, le=3, description="Codes of this many 30 s steps before/after now accepted."
    )


class AccessConfig(Strict):
    doors: list[DoorAccessConfig] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Per-door credential policies."
    )
    schedules: list[ScheduleConfig] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Named weekly schedules."
    )
    groups: list[GroupConfig] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Residents on schedules."
    )
    door_groups: dict[Name, list[Name]] = Field(
        default_factory=dict, max_length=MAX_ITEMS, description="Names a visitor pass may use."
    )
    utc_offset_minutes: int = Field(
        480, ge=-720, le=840, description="The site's local time for schedules (China: +480)."
    )
    pin: PinConfig = Field(PinConfig(), description="PIN brute-force limits.")
    qr: QrConfig = Field(QrConfig(), description="QR codes on the face gate's camera.")
    totp: TotpConfig = Field(TotpConfig(), description="Residents' rotating codes.")

    @model_validator(mode="after")
    def _references(self) -> AccessConfig:
        names = {s.name for s in self.schedules}
        for i, d in enumerate(self.doors):
            if d.schedule is not None and d.schedule not in names:
                raise ValueError(f"doors[{i}].schedule: unknown schedule '{d.schedule}'")
            if d.off_policy is not None and d.schedule is None:
                raise ValueError(f"doors[{i}].off_policy: needs a schedule")
        for i, g in enumerate(self.groups):
            if g.schedule not in names:
                raise ValueError(f"groups[{i}].schedule: unknown schedule '{g.schedule}'")
        return self

    def door(self, name: str) -> DoorAccessConfig:
        """The door's policy, or the default (face only) for a door not listed."""
        return next((d for d in self.doors if d.door == name), DoorAccessConfig(door=name))

    def schedule(self, name: str) -> list[Window]:
        return next(s for s in self.schedules if s.name == name).parsed()
