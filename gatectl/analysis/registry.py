"""The pattern rules, one line each: a module of `gatectl.analysis` whose ``RULES`` are
`base.Rule` functions. `engine` runs them all; a new rule is its module and its line here."""

from __future__ import annotations

import importlib

from gatectl.analysis.base import Rule

RULE_MODULES: tuple[str, ...] = (
    "strangers",
    "night",
    "absence",
    "vehicles",
)


def rules() -> list[Rule]:
    """Every registered rule, in the registry's order."""
    out: list[Rule] = []
    for name in RULE_MODULES:
        out += importlib.import_module(f"gatectl.analysis.{name}").RULES
    return out
