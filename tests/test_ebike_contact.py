"""An AI camera as the e-bike detector (issue 15): its alarm contact on a board input with role
``ebike_detected`` feeds the elevator's hold like an e-bike gate - confirmation, cap per
episode, fire-alarm override, events - on the real serial driver and the pty board simulator,
with the controllers on a fed clock."""

from __future__ import annotations

import pytest

from gatectl.config import parse_config
from gatectl.config.base import ConfigError
from gatectl.config.hardware import ModbusBoardConfig
from gatectl.control.controls import Controls
from gatectl.hw.outputs import Outputs
from gatectl.hw.serial import modbus
from gatectl.hw.serial.port import SerialBoard
from gatectl.hw.serial.sim import SimulatedBoard
from gatectl.store import Store
from gatectl.store.recorder import EventRecorder
from tests.conftest import wait_for
from tests.test_controls_service import Clock

HOLD, BUZZER, CAM, FIRE = 2, 3, 4, 7  # relay channels and input indexes on the board

SITE = {
    "outputs": [{"name": "hold", "channel": HOLD}, {"name": "buzzer", "channel": BUZZER}],
    "inputs": [{"name": "cam_alarm", "index": CAM, "role": "ebike_detected", "elevator": "car",
                "confirm_s": 1.0},
               {"name": "fire", "index": FIRE, "role": "fire_alarm"}],
    # renewals every 5 s of 10 s pulses (board-timed, real time): an output that goes off within
    # the test was switched off, it did not lapse
    "elevators": [{"name": "car", "hold_output": "hold", "alarm_output": "buzzer", "pulse_s": 10,
                   "renew_s": 5, "release_after_s": 5, "cap_s": 20}],
}


@pytest.fixture
def rig(tmp_path):
    """SITE's controls on a fed clock, wired to the pty board through the real driver; the
    inputs set before the first poll are its starting states."""
    sim = SimulatedBoard(baud=115200)
    board = SerialBoard(ModbusBoardConfig(port=sim.port, baud=115200, timeout_ms=50, poll_ms=30))
    store = Store(tmp_path / "g.db")
    cfg = parse_config(SITE)
    clock = Clock()

    def start(cam: bool = False) -> Controls:
        """Controls once the driver has read the camera's contact as ``cam``."""
        wait_for(lambda: (board.inputs() or [None] * 8)[CAM] is cam, 5, "board online")
        controls = Controls(cfg, Outputs(cfg.outputs, {"main": board}),
                            EventRecorder(store, tmp_path / "snaps"), clock=clock)
        controls.poll()  # the starting input states
        return controls

    yield sim, clock, store, start
    board.close()
    sim.stop()
    store.close()


def set_input(sim: SimulatedBoard, controls: Controls, name: str, index: int, on: bool) -> None:
    """Change a board input and wait until the driver's input polling has read it."""
    sim.set_input(index, on)
    wait_for(lambda: controls.input_states()[name] is on, 5, f"input {name} read as {on}")


def run(clock: Clock, controls: Controls, seconds: float, step: float = 0.25) -> None:
    """The supervisor's polls over ``seconds`` of the fed clock."""
    for _ in range(round(seconds / step)):
        clock.t += step
        controls.poll()


def held(rig) -> tuple[SimulatedBoard, Clock, Store, Controls]:
    """The rig with the camera's contact closed past confirm_s and the car held."""
    sim, clock, store, start = rig
    controls = start()
    set_input(sim, controls, "cam_alarm", CAM, True)
    run(clock, controls, 1.25)
    wait_for(lambda: sim.coils()[HOLD], 3, "the car held")
    return sim, clock, store, controls


def hold_writes(sim: SimulatedBoard, since: float) -> list[bytes]:
    return [f for f in sim.frames(since) if f[1] == modbus.WRITE_COIL and f[3] == HOLD]


def reasons(store: Store, kind: str) -> list[str]:
    return [e.reason for e in store.events(kind=kind)]


def test_contact_closed_for_the_confirm_time_holds_the_car_and_raises_the_alert(rig):
    sim, clock, store, start = rig
    controls = start()
    set_input(sim, controls, "cam_alarm", CAM, True)
    run(clock, controls, 0.75)  # not yet confirmed
    assert store.events() == [] and not sim.coils()[HOLD]
    run(clock, controls, 0.5)
    wait_for(lambda: sim.coils()[HOLD] and sim.coils()[BUZZER], 3, "the car held, the buzzer on")
    assert reasons(store, "alert") == ["ebike_in_car: e-bike reported by input cam_alarm"]
    assert reasons(store, "control") == ["hold_started: e-bike reported by input cam_alarm"]
    assert controls.health()["elevator:car"] == "holding"
    # the contact opens: the hold pauses after release_after_s, like a camera gate's
    set_input(sim, controls, "cam_alarm", CAM, False)
    run(clock, controls, 5.5)
    wait_for(lambda: not sim.coils()[HOLD], 3, "the hold released")
    assert reasons(store, "control")[-1].startswith("hold_ended: e-bike gone")


def test_a_blip_shorter_than_the_confirm_time_does_nothing(rig):
    """Two closures of 0.5 s with an opening between: more than confirm_s in all, never
    confirm_s in one piece."""
    sim, clock, store, start = rig
    controls = start()
    since = sim.clock()
    for _ in range(2):
        set_input(sim, controls, "cam_alarm", CAM, True)
        run(clock, controls, 0.5)
        set_input(sim, controls, "cam_alarm", CAM, False)
        run(clock, controls, 0.5)
    run(clock, controls, 10)
    assert store.events() == [] and hold_writes(sim, since) == []
    assert not sim.coils()[HOLD] and not sim.coils()[BUZZER]
    assert controls.health()["elevator:car"] == "idle"


def test_a_contact_closed_at_start_is_an_ebike_in_the_car(rig):
    """A restart with a moped in the car: the first reading is a level, not a state to ignore."""
    sim, clock, store, start = rig
    sim.set_input(CAM, True)
    controls = start(cam=True)
    run(clock, controls, 1.25)
    wait_for(lambda: sim.coils()[HOLD], 3, "the car held")
    assert [e.reason.split(":")[0] for e in store.events()] == ["ebike_in_car", "hold_started"]


def test_fire_alarm_releases_the_held_car_and_no_hold_while_it_is_on(rig):
    sim, clock, store, controls = held(rig)
    set_input(sim, controls, "fire", FIRE, True)
    controls.poll()
    wait_for(lambda: not sim.coils()[HOLD] and not sim.coils()[BUZZER], 3,
             "hold and buzzer off at once (a 10 s pulse would still run)")
    since = sim.clock()
    run(clock, controls, 60)  # the camera's contact stays closed all along
    assert hold_writes(sim, since) == [] and not sim.coils()[HOLD]
    assert "fire_alarm: active; hold released" in reasons(store, "control")
    assert reasons(store, "alert") == ["ebike_in_car: e-bike reported by input cam_alarm"]
    # the alarm clears with the e-bike still reported: a new episode, held again
    set_input(sim, controls, "fire", FIRE, False)
    controls.poll()
    wait_for(lambda: sim.coils()[HOLD], 3, "held again once the fire alarm cleared")
    assert reasons(store, "alert")[-1].startswith("ebike_in_car")


def test_cap_reached_releases_the_car_with_an_alert(rig):
    sim, clock, store, controls = held(rig)
    run(clock, controls, 19.5, step=0.5)
    assert sim.coils()[HOLD] and store.events(kind="alert")[-1].reason.startswith("ebike_in_car")
    run(clock, controls, 1.0, step=0.5)  # 20 s of holds: the cap
    wait_for(lambda: not sim.coils()[HOLD], 3, "the doors released at the cap")
    alerts = [r.split(":")[0] for r in reasons(store, "alert")]
    assert alerts == ["ebike_in_car", "hold_cap_reached"]
    assert sim.coils()[BUZZER]  # the alarm keeps sounding while the e-bike is reported
    since = sim.clock()
    run(clock, controls, 60, step=0.5)  # still reported: no new hold in the episode
    assert hold_writes(sim, since) == [] and controls.health()["elevator:car"] == "capped"


NOT_EBIKE = 'inputs[0]: elevator and confirm_s apply to role = "ebike_detected" only'


def test_ebike_contact_config_is_bounded_and_cross_checked():
    base = {"outputs": [{"name": "hold"}], "elevators": [{"name": "car", "hold_output": "hold"}]}
    cam = {"name": "cam", "role": "ebike_detected", "elevator": "car"}
    ok = parse_config({**base, "inputs": [cam]})
    assert ok.inputs[0].confirm_s == 1.0
    bad = [
        ({"name": "cam", "role": "ebike_detected", "elevator": "car9"},
         "inputs[0].elevator: an ebike_detected input needs a known elevator (got 'car9')"),
        ({"name": "cam", "role": "ebike_detected"},
         "inputs[0].elevator: an ebike_detected input needs a known elevator (got None)"),
        ({**cam, "confirm_s": 0}, "inputs[0].confirm_s: Input should be greater than or equal"),
        ({**cam, "confirm_s": 1e9}, "inputs[0].confirm_s: Input should be less than or equal"),
        ({"name": "fire", "role": "fire_alarm", "elevator": "car"}, NOT_EBIKE),
        ({"name": "fire", "role": "fire_alarm", "confirm_s": 2}, NOT_EBIKE),
    ]
    for inp, line in bad:
        with pytest.raises(ConfigError) as exc:
            parse_config({**base, "inputs": [inp]})
        assert len(exc.value.lines) == 1 and exc.value.lines[0].startswith(line), exc.value.lines


def test_running_daemon_holds_the_car_on_the_contact_and_the_fire_alarm_wins(tmp_path):
    """`gatectl run` end to end: the camera's contact holds the car through the supervisor's
    polls; the fire alarm releases it at once (10 s pulses: not a lapse) and shutdown leaves it
    released."""
    import signal

    from tests.test_hw_safety import site_config, start_run

    sim = SimulatedBoard()
    extra = """
[[outputs]]
name = "hold"
channel = 2

[[inputs]]
name = "cam_alarm"
index = 4
role = "ebike_detected"
elevator = "car"
confirm_s = 0.5

[[elevators]]
name = "car"
hold_output = "hold"
pulse_s = 10
renew_s = 5
"""
    cfg = site_config(tmp_path, sim.port, camera_photo=None, extra=extra)
    sim.set_input(CAM, True)
    proc = start_run(cfg, tmp_path / "state")
    try:
        wait_for(lambda: sim.coils()[HOLD], 60, "the car held on the camera's contact", step=0.02)
        sim.set_input(FIRE, True)
        wait_for(lambda: not sim.coils()[HOLD], 3, "the fire alarm to release the car", step=0.02)
        since = sim.clock()
        # the daemon keeps reading both inputs on (30 input polls, ~1 s): still no hold
        wait_for(lambda: sum(f[1] == modbus.READ_INPUTS for f in sim.frames(since)) >= 30, 10,
                 "30 input polls with the fire alarm and the contact on", step=0.02)
        assert hold_writes(sim, since) == [] and not sim.coils()[HOLD]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        sim.stop()
    assert proc.returncode == 0, err
