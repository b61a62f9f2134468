"""An AI camera that pushes its e-bike detections over HTTP feeds the same hold as a wired
``ebike_detected`` contact: signed reports over a real socket confirm and hold the car (same
confirmation, cap, fire-alarm override); everything unsigned, forged, replayed, stale, malformed
or oversized is refused with its status, counted, and never moves a relay."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import urllib.error
import urllib.request

import pytest

from gatectl.config import ConfigError, parse_config
from gatectl.runtime.app import App, simulated_boards
from gatectl.web.server import HttpServer, ServeError
from tests.test_ebike import Clock

SECRET = secrets.token_hex(32)
HOLD, BUZZER, FIRE = 0, 1, 7


def site(**push) -> dict:
    return {
        "outputs": [{"name": "hold", "channel": HOLD, "max_on_s": 5},
                    {"name": "buzzer", "channel": BUZZER}],
        "inputs": [{"name": "fire", "index": FIRE, "role": "fire_alarm"}],
        "elevators": [{"name": "car_a", "hold_output": "hold", "alarm_output": "buzzer",
                       "release_after_s": 3}],
        "push": {"enabled": True, "port": 0,
                 "cameras": [{"name": "lift1", "elevator": "car_a", "secret": SECRET,
                              "confirm_s": 1.0, "active_s": 2.0}], **push},
    }


@pytest.fixture
def rig(tmp_path):
    cfg = parse_config(site())
    clock = Clock()
    boards = simulated_boards(cfg)
    boards["main"].clock = clock
    app = App(cfg, tmp_path, boards=boards, clock=clock)
    app.controls.clock = clock
    app.controls.poll()  # the starting input states
    server = app.push_server()
    server.start()
    yield app, server, boards["main"], clock
    server.stop()
    app.close()


def body(clock: Clock, ebike: bool = True, nonce: str | None = None, **extra) -> bytes:
    return json.dumps({"t": clock.t, "nonce": nonce or secrets.token_hex(8), "ebike": ebike,
                       **extra}).encode()


def sign(data: bytes, key: str = SECRET) -> str:
    return "sha256=" + hmac.new(bytes.fromhex(key), data, hashlib.sha256).hexdigest()


def post(server: HttpServer, data: bytes, signature: str | None, camera: str = "lift1") -> int:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Signature"] = signature
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/v1/ebike/{camera}", data,
                                 headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def report(server: HttpServer, clock: Clock, ebike: bool = True) -> None:
    data = body(clock, ebike)
    assert post(server, data, sign(data)) == 204


def reasons(app: App, kind: str) -> list[str]:
    return [e.reason for e in app.store.events(kind=kind)]


def test_signed_reports_confirm_and_hold_the_car_and_its_absence_releases_it(rig):
    app, server, relay, clock = rig
    report(server, clock)
    app.controls.poll()
    assert not relay.is_on(HOLD)  # one report: not confirmed yet (confirm_s 1.0)
    for _ in range(3):
        clock.t += 0.5
        report(server, clock)
        app.controls.poll()
    assert relay.is_on(HOLD) and relay.is_on(BUZZER)
    assert reasons(app, "alert") == ["ebike_in_car: e-bike reported by camera lift1"]
    report(server, clock, ebike=False)  # "gone": the contact opens at once
    for _ in range(8):
        clock.t += 0.5
        app.controls.poll()
    assert not relay.is_on(HOLD)
    assert reasons(app, "control")[-1].startswith("hold_ended")


def test_reports_stop_coming_and_the_contact_opens_after_active_s(rig):
    app, server, relay, clock = rig
    for _ in range(4):
        report(server, clock)
        app.controls.poll()
        clock.t += 0.5
    assert relay.is_on(HOLD)
    for _ in range(14):  # no more reports: 2 s active, then release_after_s 3 s
        clock.t += 0.5
        app.controls.poll()
    assert not relay.is_on(HOLD)


def test_the_fire_alarm_wins_over_a_camera_report(rig):
    app, server, relay, clock = rig
    relay.set_input(FIRE, True)
    app.controls.poll()
    for _ in range(6):
        report(server, clock)
        app.controls.poll()
        clock.t += 0.5
    assert not relay.is_on(HOLD)


def test_every_bad_report_is_refused_counted_and_holds_nothing(rig):
    app, server, relay, clock = rig
    good = body(clock)
    stale = json.dumps({"t": clock.t - 120, "nonce": "a" * 16, "ebike": True}).encode()
    deep = b'{"t": 1, "nonce": "bbbbbbbb", "ebike": ' + b"[" * 100 + b"]" * 100 + b"}"
    replayed = body(clock, nonce="c" * 16)
    assert post(server, replayed, sign(replayed)) == 204
    cases = [
        (good, None, "lift1", 401),  # unsigned
        (good, sign(good, secrets.token_hex(32)), "lift1", 401),  # another key
        (good.replace(b"true", b"false"), sign(good), "lift1", 401),  # body changed after signing
        (good, "md5=00", "lift1", 401),
        (good, sign(good), "lift2", 404),  # not a configured camera
        (stale, sign(stale), "lift1", 401),
        (replayed, sign(replayed), "lift1", 409),
        (b"not json", sign(b"not json"), "lift1", 400),
        (deep, sign(deep), "lift1", 400),
        (b'{"t": 1, "nonce": "dddddddd", "ebike": "yes"}', None, "lift1", 401),
        (b"x" * 5000, sign(b"x" * 5000), "lift1", 413),
    ]
    for data, signature, camera, status in cases:
        assert post(server, data, signature, camera) == status, (data[:40], status)
    wrong_type = json.dumps({"t": clock.t, "nonce": "e" * 16, "ebike": "yes"}).encode()
    assert post(server, wrong_type, sign(wrong_type)) == 400
    for _ in range(6):
        clock.t += 0.5
        app.controls.poll()
    assert not relay.is_on(HOLD)  # one accepted report, then nothing: never confirmed
    counts = server.app.state.endpoint.refusals.counts()
    assert counts["refused_push_unsigned"] == 3 and counts["refused_push_bad_signature"] == 2
    assert counts["refused_push_replayed"] == 1 and counts["refused_push_stale"] == 1
    assert counts["refused_push_malformed"] == 2 and counts["refused_push_too_deep"] == 1
    assert counts["refused_push_too_large"] == 1 and counts["refused_push_unknown_camera"] == 1


def test_a_camera_flooding_reports_is_rate_limited(rig):
    app, server, relay, clock = rig
    statuses = []
    for _ in range(40):
        data = body(clock)
        statuses.append(post(server, data, sign(data)))
    assert statuses.count(429) > 0 and statuses[:20] == [204] * 20


def test_config_and_listener_problems_are_one_line(tmp_path, rig):
    bad = site(cameras=[{"name": "lift1", "elevator": "nowhere", "secret": SECRET}])
    with pytest.raises(ConfigError, match=r"push.cameras\[0\].elevator: unknown elevator"):
        parse_config(bad)
    with pytest.raises(ConfigError) as exc:  # a rejected secret is never echoed
        parse_config(site(cameras=[{"name": "lift1", "elevator": "car_a", "secret": "abcdef"}]))
    assert exc.value.lines == ["push.cameras[0].secret: String should have at least 32 characters"]
    _, server, _, _ = rig
    cfg = parse_config(site(port=server.port))  # the rig's listener holds that port
    app = App(cfg, tmp_path / "second", boards=simulated_boards(cfg))
    with pytest.raises(ServeError, match=r"^push.host/port: cannot listen on 127.0.0.1:\d+: "):
        app.push_server()
    app.close()
