"""Visitor passes and residents' codes shown to the face gate's camera: a pass signed with the
centre's Ed25519 key, rendered as a real QR image into a real 1280x720 frame at several sizes,
angles, tilts and blur levels, opens the door once through the real controls (in-memory board)
with an event; each failure case is refused with its reason and an event. Revocation arrives as
a signed ``pass.revoke`` command through the device's real command path."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pyotp
import pytest

from gatectl.access.kinds import from_code
from gatectl.access.passes import issue_pass, read_pass
from gatectl.config import parse_config
from gatectl.runtime.app import App
from gatectl.sources.media import read_image
from gatectl.sync.signing import generate_private_key, public_key_b64, sign_command
from gatectl.vision.qr import QrReader, qr_image
from tests.conftest import DATA, ok, run_cli

SCENE = read_image(DATA / "noface" / "yolox_dog_bicycle.jpg")  # a real porch, no face in it


def frame_with_code(text: str, side: int, angle: float = 0.0, blur: float = 0.0,
                    tilt: float = 0.0, at: tuple[float, float] = (0.65, 0.5)) -> np.ndarray:
    """The scene at 1280x720 with a phone screen showing the QR code of ``text``: ``side`` px
    wide, turned ``angle`` degrees, its top leaning back by ``tilt``, the frame blurred by a
    Gaussian of ``blur`` px (motion, focus)."""
    frame = cv2.resize(SCENE, (1280, 720), interpolation=cv2.INTER_AREA)
    screen = cv2.cvtColor(cv2.resize(qr_image(text, scale=4), (side, side),
                                     interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
    src = np.float32([[0, 0], [side, 0], [side, side], [0, side]])
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    corners = (src - side / 2) @ rot.T
    corners[:, 0] *= 1 - tilt * corners[:, 1] / side
    m = cv2.getPerspectiveTransform(src, np.float32(corners + [at[0] * 1280, at[1] * 720]))
    warped = cv2.warpPerspective(screen, m, (1280, 720))
    mask = cv2.warpPerspective(np.full((side, side), 255, np.uint8), m, (1280, 720)) > 127
    frame[mask] = warped[mask]
    return cv2.GaussianBlur(frame, (0, 0), blur) if blur else frame


@pytest.fixture
def site(tmp_path, relay, clock):
    key = generate_private_key()
    cfg = parse_config({
        "cameras": [{"name": "cam0", "source": "0"}],
        "outputs": [{"name": "door", "channel": 0}, {"name": "garage", "channel": 1}],
        "doors": [{"name": "door", "output": "door"}, {"name": "garage", "output": "garage"}],
        "gates": [{"kind": "face", "name": "lobby", "camera": "cam0", "door": "door"}],
        "device": {"id": "gate-01", "site": "sunny-garden"},
        "sync": {"enabled": True, "command_keys": {"k1": public_key_b64(key)}},
        "access": {"doors": [{"door": "door", "policy": "face|qr|totp"}],
                   "door_groups": {"east": ["door"]}},
    })
    app = App(cfg, tmp_path / "state", boards={"main": relay}, clock=clock,
              monotonic=clock.monotonic)
    gate = app.gate(cfg.gates[0])
    yield app, gate, key
    app.close()


class Shower:
    """Holds a frame up to the camera for three frames (the gate reads one in three)."""

    def __init__(self, gate):
        self.gate = gate
        self.t = 0.0

    def __call__(self, frame: np.ndarray, gap_s: float = 10.0) -> list:
        self.t += gap_s  # a new showing, after access.qr.repeat_s
        out = []
        for i in range(3):
            out += self.gate.process(frame, self.t + i * 0.1)
        return out


def a_pass(key, clock, pass_id: str, **kw) -> str:
    opts = {"site": "sunny-garden", "doors": ["door"], "valid_from": clock() - 60,
            "valid_to": clock() + 3600, "uses": 1} | kw
    return issue_pass(key, "k1", pass_id=pass_id, **opts)


@pytest.mark.parametrize("side, angle, blur, tilt", [
    (160, 0, 0.0, 0.0),      # small: a phone held far away
    (260, 25, 1.2, 0.0),     # turned and a little out of focus
    (260, -40, 0.0, 0.3),    # turned the other way, top leaning back
    (420, 90, 2.0, 0.0),     # close, sideways, blurred
    (420, -40, 2.0, 0.3),
])
def test_a_signed_pass_on_a_phone_opens_the_door_once(site, relay, clock, side, angle, blur,
                                                      tilt):
    app, gate, key = site
    show = Shower(gate)
    token = a_pass(key, clock, f"v-{side}-{angle}")
    frame = frame_with_code(token, side, angle, blur, tilt)
    [d] = show(frame)
    assert (d.decision, d.credential) == ("granted", "qr")
    assert d.reason == f"visitor pass v-{side}-{angle} (use 1 of 1)"
    assert [(p.channel, p.seconds) for p in relay.history] == [(0, 5.0)]
    [ev] = app.store.events(kind="access")
    assert (ev.decision, ev.credential, ev.gate) == ("granted", "qr", "lobby")
    assert (app.snapshot_dir / ev.snapshot).stat().st_size > 10_000
    # the visitor shows it again: one use only
    [d] = show(frame)
    assert (d.decision, d.reason) == ("denied", f"pass used up (v-{side}-{angle})")
    assert len(relay.history) == 1


def test_a_code_held_up_for_many_frames_is_one_showing(site, relay, clock):
    app, gate, key = site
    frame = frame_with_code(a_pass(key, clock, "steady", uses=5), 260, 10)
    decisions = [d for i in range(30) for d in gate.process(frame, i * 0.1)]  # 3 s in view
    assert [d.decision for d in decisions] == ["granted"]
    assert app.store.pass_uses("steady") == 1


def test_a_code_too_blurred_to_read_does_nothing(site, relay, clock):
    app, gate, key = site
    assert Shower(gate)(frame_with_code(a_pass(key, clock, "smudge"), 120, 0, 3.0)) == []
    assert relay.history == [] and app.store.events(kind="access") == []


@pytest.mark.parametrize("case, reason", [
    ("expired", "pass expired (x)"),
    ("not_yet_valid", "pass not yet valid (x)"),
    ("other_site", "pass for another site (x)"),
    ("other_door", "pass not valid at this door (x)"),
    ("forged", "pass forged"),
    ("unknown_key", "pass forged: unknown key"),
    ("tampered", "pass forged"),
    ("used_up", "pass used up (x)"),
])
def test_each_bad_pass_is_refused_with_its_reason_and_an_event(site, relay, clock, case, reason):
    app, gate, key = site
    show = Shower(gate)
    now = clock()
    token = {
        "expired": lambda: a_pass(key, clock, "x", valid_from=now - 7200, valid_to=now - 60),
        "not_yet_valid": lambda: a_pass(key, clock, "x", valid_from=now + 3600,
                                        valid_to=now + 7200),
        "other_site": lambda: a_pass(key, clock, "x", site="other-garden"),
        "other_door": lambda: a_pass(key, clock, "x", doors=["garage"]),
        "forged": lambda: a_pass(generate_private_key(), clock, "x"),  # right kid, wrong key
        "unknown_key": lambda: issue_pass(key, "k9", pass_id="x", site="sunny-garden",
                                          doors=["door"], valid_from=now - 60,
                                          valid_to=now + 60, uses=1),
        "tampered": lambda: _tampered(a_pass(key, clock, "x", uses=1)),
        "used_up": lambda: a_pass(key, clock, "x", uses=1),
    }[case]()
    if case == "used_up":
        assert app.store.use_pass("x", 1) is None  # used once already, at another door
    [d] = show(frame_with_code(token, 260, 15, 1.0))
    assert (d.decision, d.reason) == ("denied", reason)
    [ev] = app.store.events(kind="access")
    assert (ev.decision, ev.reason, ev.credential) == ("denied", reason, "qr")
    assert relay.history == []


def test_a_pass_with_anything_after_it_is_malformed_not_the_pass_it_starts_with(
        site, relay, clock):
    """A QR code's whole text is the pass (Python's ``$`` alone also matches before a final
    newline, so a signed token followed by "\\n" once opened the door)."""
    app, _, key = site
    point = app.access_point("door")
    token = a_pass(key, clock, "tail", uses=5)
    for t, tail in enumerate(["\n", "\r\n", " "]):
        p = from_code(token + tail, "door", "lobby", float(t))
        assert p is not None and point.present(p).reason == "pass malformed", repr(tail)
    assert relay.history == [] and app.store.pass_uses("tail") == 0


def _tampered(token: str) -> str:
    """The same pass with 100 uses instead of 1, its signature kept."""
    import base64

    head, kid, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["u"] = 100
    forged = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode())
    return ".".join([head, kid, forged.rstrip(b"=").decode(), sig])


def test_a_door_group_pass_opens_and_a_revoked_pass_is_refused_after_a_signed_command(
        site, relay, clock):
    app, gate, key = site
    show = Shower(gate)
    token = a_pass(key, clock, "grp-1", doors=["@east"], uses=3)
    frame = frame_with_code(token, 300, -10, 0.8)
    [d] = show(frame)
    assert d.decision == "granted"
    client = app.sync_client(dict, lambda: "no reload")
    cmd = sign_command(key, "k1", "gate-01", "pass.revoke", {"pass_id": "grp-1"}, now=clock())
    assert client.on_command(json.dumps(cmd).encode()) == {
        "id": cmd["id"], "ok": True, "result": "pass grp-1 revoked"}
    unsigned = {**sign_command(key, "k1", "gate-01", "pass.revoke", {"pass_id": "grp-2"},
                               now=clock()), "sig": ""}
    assert client.on_command(json.dumps(unsigned).encode())["ok"] is False
    [d] = show(frame)
    assert (d.decision, d.reason) == ("denied", "pass revoked (grp-1)")
    assert len(relay.history) == 1


def test_a_residents_rotating_code_on_a_phone_opens_once_per_step(site, relay, clock):
    app, gate, _ = site
    r = app.store.add_resident("r", "B2-1201", [], "none")
    app.directory.refresh()
    secret = pyotp.random_base32()
    app.store.set_totp_secret(r.id, secret)
    show = Shower(gate)
    frame = frame_with_code(f"GT1:{r.uid}:{pyotp.TOTP(secret).at(clock())}", 220, 20, 1.0)
    [d] = show(frame)
    assert (d.decision, d.credential, d.reason) == ("granted", "totp", "resident")
    [d] = show(frame)  # a screenshot of the same code, shown again
    assert (d.decision, d.reason) == ("denied", "code already used")
    assert len(relay.history) == 1


def test_central_pass_issue_prints_a_token_and_writes_its_qr(tmp_path):
    keyfile = tmp_path / "central.key"
    ok(run_cli("central", "keygen", "--out", str(keyfile), "--kid", "k1"))
    png = tmp_path / "visitor.png"
    out = ok(run_cli("central", "pass", "issue", "--site", "sunny-garden", "--door", "door",
                     "--door", "@east", "--from", "2026-12-03T09:00+08:00", "--to",
                     "2026-12-03T18:00+08:00", "--uses", "2", "--key", str(keyfile), "--id",
                     "visit-7", "--out", str(png), "--kid", "k1"))
    token = out.strip()
    assert QrReader().read(cv2.imread(str(png))) == [token]
    from gatectl.sync.signing import load_private_key

    vp = read_pass(token, {"k1": load_private_key(keyfile).public_key()})
    assert (vp.pass_id, vp.site, vp.doors, vp.uses) == ("visit-7", "sunny-garden",
                                                        ("door", "@east"), 2)
    assert vp.valid_to - vp.valid_from == 9 * 3600
    r = run_cli("central", "pass", "issue", "--site", "s", "--door", "bad door!", "--from", "0",
                "--to", "10", "--key", str(keyfile))
    assert r.returncode == 2 and r.stderr.strip().startswith("gatectl: pass: --door: ")
