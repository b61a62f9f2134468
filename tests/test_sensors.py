"""Sensor inputs on the pty relay-board simulator through the real Modbus driver, on a fed
clock: one alert per debounced change, none for a bounce, ``silent`` for an open loop."""

from __future__ import annotations

import pytest

from gatectl.analysis.sensors import Debounce, SensorWatch
from gatectl.config import parse_config
from gatectl.config.base import ConfigError
from gatectl.config.hardware import ModbusBoardConfig
from gatectl.hw.serial.port import SerialBoard
from gatectl.hw.serial.sim import SimulatedBoard
from gatectl.store import Store
from gatectl.store.recorder import EventRecorder
from tests.conftest import wait_for

LEAK, HYDRANT, HYDRANT_FAULT = 2, 5, 6

SITE = {"inputs": [
    {"name": "pump_room_leak", "index": LEAK, "role": "sensor", "severity": "critical",
     "debounce_s": 0.5},
    {"name": "hydrant_b3", "index": HYDRANT, "role": "sensor", "fault_index": HYDRANT_FAULT,
     "debounce_s": 1.0},
]}


class Clock:
    t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rig(tmp_path):
    sim = SimulatedBoard(baud=115200)
    board = SerialBoard(ModbusBoardConfig(port=sim.port, baud=115200, timeout_ms=50, poll_ms=30))
    store = Store(tmp_path / "g.db", publish=True)
    clock = Clock()
    wait_for(lambda: board.inputs() is not None, 5, "board online")
    watch = SensorWatch(parse_config(SITE).inputs, {"main": board},
                        EventRecorder(store, tmp_path / "snaps"), clock)
    yield sim, board, clock, store, watch
    board.close()
    sim.stop()
    store.close()


def set_input(sim, board, index: int, on: bool) -> None:
    sim.set_input(index, on)
    wait_for(lambda: (board.inputs() or [None] * 8)[index] is on, 5, f"input {index} read as {on}")


def run(clock: Clock, watch: SensorWatch, seconds: float, step: float = 0.1) -> None:
    for _ in range(round(seconds / step)):
        clock.t += step
        watch.poll()


def alerts(store: Store) -> list[tuple[str, str]]:
    return [(e.gate, e.reason) for e in store.events(kind="alert")]


def test_each_change_is_one_alert_after_debounce_and_synced(rig):
    sim, board, clock, store, watch = rig
    run(clock, watch, 1.5)  # the starting state: all normal, nothing raised
    assert alerts(store) == []
    set_input(sim, board, LEAK, True)
    run(clock, watch, 0.3)
    assert alerts(store) == []  # not held for debounce_s yet
    run(clock, watch, 2.0)
    assert alerts(store) == [("pump_room_leak", "sensor: pump_room_leak (critical) active")]
    set_input(sim, board, LEAK, False)
    run(clock, watch, 2.0)
    set_input(sim, board, LEAK, True)
    run(clock, watch, 2.0)
    assert [r for _, r in alerts(store)] == [
        "sensor: pump_room_leak (critical) active",
        "sensor: pump_room_leak (critical) cleared",
        "sensor: pump_room_leak (critical) active",
    ]
    queued = {r[0] for r in store.db.execute("SELECT ref FROM outbox WHERE kind = 'event'")}
    assert {e.id for e in store.events(kind="alert")} <= queued


def test_a_bouncing_input_raises_nothing_extra(rig):
    sim, board, clock, store, watch = rig
    run(clock, watch, 1.5)
    for _ in range(6):  # chatter: each level held 0.2 s, under the 0.5 s debounce
        set_input(sim, board, LEAK, True)
        run(clock, watch, 0.2)
        set_input(sim, board, LEAK, False)
        run(clock, watch, 0.2)
    run(clock, watch, 2.0)
    assert alerts(store) == []
    set_input(sim, board, LEAK, True)  # then a real change, with a bounce before it settles
    run(clock, watch, 0.2)
    set_input(sim, board, LEAK, False)
    run(clock, watch, 0.1)
    set_input(sim, board, LEAK, True)
    run(clock, watch, 2.0)
    assert alerts(store) == [("pump_room_leak", "sensor: pump_room_leak (critical) active")]


def test_an_open_supervised_loop_is_one_silent_alert(rig):
    sim, board, clock, store, watch = rig
    run(clock, watch, 1.5)
    set_input(sim, board, HYDRANT_FAULT, True)  # the cable is cut: the loop module says so
    set_input(sim, board, HYDRANT, True)  # and the dead line's level means nothing
    run(clock, watch, 3.0)
    assert alerts(store) == [
        ("hydrant_b3", "silent: hydrant_b3 (warning) reads open-circuit: no longer supervised")]
    assert watch.health()["silent"] == ["hydrant_b3"]
    set_input(sim, board, HYDRANT, False)
    set_input(sim, board, HYDRANT_FAULT, False)
    run(clock, watch, 3.0)
    assert [r for _, r in alerts(store)][1:] == ["sensor: hydrant_b3 (warning) loop restored"]


def test_a_sensor_active_at_start_is_reported(rig):
    sim, board, clock, store, watch = rig
    set_input(sim, board, LEAK, True)
    run(clock, watch, 1.0)
    assert alerts(store) == [
        ("pump_room_leak", "sensor: pump_room_leak (critical) active at start")]


def test_debounce_is_pure():
    d = Debounce(1.0)
    assert d.update(0.0, False) is None and d.update(1.0, False) is False
    assert d.update(1.5, True) is None and d.update(2.0, False) is None  # bounced back
    assert d.update(3.0, True) is None and d.update(4.0, True) is True


@pytest.mark.parametrize("inp, line", [
    ({"name": "s", "index": 1, "role": "other", "severity": "critical"},
     'inputs[0]: severity, debounce_s and fault_index apply to role = "sensor" only'),
    ({"name": "s", "index": 1, "role": "sensor", "fault_index": 1},
     "inputs[0]: fault_index must be another input than index"),
    ({"name": "s", "index": 1, "role": "sensor", "fault_index": 9},
     "inputs[0].fault_index: board 'main' has 8 input(s)"),
])
def test_sensor_config_mistakes_are_one_line(inp, line):
    with pytest.raises(ConfigError) as exc:
        parse_config({"inputs": [inp]})
    assert exc.value.lines == [line]
