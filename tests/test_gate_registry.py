"""Gate kinds are plug-ins: the config union is derived from `config.gates.GATE_KINDS`, each kind's
code is the package `gatectl.gates.<kind>` declaring ``KIND``, and `App.gate`, replay and the
health collector know nothing more. A toy kind registered the same way goes through the very
replay loop `gatectl replay` uses, on real images."""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pytest
from pydantic import Field

from gatectl.config import Config, parse_config
from gatectl.config.gates import GATE_KINDS, GATE_TAGS, GateConfigBase
from gatectl.config.base import ConfigError
from gatectl.gates.base import Decision, GateKind, GateParts
from gatectl.gates.registry import gate_kind
from gatectl.runtime.replay import replay
from tests.conftest import FACES, NOFACE


def test_the_gates_union_is_derived_from_gate_kinds():
    union = typing.get_args(typing.get_args(Config.model_fields["gates"].annotation)[0])[0]
    assert typing.get_args(union) == GATE_KINDS
    assert GATE_TAGS == {"face", "plate", "ebike"}


@pytest.mark.parametrize("schema", GATE_KINDS, ids=lambda k: k.model_fields["kind"].default)
def test_every_kind_has_its_package_with_a_kind_entry(schema):
    cfg = schema.model_construct(kind=schema.model_fields["kind"].default, name="g", camera="c")
    kind = gate_kind(cfg)
    assert isinstance(kind, GateKind) and callable(kind.build) and callable(kind.replay)


def test_an_error_inside_a_gate_names_the_file_key_not_the_union_tag():
    with pytest.raises(ConfigError) as err:
        parse_config({"cameras": [{"name": "c", "source": "0"}], "outputs": [{"name": "d", "channel": 0}],
                      "doors": [{"name": "d", "output": "d"}],
                      "gates": [{"kind": "face", "name": "g", "camera": "c", "door": "d",
                                 "thresholds": {"match": 7}}]})
    assert err.value.lines[0].startswith("gates[0].thresholds.match: ")


class ToyGateConfig(GateConfigBase):
    kind: Literal["toy"] = Field("toy", description="Gate kind.")


@dataclass(frozen=True)
class ToyDecision(Decision):
    bright: bool

    def as_json(self) -> dict[str, Any]:
        return {**super().as_json(), "bright": self.bright}


class ToyGate:
    """Decides once per input whether the picture is bright: a kind with no model at all."""

    def __init__(self, cfg: ToyGateConfig):
        self.cfg = cfg
        self.frames = 0
        self.decided = False

    def process(self, image: np.ndarray, t: float) -> Sequence[Decision]:
        self.frames += 1
        if self.decided:
            return []
        self.decided = True
        mean = float(image.mean())
        return [ToyDecision(self.cfg.name, "seen", "first frame", mean / 255, bright=mean > 100)]

    def reset(self) -> None:
        self.decided = False

    def flush(self, t: float) -> Sequence[Decision]:
        return []

    def health(self) -> dict[str, Any]:
        return {"frames": self.frames}


class ToyReplay:
    def __init__(self, gate: ToyGate):
        self.source: str | None = None

    def begin(self, source: str) -> None:
        self.source = source

    def frame(self, frame, decisions: Sequence[Decision]) -> list[dict[str, Any]]:
        return [{"source": self.source, **d.as_json()} for d in decisions]

    def end(self) -> list[dict[str, Any]]:
        return []


def build_toy(parts: GateParts, cfg: ToyGateConfig) -> ToyGate:
    return ToyGate(cfg)


@pytest.fixture
def toy_kind(monkeypatch):
    """`gatectl/gates/toy/__init__.py` with its ``KIND`` line, as a new kind's package would be."""
    module = types.ModuleType("gatectl.gates.toy")
    module.KIND = GateKind(build=build_toy, replay=ToyReplay)
    monkeypatch.setitem(sys.modules, "gatectl.gates.toy", module)


def test_a_new_kind_runs_through_app_gate_and_the_one_replay_loop(app, toy_kind):
    app.cfg = app.cfg.model_copy(update={"gates": [ToyGateConfig(name="visitors", camera="cam0")]})
    gate = app.gate(app.cfg.gates[0])
    assert isinstance(gate, ToyGate)
    rows: list[dict] = []
    photos = [str(FACES / "rose_leslie_01.jpg"), str(NOFACE / sorted(p.name for p in NOFACE.iterdir())[0])]
    assert replay(app, photos, None, rows.append) == 0
    assert [r["source"] for r in rows] == photos  # reset between inputs: one decision each
    assert all(r["gate"] == "visitors" and r["decision"] == "seen" and isinstance(r["bright"], bool)
               for r in rows)
    assert gate.frames == 0  # replay built its own gate through the registry, as `run` does


def test_a_kind_with_a_schema_but_no_package_fails_at_build():
    cfg = ToyGateConfig(name="g", camera="c")
    with pytest.raises(ModuleNotFoundError, match="gatectl.gates.toy"):
        gate_kind(cfg)
