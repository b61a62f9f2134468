"""Door, barrier and elevator-hold state machines with a fake clock: no hardware, no sleeps."""

from __future__ import annotations

import pytest

from gatectl.config.hardware import DoorConfig
from gatectl.control.actions import Alarm, Latch, Notice, Pulse
from gatectl.control.barrier import BarrierController
from gatectl.control.door import DoorController
from gatectl.control.elevator_hold import ElevatorHold


def kinds(actions) -> list[str]:
    return [a.kind for a in actions if isinstance(a, (Alarm, Notice))]


def door(**kw) -> DoorController:
    return DoorController(DoorConfig(name="d", output="lock", unlock_seconds=5, held_open_s=30, **kw))


# ---- door ------------------------------------------------------------------------------

def test_normal_pass_unlocks_then_relocks_when_the_door_closes():
    d = door()
    assert d.grant(100.0, resident_id=7) == [Pulse("lock", 5)]
    assert d.state(100.0) == "unlocked"
    assert d.contact(101.0, True) == []  # opened while unlocked: no alarm
    assert d.state(101.5) == "open"
    assert d.contact(103.0, False) == [Latch("lock", False)]  # closed: relock before the 5 s end
    assert d.state(103.0) == "locked"
    assert d.contact(104.0, True) == [Alarm("door_forced", "opened while locked, without a grant or exit request")]


def test_unlock_times_out_without_anyone_opening():
    d = door()
    d.grant(0.0)
    assert d.tick(4.9) == [] and d.state(4.9) == "unlocked"
    assert d.tick(5.0) == [] and d.state(5.0) == "locked"  # the board ended the pulse itself
    assert kinds(d.contact(6.0, True)) == ["door_forced"]
    assert d.contact(7.0, False) == []  # already locked: nothing to relock


def test_held_open_alarm_once_then_closed_notice():
    d = door()
    d.grant(0.0)
    d.contact(1.0, True)
    assert d.tick(30.9) == []
    assert kinds(d.tick(31.0)) == ["door_held_open"]
    assert d.state(31.0) == "held_open"
    assert d.tick(60.0) == []  # raised once per opening, not on every tick
    assert kinds(d.contact(65.0, False)) == ["door_closed"]
    d.contact(70.0, True)  # a new (forced) opening re-arms the held-open alarm
    assert kinds(d.tick(100.0)) == ["door_held_open"]


def test_forced_door_without_grant():
    d = door()
    assert kinds(d.contact(10.0, True)) == ["door_forced"]
    assert d.contact(10.5, True) == []  # bouncing contact reports open twice: one alarm
    assert d.state(11.0) == "open"


def test_exit_button_opens_without_a_face_and_is_logged():
    d = door()
    actions = d.exit_request(50.0)
    assert Pulse("lock", 5) in actions and kinds(actions) == ["exit_request"]
    assert d.contact(51.0, True) == []


def test_fail_secure_door_stays_locked_on_fire_alarm():
    d = door()
    actions = d.fire_alarm(0.0, True)
    assert not any(isinstance(a, (Pulse, Latch)) for a in actions) and kinds(actions) == ["fire_alarm"]
    assert d.fire_alarm(1.0, True) == []  # repeated report: nothing new
    assert d.state(1.0) == "locked"


def test_fail_safe_door_released_by_fire_alarm_until_it_clears():
    d = door(fail_mode="safe")
    assert d.fire_alarm(0.0, True)[0] == Latch("lock", True)
    assert d.state(0.0) == "released"
    assert d.contact(1.0, True) == []  # people leaving during a fire are not a forced door
    assert d.grant(2.0) == []  # already released: no pulse that could end the release
    assert d.contact(3.0, False) == []  # closing must not relock during the alarm
    assert d.fire_alarm(10.0, False)[0] == Latch("lock", False)
    assert d.state(10.0) == "locked"


def test_timed_anti_passback_per_resident():
    d = door(anti_passback_s=60)
    assert d.anti_passback_ok(1, 0.0)
    d.grant(0.0, resident_id=1)
    assert not d.anti_passback_ok(1, 30.0)
    assert d.anti_passback_ok(2, 30.0)  # someone else is not affected
    assert d.anti_passback_ok(1, 60.0)
    assert d.anti_passback_ok(None, 1.0)  # exit button / unknown resident: no anti-passback
    assert door().anti_passback_ok(1, 0.0)  # off by default


# ---- elevator hold ---------------------------------------------------------------------

def hold(**kw) -> ElevatorHold:
    return ElevatorHold("hold", "buzzer", pulse_s=3, renew_s=1, release_after_s=5, cap_s=120, **kw)


def test_hold_renewed_with_short_pulses_while_the_ebike_is_seen():
    h = hold()
    actions = h.ebike(0.0)
    assert Pulse("hold", 3) in actions and Pulse("buzzer", 3) in actions
    assert kinds(actions) == ["ebike_in_car", "hold_started"]  # an alert (with the frame), then the hold
    assert h.holding
    renewals = []
    t = 0.0
    while t < 20:
        t = round(t + 0.1, 1)
        h.ebike(t)
        renewals += [a for a in h.tick(t) if a == Pulse("hold", 3)]
    assert 18 <= len(renewals) <= 20  # about one per renew_s, never a latch
    assert h.holding


def test_hold_released_after_the_ebike_is_gone():
    h = hold()
    h.ebike(0.0)
    h.ebike(2.0)
    h.tick(6.9)
    assert h.holding  # gone for 4.9 s only
    actions = h.tick(7.0)  # last seen at 2.0, release_after_s = 5
    assert Latch("hold", False) in actions and Latch("buzzer", False) in actions
    assert kinds(actions) == ["hold_ended"] and not h.holding
    assert h.tick(8.0) == []
    assert kinds(h.ebike(9.0)) == ["hold_resumed"]  # seen again within the episode: same cap
    h.tick(9.5)
    h.tick(14.0)  # paused again
    assert kinds(h.tick(69.0)) == ["ebike_gone"]  # unseen for episode_gap_s: the episode is over
    assert kinds(h.ebike(70.0)) == ["ebike_in_car", "hold_started"]  # a new e-bike: a new episode


def test_hold_capped_releases_and_alarms_and_needs_the_episode_to_end_and_the_cool_down():
    h = hold()
    h.ebike(0.0)
    t, actions = 0.0, []
    while not actions or not any(isinstance(a, Alarm) for a in actions):
        t = round(t + 0.5, 1)
        h.ebike(t)
        actions = h.tick(t)
    assert t == 120.0
    assert Latch("hold", False) in actions and kinds(actions) == ["hold_cap_reached"]
    assert not h.holding
    # still there: buzzer keeps sounding, the doors are not held again
    h.ebike(121.0)
    later = h.tick(121.5)
    assert Pulse("buzzer", 3) in later and Pulse("hold", 3) not in later
    assert h.tick(127.0) == [] and h.ebike(130.0) == []  # a missed detection is not a new e-bike
    assert kinds(h.tick(190.0)) == ["ebike_gone"]  # unseen for episode_gap_s
    assert kinds(h.ebike(200.0)) == ["ebike_in_car", "hold_refused"]  # inside the cool-down
    h.tick(260.0)
    assert kinds(h.ebike(421.0)) == ["ebike_in_car", "hold_started"]  # cool-down over


def test_fire_alarm_releases_the_hold_and_blocks_new_ones():
    h = hold()
    h.ebike(0.0)
    actions = h.fire_alarm(1.0, True)
    assert Latch("hold", False) in actions and not h.holding
    assert h.ebike(2.0) == [] and h.tick(3.0) == []  # no hold, no pulse, while the alarm is on
    assert not any(isinstance(a, Pulse) for t in range(4, 60) for a in [*h.ebike(t), *h.tick(t)])
    h.fire_alarm(60.0, False)
    assert kinds(h.ebike(61.0)) == ["ebike_in_car", "hold_started"]


def test_fire_alarm_active_before_the_ebike():
    h = hold()
    h.fire_alarm(0.0, True)
    assert h.ebike(1.0) == [] and not h.holding


def test_renew_must_be_inside_the_pulse():
    with pytest.raises(ValueError, match="renew_s"):
        ElevatorHold("hold", pulse_s=1, renew_s=1)


# ---- barrier ---------------------------------------------------------------------------

def test_barrier_opens_and_closes_after_the_vehicle_passed():
    b = BarrierController("open", "close", pulse_s=0.5, auto_close_s=30)
    assert b.open(0.0) == [Pulse("open", 0.5)]
    assert b.guard(2.0, True) == []  # vehicle under the arm
    assert b.request_close(3.0) == [Notice("close_deferred", "vehicle under the arm")]
    assert b.state == "open"
    assert b.guard(5.0, False) == [Pulse("close", 0.5)]  # passed: close
    assert b.state == "closing"
    assert b.tick(11.0) == [] and b.state == "closed"


def test_barrier_reopens_when_a_vehicle_enters_under_the_closing_arm():
    b = BarrierController("open", "close", closing_s=6)
    b.open(0.0)
    b.guard(1.0, True)
    b.guard(2.0, False)
    actions = b.guard(3.0, True)  # a second car follows while the arm comes down
    assert Pulse("open", 0.5) in actions and kinds(actions) == ["reopened"]
    assert b.state == "open"


def test_barrier_auto_closes_when_no_vehicle_comes():
    b = BarrierController("open", None, auto_close_s=30)
    b.open(0.0)
    assert b.tick(29.0) == []
    assert b.tick(30.0) == []  # arm closes by itself: nothing to pulse, state follows
    assert b.state == "closing"


def test_remote_release_ends_the_hold_until_the_ebike_has_gone():
    h = hold()
    h.ebike(0.0)
    actions = h.release(10.0)
    assert Latch("hold", False) in actions and Latch("buzzer", False) in actions
    assert kinds(actions) == ["hold_released"] and not h.holding
    h.ebike(11.0)  # the same object still seen: no new hold, no pulses
    assert not any(isinstance(a, Pulse) for a in h.tick(12.0))
    assert h.tick(16.5) == [] and h.ebike(20.0) == []  # the same episode
    assert kinds(h.tick(80.0)) == ["ebike_gone"]
    assert kinds(h.ebike(320.0)) == ["ebike_in_car", "hold_started"]  # after the cool-down
    assert hold().release(0.0) == []  # nothing to release
