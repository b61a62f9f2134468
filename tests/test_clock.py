"""Clock jumps: the watch fed injected (wall, monotonic) readings, and the rules it holds -
the re-enrollment rule of a real face gate and snapshot retention of a running supervisor."""

from __future__ import annotations

import threading
import time

import numpy as np

from gatectl.domain.access import REENROLL
from gatectl.domain.records import DAY_SECONDS
from gatectl.control.clock import ClockWatch
from tests.conftest import FACES, enroll, wait_for
from tests.test_face_gate import pass_photo

T0 = 1_790_000_000.0


class Clocks:
    """A wall and a monotonic clock the test moves separately."""

    def __init__(self):
        self.wall, self.mono = T0, 50.0

    def tick(self, s: float) -> None:
        self.wall += s
        self.mono += s


def watch(c: Clocks, **kw) -> tuple[ClockWatch, list]:
    seen: list = []
    w = ClockWatch(lambda: c.wall, lambda: c.mono, jump_s=60, settle_s=3600, on_change=seen.append, **kw)
    w.observe()
    return w, seen


def test_ticking_and_ntp_slewing_are_not_jumps():
    c = Clocks()
    w, seen = watch(c)
    for _ in range(1000):
        c.tick(5.0)
        c.wall += 0.0025  # 500 ppm, the most NTP slews
        w.observe()
    assert w.trusted and w.jumps == 0 and seen == []
    assert w.rule_time() == c.wall


def test_a_forward_jump_holds_rules_on_the_trusted_time_base_until_it_settles():
    c = Clocks()
    w, seen = watch(c)
    c.tick(10)
    c.wall += 31 * DAY_SECONDS  # no RTC, bad NTP
    jump = w.observe()
    assert jump is not None and round(jump.seconds) == 31 * DAY_SECONDS
    assert jump.describe() == "clock jumped forward by 31.0 days"
    assert not w.trusted and seen == [jump]
    c.tick(100)
    assert w.rule_time() == c.wall - 31 * DAY_SECONDS  # the pre-jump base, advanced by monotonic
    c.tick(3000)
    w.observe()
    assert not w.trusted  # not yet stable for settle_s
    c.tick(601)
    w.observe()
    assert w.trusted and seen[-1] is None and w.rule_time() == c.wall
    assert w.health() == {"trusted": True, "jumps": 1, "last_jump_s": round(31 * DAY_SECONDS, 1),
                          "since_jump_s": None}


def test_a_jump_undone_is_trusted_at_once_and_a_second_jump_restarts_the_wait():
    c = Clocks()
    w, seen = watch(c)
    c.wall += 16 * DAY_SECONDS
    w.observe()
    c.tick(1800)
    c.wall -= 16 * DAY_SECONDS  # NTP corrected the bad step: back on the old base
    w.observe()
    assert w.trusted and w.jumps == 2 and seen[-1].seconds < 0
    c.wall -= 2 * DAY_SECONDS  # backwards this time
    w.observe()
    c.tick(3000)
    c.wall += 600
    w.observe()  # another jump while untrusted: the settle period starts again
    c.tick(3000)
    w.observe()
    assert not w.trusted
    assert abs(w.rule_time() - (c.wall + 2 * DAY_SECONDS - 600)) < 1e-6
    w.confirm()  # an operator or the centre vouches for the new time
    assert w.trusted and seen[-1] is None and w.rule_time() == c.wall


def test_a_clock_jump_does_not_make_every_resident_reenroll(app, clock, relay):
    """A 16-day jump made every resident 're-enrollment required'; a real 16 days still does."""
    enroll(app, "Obama", "obama_01.jpg")
    gate = app.gate(app.cfg.gates[0])
    app.clockwatch.observe()
    clock.jump(16 * DAY_SECONDS)
    [d] = pass_photo(gate, FACES / "obama_02.jpg")
    assert (d.decision, d.reason) == ("granted", "resident")
    assert not app.clockwatch.trusted
    clock.advance(16 * DAY_SECONDS)  # time really passes; the clock settles and is trusted
    gate.reset()
    [d] = pass_photo(gate, FACES / "obama_03.jpg")
    assert (d.decision, d.reason) == ("denied", REENROLL)
    assert app.clockwatch.trusted and len(relay.history) == 1


def test_a_jump_raises_an_alert_and_holds_retention(app, clock):
    """A 31-day jump deleted every snapshot by retention."""
    from gatectl.runtime.runner import Runner

    rec = app.recorder
    evs = [rec.record("lobby", "access", "denied", "unknown face", np.full((32, 32, 3), 99, np.uint8))
           for _ in range(3)]
    runner = Runner(app)
    runner.run_thread = threading.Thread(target=runner.run, daemon=True)
    runner.run_thread.start()
    try:
        wait_for(lambda: runner.workers, timeout=120, what="the gates to start")
        clock.jump(31 * DAY_SECONDS)
        [alert] = wait_for(lambda: app.store.events(kind="alert"), timeout=10, what="the clock alert")
        assert alert.gate == "system" and alert.reason.startswith("clock jumped forward by 31.0 days")
        assert "held until the clock is trusted" in alert.reason
        now = time.monotonic()
        assert runner._retention(now) == now  # held: tried again on the next slow tick
        assert all((app.snapshot_dir / e.snapshot).exists() for e in evs)
        assert [e.snapshot is not None for e in app.store.events(kind="access")] == [True] * 3
        app.clockwatch.confirm()
        runner._retention(time.monotonic())  # the supervisor may run its held retention at the same time
        wait_for(lambda: not any((app.snapshot_dir / e.snapshot).exists() for e in evs), timeout=10,
                 what="retention once the clock is trusted")
    finally:
        runner.stop.set()
        runner.run_thread.join(timeout=30)


def test_an_operator_trusts_the_clock_of_a_running_daemon_with_the_cli(app, clock):
    """`gatectl clock status` / `gatectl clock trust` (the real CLI, another process) on the
    daemon's store: the status says the clock is held, trust is applied by the running
    supervisor within its slow tick, and retention runs again."""
    from gatectl.runtime.runner import Runner
    from tests.conftest import ok, run_cli

    rec = app.recorder
    evs = [rec.record("lobby", "access", "denied", "unknown face", np.full((32, 32, 3), 99, np.uint8))
           for _ in range(2)]
    runner = Runner(app)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: runner.workers, timeout=120, what="the gates to start")
        out = ok(run_cli("clock", "status", data=app.data_dir))
        assert "daemon      trusted; 0 jump(s)" in out, out
        clock.jump(31 * DAY_SECONDS)
        wait_for(lambda: app.store.events(kind="alert"), timeout=10, what="the clock alert")
        out = ok(run_cli("clock", "status", data=app.data_dir))
        assert "NOT trusted: clock jumped forward by 31.0 days" in out and "gatectl clock trust" in out, out
        assert not app.clockwatch.trusted
        assert all((app.snapshot_dir / e.snapshot).exists() for e in evs)  # retention held
        out = ok(run_cli("clock", "trust", "--timeout", "60", data=app.data_dir))
        assert "daemon      trusted; 1 jump(s)" in out, out
        assert app.clockwatch.trusted
        [trusted] = [e for e in app.store.events(kind="system") if "trusted on request" in e.reason]
        assert trusted.gate == "system"
        runner._retention(time.monotonic())  # the supervisor may run its held retention at the same time
        wait_for(lambda: not any((app.snapshot_dir / e.snapshot).exists() for e in evs), timeout=10,
                 what="retention once the clock is trusted")
    finally:
        runner.stop.set()
        thread.join(timeout=30)


def test_clock_trust_without_a_running_daemon_says_so_and_is_moot_for_the_next_start(tmp_path):
    from tests.conftest import one_line_error, run_cli

    line = one_line_error(run_cli("clock", "trust", "--timeout", "0.5", data=tmp_path), code=1)
    assert "no running daemon answered within 0.5 s" in line
    assert "no report in this store" in run_cli("clock", "status", data=tmp_path).stdout


def test_the_centres_signed_clock_trust_needs_its_time_to_agree_with_the_device(tmp_path, clock):
    """A signed `clock.trust` is verified against the device clock: issued at the centre's
    time, it is refused while the device is 31 days ahead (so it cannot bless a wrong clock)
    and accepted when the clocks agree; the supervisor applies it like `gatectl clock trust`."""
    import json

    from gatectl.runtime.app import App, simulated_boards
    from gatectl.config import parse_config
    from gatectl.runtime.runner import Runner
    from gatectl.sync.signing import generate_private_key, public_key_b64, sign_command

    key = generate_private_key()
    cfg = parse_config({"sync": {"enabled": True, "command_keys": {"k1": public_key_b64(key)}}})
    app = App(cfg, tmp_path / "state", boards=simulated_boards(cfg), clock=clock, monotonic=clock.monotonic)
    try:
        client = app.sync_client(dict, lambda: "no reload")  # not started: commands fed directly
        runner = Runner(app)
        app.clockwatch.observe()
        centre_time = clock.t
        clock.jump(31 * DAY_SECONDS)  # the device clock is wrong
        app.clockwatch.observe()
        resp = client.on_command(json.dumps(sign_command(key, "k1", cfg.device.id, "clock.trust", {},
                                                         now=centre_time)).encode())
        assert not resp["ok"] and "expired" in resp["error"], resp
        runner._trust_requests()
        assert not app.clockwatch.trusted
        clock.jump(-31 * DAY_SECONDS + 600)  # NTP fixed it, ten minutes off the old base: still a jump
        app.clockwatch.observe()
        assert not app.clockwatch.trusted
        resp = client.on_command(json.dumps(sign_command(key, "k1", cfg.device.id, "clock.trust", {},
                                                         now=clock.t)).encode())
        assert resp["ok"] and resp["result"].startswith("clock trust requested"), resp
        runner._trust_requests()
        assert app.clockwatch.trusted
    finally:
        app.close()


def test_a_restart_keeps_the_clock_held_and_sees_a_jump_made_while_stopped(tmp_path, clock):
    """A restart after a jump (a crash, the watchdog, config.reload) made a fresh, trusting
    clock watch, and retention ran at once on the jumped clock; a jump while no daemon ran was
    never seen. The previous process's view is resumed from the store within one boot."""
    from gatectl.runtime.app import App, simulated_boards
    from gatectl.config import default_config
    from gatectl.runtime.runner import Runner

    cfg = default_config()

    def start() -> tuple[App, Runner]:
        app = App(cfg, tmp_path / "state", boards=simulated_boards(cfg), clock=clock, monotonic=clock.monotonic)
        runner = Runner(app)
        runner._start_clock()
        return app, runner

    app, runner = start()
    snap = app.recorder.record("lobby", "access", "denied", "unknown face", np.full((32, 32, 3), 9, np.uint8))
    clock.jump(31 * DAY_SECONDS)
    app.clockwatch.observe()
    assert not app.clockwatch.trusted
    app.close()
    clock.advance(30)  # the process is restarted
    app, runner = start()
    try:
        assert not app.clockwatch.trusted
        now = time.monotonic()
        assert runner._retention(now) == now  # still held
        assert (app.snapshot_dir / snap.snapshot).exists()
        # what `gatectl clock status` shows still names the jump the previous process saw
        assert app.store.meta("clock_trusted", "clock_last_jump_s") == {"clock_trusted": 0,
                                                                         "clock_last_jump_s": 31 * 86400}
        clock.advance(3600)  # agreed with the monotonic clock for settle_s in all, across the restart
        app.clockwatch.observe()
        assert app.clockwatch.trusted
    finally:
        app.close()
    clock.advance(60)
    clock.jump(16 * DAY_SECONDS)  # while no daemon ran
    app, runner = start()
    try:
        assert not app.clockwatch.trusted
        [alert] = app.store.events(kind="alert", since=clock.t - 60)
        assert alert.reason.startswith("clock jumped forward by 16.0 days")
        app.store.set_meta({"clock_boot": 12345})  # another boot: its monotonic readings do not compare
    finally:
        app.close()
    app, runner = start()
    try:
        assert app.clockwatch.trusted
    finally:
        app.close()
