"""The gate kinds' code, found from their config: the kind ``k`` is the package `gatectl.gates.k`,
whose ``KIND`` says how to build it and how replay reports it.

The list of kinds is `gatectl.config.gates.GATE_KINDS` (one line per kind, where the config union is
derived from); the code half is imported only for the kinds a config uses, so a device without
plate lanes never loads the plate models' code.
"""

from __future__ import annotations

import importlib

from gatectl.config.gates import GateConfigBase
from gatectl.gates.base import Gate, GateKind, GateParts


def gate_kind(cfg: GateConfigBase) -> GateKind:
    """The plug-in entry of ``cfg``'s kind."""
    kind = getattr(importlib.import_module(f"{__package__}.{cfg.kind}"), "KIND", None)
    if not isinstance(kind, GateKind):
        raise TypeError(f"gatectl.gates.{cfg.kind} declares no KIND = GateKind(...)")
    return kind


def build_gate(parts: GateParts, cfg: GateConfigBase) -> Gate:
    """The pipeline of one configured gate, whatever its kind."""
    return gate_kind(cfg).build(parts, cfg)
