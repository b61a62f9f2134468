"""Every credential through one door's access point: cards, PINs, card+pin, schedules, groups,
TOTP codes and a resident who refused face recognition - on a real SQLite file, the real
controls and an in-memory relay board, each decision an event before the door moves."""

from __future__ import annotations

import calendar

import pyotp
import pytest

from gatectl.access.kinds import from_code
from gatectl.access.pins import hash_pin, verify_pin
from gatectl.config import default_config
from gatectl.config.access import AccessConfig
from gatectl.domain.credentials import Presented
from gatectl.domain.door_policy import for_resident, is_open, parse_clock, parse_days, parse_rule
from gatectl.runtime.app import App
from gatectl.store.credentials import FaceRefused
from tests.conftest import FACES, enroll

# Wednesday 2026-09-16 10:00 in Beijing (UTC+8)
WED_10H = calendar.timegm((2026, 9, 16, 2, 0, 0))


def make_app(tmp_path, relay, clock, access: dict, anti_passback_s: float = 0) -> App:
    from gatectl.config.hardware import DoorConfig

    cfg = default_config().model_copy(update={
        "access": AccessConfig.model_validate(access),
        "doors": [DoorConfig(name="door", output="door", anti_passback_s=anti_passback_s)]})
    return App(cfg, tmp_path / "state", boards={"main": relay}, clock=clock,
               monotonic=clock.monotonic)


@pytest.fixture
def rig(tmp_path, relay, clock):
    apps = []

    def build(policy: str = "face", **extra) -> tuple[App, object]:
        door = {"door": "door", "policy": policy, **extra.pop("door", {})}
        apb = extra.pop("anti_passback_s", 0)
        app = make_app(tmp_path / str(len(apps)), relay, clock, {"doors": [door], **extra}, apb)
        apps.append(app)
        return app, app.access_point("door")

    clock.t = WED_10H
    yield build
    for a in apps:
        a.close()


def resident(app: App, name: str = "r", unit: str = "A1-101") -> int:
    """A resident enrolled without a face (refusing face recognition, as the law allows)."""
    r = app.store.add_resident(name, unit, [], "none")
    app.directory.refresh()
    return r.id


def card(t: float, number: str = "1A2B3C", bits: int | None = 26) -> Presented:
    return Presented(kind="card", door="door", source="reader-1", value=number, t=t, bits=bits)


def pin(t: float, digits: str) -> Presented:
    return Presented(kind="pin", door="door", source="keypad-1", value=digits, t=t)


def test_policy_grammar_and_schedules_are_pure_rules():
    r = parse_rule("face|card+pin|qr")
    assert str(r) == "face|card+pin|qr"
    assert r.satisfied(frozenset({"card", "pin"})) and not r.satisfied(frozenset({"card"}))
    assert r.partial(frozenset({"card"})) and not r.partial(frozenset({"qr"}))
    assert str(for_resident(parse_rule("face"), True, parse_rule("card|totp"))) == "card|totp"
    rule = for_resident(parse_rule("face|card+pin"), True, parse_rule("card"))
    assert str(rule) == "card+pin|card"
    with pytest.raises(ValueError, match="unknown credential 'iris'"):
        parse_rule("face|iris")
    assert parse_days("fri-mon") == {4, 5, 6, 0} and parse_clock("24:00") == 1440
    cfg = AccessConfig.model_validate({"schedules": [
        {"name": "night", "windows": [{"days": "wed", "start": "22:00", "end": "06:00"}]}]})
    windows = cfg.schedule("night")
    assert not is_open(windows, WED_10H, 480)
    assert is_open(windows, WED_10H + 13 * 3600, 480)  # Wed 23:00
    assert is_open(windows, WED_10H + 19 * 3600, 480)  # Thu 05:00, the night that began Wed
    assert not is_open(windows, WED_10H + 21 * 3600, 480)  # Thu 07:00


def test_config_refuses_a_bad_policy_and_unknown_references():
    from gatectl.config import parse_config
    from gatectl.config.base import ConfigError

    base = default_config().model_dump(mode="json")
    with pytest.raises(ConfigError) as exc:
        parse_config({**base, "access": {"doors": [{"door": "door", "policy": "face|iris"}]}})
    assert any(line.startswith("access.doors.0.policy") or "access.doors[0].policy" in line
               for line in exc.value.lines), exc.value.lines
    with pytest.raises(ConfigError) as exc:
        parse_config({**base, "access": {"doors": [{"door": "lobby"}]}})
    assert exc.value.lines == ["access.doors[0].door: unknown door 'lobby'"]


def test_a_card_opens_a_card_door_once_recorded_and_a_face_or_unknown_card_does_not(
        rig, relay, clock):
    app, point = rig("card")
    rid = resident(app)
    app.store.add_card(rid, "1A2B3C", 26)
    out = point.present(card(1.0))
    assert (out.granted, out.reason, out.resident_id) == (True, "resident", rid)
    [ev] = app.store.events(kind="access")
    assert (ev.decision, ev.credential, ev.resident_id, ev.gate) == ("granted", "card", rid,
                                                                    "reader-1")
    assert [p.channel for p in relay.history] == [0]
    out = point.present(card(2.0, "FFFF01"))
    assert (out.granted, out.reason) == (False, "unknown card")
    out = point.present(card(3.0, "1A2B3C", bits=34))  # the same digits in another format
    assert out.reason == "unknown card"
    out = point.present(card(4.0, "not hex"))
    assert out.reason == "card unreadable"
    out = point.present(Presented(kind="face", door="door", source="cam", value="", t=5.0,
                                  resident_id=rid))
    assert out.reason == "face not accepted here (door needs card)"
    assert len(relay.history) == 1
    assert [e.credential for e in app.store.events(kind="access")] == ["card"] * 4 + ["face"]


def test_suspended_and_anti_passback_apply_to_cards_as_to_faces(rig, relay, clock):
    app, point = rig("card", anti_passback_s=60)
    rid = resident(app)
    app.store.add_card(rid, "42", 26)
    assert point.present(card(1.0, "0042")).granted  # padded by this reader: the same card
    out = point.present(card(2.0, "42"))  # passed back to someone behind
    assert (out.granted, out.reason) == (False, "anti-passback")
    app.store.set_status(rid, "suspended")
    app.directory.refresh()
    assert point.present(card(3.0, "42")).reason == "account suspended"
    assert len(relay.history) == 1


def test_pins_are_slow_salted_hashes_never_the_digits(tmp_path):
    a, b = hash_pin("123456"), hash_pin("123456")
    assert a != b and "123456" not in a and a.startswith("scrypt$16384$8$1$")
    assert verify_pin("123456", a) and not verify_pin("123457", a)
    assert not verify_pin("123456", "scrypt$99999999$8$1$AAAA$AAAA")  # not ours: no 99 GB run


def test_pin_door_grants_the_right_pin_and_locks_out_guessing(rig, relay, clock):
    app, point = rig("pin", pin={"max_failures": 3, "window_s": 60, "lockout_s": 300})
    rid = resident(app)
    app.store.set_pin_hash(rid, hash_pin("2468"))
    assert point.present(pin(1.0, "2468")).granted
    for i in range(2):
        assert point.present(pin(2.0 + i, "0000")).reason == "wrong pin"
    assert point.present(pin(4.0, "1111")).reason == "wrong pin; keypad locked out"
    out = point.present(pin(5.0, "2468"))  # even the right PIN, during the lockout
    assert (out.granted, out.reason) == (False, "pin locked out: too many wrong PINs")
    assert point.present(pin(305.0, "2468")).granted  # after lockout_s
    assert len(relay.history) == 2
    rows = app.store.db.execute("SELECT hash FROM pins").fetchall()
    assert all("2468" not in r[0] for r in rows)


def test_card_then_pin_within_the_window_opens_and_either_alone_does_not(rig, relay, clock):
    app, point = rig("card+pin", door={"within_s": 10})
    rid = resident(app)
    other = resident(app, "o", "A1-102")
    app.store.add_card(rid, "C0FFEE", 26)
    app.store.set_pin_hash(rid, hash_pin("1357"))
    app.store.set_pin_hash(other, hash_pin("9999"))
    out = point.present(card(1.0, "C0FFEE"))
    assert (out.pending, out.granted, out.event) == (True, False, None)
    assert relay.history == [] and app.store.events(kind="access") == []
    out = point.present(pin(4.0, "1357"))
    assert (out.granted, out.reason) == (True, "resident")
    [ev] = app.store.events(kind="access")
    assert ev.credential == "card+pin" and ev.resident_id == rid
    # another person's PIN after this card: checked against the card holder's PIN only
    assert point.present(card(20.0, "C0FFEE")).pending
    assert point.present(pin(21.0, "9999")).reason == "wrong pin"
    # the PIN too late: the card's factor expired, the PIN alone waits for a card
    assert point.present(card(40.0, "C0FFEE")).pending
    assert point.present(pin(55.0, "1357")).pending
    assert len(relay.history) == 1


def test_a_door_schedule_switches_policy_and_a_group_schedule_keeps_its_members_out(
        rig, relay, clock):
    schedules = [{"name": "office", "windows": [{"days": "mon-fri", "start": "08:00",
                                                 "end": "18:00"}]}]
    app, point = rig("card", door={"schedule": "office", "off_policy": "card+pin"},
                     schedules=schedules,
                     groups=[{"name": "cleaners", "units": ["SVC-*"], "schedule": "office"}])
    rid = resident(app)
    cleaner = resident(app, "c", "SVC-1")
    app.store.add_card(rid, "01", 26)
    app.store.add_card(cleaner, "02", 26)
    app.store.set_pin_hash(rid, hash_pin("4321"))
    app.store.set_pin_hash(cleaner, hash_pin("8765"))
    assert point.present(card(1.0, "01")).granted  # Wednesday 10:00: a card is enough
    assert point.present(card(2.0, "02")).granted
    clock.advance(12 * 3600)  # Wednesday 22:00
    assert point.present(card(3.0, "01")).pending  # at night a card needs its PIN
    assert point.present(pin(4.0, "4321")).granted
    out = point.present(card(5.0, "02"))
    assert (out.granted, out.reason) == (False, "outside schedule of group cleaners")
    assert len(relay.history) == 3


def test_totp_code_opens_once_per_step_and_not_out_of_the_window(rig, relay, clock):
    app, point = rig("totp", totp={"window_steps": 1})
    rid = resident(app)
    uid = app.store.resident(rid).uid
    secret = pyotp.random_base32()
    app.store.set_totp_secret(rid, secret)
    totp = pyotp.TOTP(secret)

    def code(at: float, t: float) -> Presented:
        return Presented(kind="totp", door="door", source="cam", value=f"GT1:{uid}:{totp.at(at)}",
                         t=t)

    now = clock()
    assert point.present(code(now, 1.0)).granted
    out = point.present(code(now, 2.0))  # the same code again: a replay
    assert (out.granted, out.reason) == (False, "code already used")
    assert point.present(code(now - 30, 3.0)).reason == "code already used"  # older step
    assert point.present(code(now - 120, 4.0)).reason == "code wrong or expired"
    assert point.present(code(now + 120, 5.0)).reason == "code wrong or expired"
    clock.advance(30)
    assert point.present(code(clock(), 6.0)).granted  # the next step's code
    bad = Presented(kind="totp", door="door", source="cam", value=f"GT1:nobody:{totp.at(now)}",
                    t=7.0)
    assert point.present(bad).reason == "code unknown"
    assert len(relay.history) == 2
    assert {e.credential for e in app.store.events(kind="access")} == {"totp"}


def test_a_totp_code_with_anything_after_it_is_malformed_not_the_code_it_starts_with(
        rig, relay, clock):
    """A QR code's whole text is the credential (Python's ``$`` alone also matches before a
    final newline, so "GT1:<uid>:<code>\\n" once opened the door)."""
    app, point = rig("totp")
    rid = resident(app)
    secret = pyotp.random_base32()
    app.store.set_totp_secret(rid, secret)
    text = f"GT1:{app.store.resident(rid).uid}:{pyotp.TOTP(secret).at(clock())}"
    for t, tail in enumerate(["\n", "\r\n", " "]):
        p = from_code(text + tail, "door", "cam", float(t))
        assert p is not None and point.present(p).reason == "code malformed", repr(tail)
    assert relay.history == []


def test_a_face_refusing_resident_has_no_template_and_gets_in_by_card(rig, relay, clock):
    from gatectl.people.enroll import Sample
    from gatectl.sources.media import read_image

    app, point = rig("face")  # face_refused defaults to card|totp|qr
    r = enroll(app, "refuser", "obama_01.jpg")
    assert app.store.template_count(("resident", r.id)) == 1
    app.recorder.delete_files(app.store.refuse_face(r.id))
    app.directory.refresh()
    assert app.store.template_count(("resident", r.id)) == 0
    assert app.store.db.execute("SELECT count(*) FROM enrollment_photos").fetchone()[0] == 0
    with pytest.raises(FaceRefused, match="refused face recognition"):
        app.enroller().add_photos(r, [Sample("o2", read_image(FACES / "obama_02.jpg"))])
    assert app.store.template_count(("resident", r.id)) == 0
    app.store.add_card(r.id, "ABCDEF", 26)
    out = point.present(card(1.0, "ABCDEF"))
    assert (out.granted, out.reason) == (True, "resident")
    # the face gate never grants them by face (a face credential for them is refused)
    out = point.present(Presented(kind="face", door="door", source="cam", value="", t=2.0,
                                  resident_id=r.id))
    assert out.reason == "face recognition refused by the resident"
    # and the camera does not know them: the gallery holds no face of theirs
    gate = app.gate(app.cfg.gates[0])
    img = read_image(FACES / "obama_02.jpg")
    decisions = [d for i in range(3) for d in gate.process(img, 10 + i * 0.1)]
    assert [d.reason for d in decisions] == ["unknown face"]
    assert len(relay.history) == 1


def test_a_resident_without_face_refusal_is_asked_for_the_door_policy(rig, relay, clock):
    app, point = rig("face")
    rid = resident(app)
    app.store.allow_face(rid)
    app.directory.refresh()
    app.store.add_card(rid, "77", 26)
    out = point.present(card(1.0, "77"))
    assert (out.granted, out.reason) == (False, "card not accepted here (door needs face)")


def test_a_centre_change_with_templates_stores_none_for_a_face_refusing_resident(
        rig, relay, clock):
    from gatectl.people.enroll import Sample
    from gatectl.sources.media import read_image
    from gatectl.sync.enrollment import Replicator, encode_templates
    from gatectl.sync.signing import generate_private_key, sign_change

    app, _ = rig("face")
    r = enroll(app, "refuser", "obama_01.jpg")
    app.store.refuse_face(r.id)
    key = generate_private_key()
    rep = Replicator(app.store, app.embedder.model_id, app.embedder.dim, lambda files: None,
                     keys={"k1": key.public_key()}, site=app.cfg.device.site,
                     device=app.cfg.device.id, clock=clock)
    faces = encode_templates(app.enroller().templates(
        [Sample("o2", read_image(FACES / "obama_02.jpg"))]), app.embedder.model_id)
    body = sign_change(key, "k1", {"v": 1, "type": "resident", "op": "upsert", "uid": r.uid,
                                   "version": int(clock() * 1000), "name": "refuser",
                                   "unit": "9-9-909", "status": "active", "templates": faces},
                       site=app.cfg.device.site)
    assert rep.receive(body) == "applied"
    assert app.store.template_count(("resident", r.id)) == 0
    assert app.store.resident(r.id).unit == "9-9-909"


def test_a_totp_secret_replicated_by_a_signed_change_opens_once_and_a_forged_one_is_refused(
        rig, relay, clock):
    import json

    from gatectl.sync.enrollment import EnrollRejected, Replicator
    from gatectl.sync.inbound import enrollment
    from gatectl.sync.signing import generate_private_key, sign_change

    app, point = rig("totp")
    key = generate_private_key()
    rep = Replicator(app.store, "none", 128, lambda files: None, keys={"k1": key.public_key()},
                     site=app.cfg.device.site, device=app.cfg.device.id, clock=clock)
    secret = pyotp.random_base32()
    change = {"v": 1, "type": "resident", "op": "upsert", "uid": "R-1",
              "version": int(clock() * 1000), "name": "no face", "unit": "C3-301",
              "status": "active", "totp": secret}
    signed = sign_change(key, "k1", change, site=app.cfg.device.site)
    assert rep.receive(enrollment(json.dumps(signed).encode(), 5)) == "applied"
    rid = app.store.resident_by_uid("R-1").id
    app.directory.refresh()
    code = Presented(kind="totp", door="door", source="cam",
                     value=f"GT1:R-1:{pyotp.TOTP(secret).at(clock())}", t=1.0)
    assert point.present(code).granted
    # the same change again (a resync) does not make the used code new
    resent = sign_change(key, "k1", {**change, "version": change["version"] + 1},
                         site=app.cfg.device.site)
    assert rep.receive(enrollment(json.dumps(resent).encode(), 5)) == "applied"
    assert point.present(code).reason == "code already used"
    # a secret planted by anyone but the centre never reaches the store
    planted = sign_change(generate_private_key(), "k1",
                          {**change, "version": change["version"] + 2,
                           "totp": pyotp.random_base32()}, site=app.cfg.device.site)
    with pytest.raises(EnrollRejected, match="bad_signature"):
        rep.receive(enrollment(json.dumps(planted).encode(), 5))
    assert app.store.totp_secret(rid) == secret
    assert len(relay.history) == 1


def test_a_flood_of_unknown_cards_costs_a_bounded_number_of_events(rig, relay, clock):
    from gatectl.access.point import NAMELESS_BURST

    app, point = rig("card")
    outs = [point.present(card(float(i), f"{i + 1:X}")) for i in range(200)]
    assert all(o.reason == "unknown card" and not o.granted for o in outs)
    recorded = len(app.store.events(kind="access"))
    assert NAMELESS_BURST <= recorded <= NAMELESS_BURST + 5  # + the budget's refill meanwhile
    assert point.health()["refusals_unrecorded"] == 200 - recorded
    assert relay.history == []


def test_salvage_keeps_credentials_revocations_and_uses_with_the_identities(tmp_path):
    """A store rebuilt from a corrupt file must not re-admit a revoked or used-up pass, nor lose
    a resident's card, PIN, code or face refusal."""
    from gatectl.store import Store
    from gatectl.store.salvage import salvage

    old = Store(tmp_path / "old.db")
    r = old.add_resident("Li Lei", "1", [], "m")
    old.add_card(r.id, "ABC", 26)
    old.set_pin_hash(r.id, hash_pin("1234"))
    old.set_totp_secret(r.id, "JBSWY3DPEHPK3PXP")
    assert old.claim_totp_step(r.id, 100)
    old.refuse_face(r.id)
    old.revoke_pass("gone")
    assert old.use_pass("once", 1) is None
    old.close()
    fresh = Store(tmp_path / "fresh.db")
    summary, restored = salvage(tmp_path / "old.db", fresh)
    assert restored, summary
    assert fresh.card_owner("ABC", 26) == r.id and verify_pin("1234", fresh.pin_hashes()[r.id])
    assert not fresh.claim_totp_step(r.id, 100) and fresh.refuses_face(r.id)
    assert fresh.use_pass("gone", 5) == "revoked" and fresh.use_pass("once", 1) == "used up"
    fresh.close()


def test_every_credential_is_recorded_before_the_door_moves(rig, relay, clock, monkeypatch):
    app, point = rig("card|pin|totp")
    rid = resident(app)
    app.store.add_card(rid, "5", 26)
    app.store.set_pin_hash(rid, hash_pin("5555"))
    secret = pyotp.random_base32()
    app.store.set_totp_secret(rid, secret)
    seen = []
    pulse = relay.pulse

    def recording_pulse(channel, seconds):
        seen.append([e.credential for e in app.store.events(kind="access")])
        pulse(channel, seconds)

    monkeypatch.setattr(relay, "pulse", recording_pulse)
    uid = app.store.resident(rid).uid
    for p in [card(1.0, "5"), pin(2.0, "5555"),
                           Presented(kind="totp", door="door", source="cam", t=3.0,
                                     value=f"GT1:{uid}:{pyotp.TOTP(secret).at(clock())}")]:
        assert point.present(p).granted
    assert seen == [["card"], ["card", "pin"], ["card", "pin", "totp"]]


def test_a_watchlisted_resident_raises_the_alert_at_the_first_factor(rig, relay, clock):
    app, point = rig("card+pin")
    rid = resident(app)
    app.store.add_card(rid, "BAD", 26)
    app.store.add_watch("r", "banned by the committee", rid, [], "none")
    app.directory.refresh()
    out = point.present(card(1.0, "BAD"))
    assert (out.decision, out.alert, out.granted) == ("alert", True, False)
    [ev] = app.store.events(kind="alert")
    assert ev.credential == "card" and ev.watchlist_id is not None and "banned" in ev.reason
    assert relay.history == []
