"""Replay protection that survives clock changes (issue 12): a captured door.open is refused
after its nonce was pruned and the device clock was set back, within one process (monotonic
clock) and across a restart (the persisted high-water mark of accepted issue times)."""

from __future__ import annotations

import time

from gatectl.runtime.app import App, simulated_boards
from gatectl.config import parse_config
from gatectl.store import Store
from gatectl.sync.signing import (
    ClockGuard,
    MemoryNonceStore,
    Verifier,
    generate_private_key,
    public_key_b64,
    sign_command,
)
from tests.conftest import FakeClock, wait_for
from tests.test_inbound import Attacker
from tests.test_signing import DEVICE, NOW, rejected, signed
from tests.test_sync import Device, pulses, sync_cfg


class Mono:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def verifier_on(store, key, mono: Mono) -> Verifier:
    return Verifier({"k1": key.public_key()}, DEVICE, store, max_ttl_s=300, skew_s=30,
                    clock_guard=ClockGuard(30, mono))


def test_pruned_nonce_plus_clock_set_back_is_refused_by_the_high_water_mark(tmp_path):
    key = generate_private_key()
    mono = Mono()
    store = Store(tmp_path / "s.db")
    v = verifier_on(store, key, mono)
    captured = signed(key)
    v.verify(captured, NOW)
    # an hour later another command is accepted; the old implementation pruned the captured
    # nonce at this point (its exp is long past on the wall clock)
    mono.t += 3600
    v.verify(signed(key, now=NOW + 3600), NOW + 3600)
    store.close()
    # the device restarts with its clock set back to just after the capture (fake-hwclock,
    # forged NTP): a fresh process, a fresh monotonic clock, the same SQLite file
    store = Store(tmp_path / "s.db")
    v = verifier_on(store, key, Mono())
    err = rejected(v, captured, now=NOW + 10)
    assert err.reason in ("stale", "clock_untrusted"), err
    store.close()


def test_nonces_outlive_the_ttl_whatever_the_wall_clock_does(tmp_path):
    key = generate_private_key()
    mono = Mono()
    v = verifier_on(MemoryNonceStore(), key, mono)
    captured = signed(key)
    v.verify(captured, NOW)
    # the wall clock jumps a day ahead and a command is accepted there (the old store then
    # pruned every nonce whose exp had passed), then back again, while only seconds pass on
    # the monotonic clock
    mono.t += 5
    v.verify(signed(key, now=NOW + 86400), NOW + 86400)
    mono.t += 5
    err = rejected(v, captured, now=NOW + 12)
    assert err.reason in ("replayed", "clock_untrusted"), err


def test_stale_command_older_than_the_newest_minus_the_ttl_is_refused():
    key = generate_private_key()
    v = verifier_on(MemoryNonceStore(), key, Mono())
    v.verify(signed(key, now=NOW + 20), NOW + 20)
    old = signed(key, now=NOW - 270, ttl_s=300)  # within the TTL of the newest: accepted
    assert v.verify(old, NOW + 9)["id"] == old["id"]
    older = signed(key, now=NOW - 290, ttl_s=300)  # still valid by its own expiry (NOW + 10)
    assert rejected(v, older, now=NOW + 5).reason == "stale"


def test_wall_clock_going_back_is_noticed_and_refuses_until_the_centre_proves_the_time(caplog):
    key = generate_private_key()
    mono = Mono()
    v = verifier_on(MemoryNonceStore(), key, mono)
    v.verify(signed(key), NOW)
    mono.t += 60
    # the wall clock is set back an hour: a replay of something captured an hour ago, and a
    # genuine new command alike, are refused, and the jump is logged once
    back = NOW + 60 - 3600
    for _ in range(3):
        assert rejected(v, signed(key, now=back), now=back).reason == "clock_untrusted"
    lines = [r for r in caplog.records if "wall clock" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelname == "ERROR", [r.getMessage() for r in lines]
    # NTP corrects the clock: the centre's next command, newer than any accepted and agreeing
    # with the device clock, restores trust and is executed
    mono.t += 1
    fixed = NOW + 61
    assert v.verify(signed(key, now=fixed), fixed)["device"] == DEVICE
    assert v.verify(signed(key, now=fixed + 1), fixed + 1)


def test_clock_behind_the_newest_accepted_command_after_a_restart_is_untrusted(tmp_path):
    key = generate_private_key()
    store = Store(tmp_path / "s.db")
    verifier_on(store, key, Mono()).verify(signed(key), NOW)
    store.close()
    store = Store(tmp_path / "s.db")
    v = verifier_on(store, key, Mono())
    behind = NOW - 7200  # booted with an old fake-hwclock time
    assert rejected(v, signed(key, now=behind), now=behind).reason == "clock_untrusted"
    assert v.verify(signed(key, now=NOW + 5), NOW + 5)  # once the clock has caught up
    store.close()


def test_nonce_table_stays_bounded(tmp_path):
    key = generate_private_key()
    store = Store(tmp_path / "s.db")
    mono = Mono()
    v = verifier_on(store, key, mono)
    for i in range(40):
        t = NOW + i * 100
        mono.t += 100
        v.verify(signed(key, now=t), t)
    n = store.db.execute("SELECT count(*) FROM nonces").fetchone()[0]
    assert n <= 8, n  # only nonces still within the TTL (+ skew) of the newest are kept
    store.close()


def test_replay_on_a_device_after_pruning_and_clock_rollback(tmp_path, broker):
    """Through the real broker: a door.open captured off the wire, the nonces pruned by later
    traffic, the device clock set back: the replay opens nothing."""
    key = generate_private_key()
    clock = FakeClock(time.time())
    cfg = sync_cfg(broker, "dev-r", {"k1": public_key_b64(key)})
    cfg |= {"outputs": [{"name": "door"}], "doors": [{"name": "front", "output": "door"}]}
    dev = Device.__new__(Device)
    dev.cfg = parse_config(cfg)
    dev.app = App(dev.cfg, tmp_path / "r", boards=simulated_boards(dev.cfg), clock=clock)
    dev.client = dev.app.sync_client(dict, lambda: "no reload")
    dev.client.start()
    central = Attacker(broker, "centre")  # plays the centre: signed commands, MQTT 5 request/response
    try:
        wait_for(dev.client.connected.is_set, 10, "the device to connect")
        captured = sign_command(key, "k1", "dev-r", "door.open", {"door": "front"}, now=clock.t)
        assert central.command("dev-r", captured)["ok"]
        assert pulses(dev) == 1
        clock.advance(3600)  # an hour of normal operation; a later command prunes old nonces
        assert central.command("dev-r", sign_command(key, "k1", "dev-r", "door.open", {"door": "front"},
                                                     now=clock.t))["ok"]
        assert pulses(dev) == 2
        clock.t = captured["iat"] + 5  # the device clock is set back
        resp = central.command("dev-r", captured)
        assert resp["ok"] is False and resp["error"].split(":")[1].strip() in ("stale", "clock_untrusted"), resp
        assert pulses(dev) == 2
    finally:
        central.close()
        dev.close()
