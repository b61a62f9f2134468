"""`control.controls` is the one place that orders "record the event, then move the output" for
every controller action, not only for the gates' grants: the exit button, the elevator hold and
its release. The in-memory board looks at the store at the moment an output moves."""

from __future__ import annotations

import pytest

from gatectl.config import Config
from gatectl.control.controls import Controls
from gatectl.hw.outputs import Outputs
from gatectl.hw.relay import SimulatedRelay
from gatectl.store import Store
from gatectl.store.recorder import EventRecorder

SITE = {
    "outputs": [{"name": "door", "channel": 0}, {"name": "hold", "channel": 3}, {"name": "buzzer", "channel": 4}],
    "inputs": [{"name": "button", "index": 1, "role": "exit_button", "door": "door"}],
    "doors": [{"name": "door", "output": "door"}],
    "elevators": [{"name": "car1", "hold_output": "hold", "alarm_output": "buzzer",
                   "pulse_s": 3, "renew_s": 1, "release_after_s": 5, "cap_s": 120}],
}


class WitnessRelay(SimulatedRelay):
    """The real in-memory board, noting which events the store holds when each output moves."""

    def __init__(self, store: Store, clock):
        super().__init__(clock=clock)
        self.store = store
        self.seen: list[tuple[int, list[str]]] = []

    def pulse(self, channel: int, seconds: float) -> None:
        self.seen.append((channel, [e.reason.split(":")[0] for e in self.store.events()]))
        super().pulse(channel, seconds)

    def set(self, channel: int, on: bool) -> None:
        self.seen.append((channel, [e.reason.split(":")[0] for e in self.store.events()]))
        super().set(channel, on)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rig(tmp_path):
    clock = Clock()
    cfg = Config.model_validate(SITE)
    store = Store(tmp_path / "g.db")
    relay = WitnessRelay(store, clock)
    controls = Controls(cfg, Outputs(cfg.outputs, {"main": relay}), EventRecorder(store, tmp_path / "snap"),
                        clock=clock)
    controls.poll()  # the starting input states
    yield clock, relay, controls
    store.close()


def test_the_exit_button_is_recorded_before_the_door_unlocks(rig):
    clock, relay, controls = rig
    relay.set_input(1, True)
    controls.poll()
    door_moves = [events for channel, events in relay.seen if channel == 0]
    assert door_moves and door_moves[0] == ["exit_request"]


def test_an_elevator_hold_and_its_release_are_recorded_before_the_outputs_move(rig):
    clock, relay, controls = rig
    controls.ebike("car1", None, "motorcycle 0.80 in the car")
    assert relay.seen and relay.seen[0][1] == ["ebike_in_car", "hold_started"]
    clock.t += 1
    before = len(relay.seen)
    controls.release_elevator("car1", "guard")
    released = relay.seen[before:]
    assert released and all("hold_released" in events for _, events in released)


def test_a_remote_door_open_is_recorded_before_the_door_unlocks(tmp_path):
    """The signed `door.open` runs `commands.door_open`: its control event is stored first."""
    from gatectl.sync.commands import CommandContext, door_open
    from gatectl.sync.inbound import DoorArgs

    clock = Clock()
    cfg = Config.model_validate(SITE)
    store = Store(tmp_path / "g.db")
    relay = WitnessRelay(store, clock)
    recorder = EventRecorder(store, tmp_path / "snap")
    controls = Controls(cfg, Outputs(cfg.outputs, {"main": relay}), recorder, clock=clock)
    try:
        ctx = CommandContext(store=store, controls=controls, replicator=None, display=None,  # unused here
                             reload=lambda: "", clock=clock)
        assert door_open(ctx, DoorArgs(door="door")) == "door door unlocked"
        [(channel, events)] = relay.seen
        assert channel == 0 and events == ["door_opened"]
        assert store.events()[0].reason == "door_opened: remote door.open from the centre"
    finally:
        store.close()


def test_a_gate_grant_records_nothing_more_its_decision_came_first(rig):
    clock, relay, controls = rig
    controls.grant("door", 7)
    assert relay.seen == [(0, [])]  # the face gate recorded its access event before calling
