"""The registry's plate lists, pass revocations and consent scopes reaching real devices: a
real Mosquitto of the test's own, the centre's ingest worker over SQLite and a real PostgreSQL
(tests/test_central.py's fixtures), and devices running the real sync client, store, lane and
access point. A plate added at the centre opens a lane and its removal closes it; a revoked
pass is refused at a door; a building's change reaches only that building; a forged change
changes nothing; a wiped device gets its lists back by resync; a ``local`` resident's face never
leaves its device and a ``site`` one reaches the whole site, without any relay switch."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
from gatectl.access.passes import issue_pass
from gatectl.domain.consent import Consent
from gatectl.domain.credentials import Presented
from gatectl.people.enroll import Sample
from gatectl.sources.media import read_image
from gatectl.sync.signing import generate_private_key, public_key_b64, sign_change
from tests.conftest import FACES, REPO, wait_for
from tests.central_pg import pg_cluster  # noqa: F401 - the session fixture
from tests.test_central import SITE, db_url, key, publish, worker  # noqa: F401 - fixtures
from tests.test_plates import PLATES, lane_cfg
from tests.test_sync import Device, sync_cfg

CAR = "川A8H458"  # the car of PLATES/scenes/we0091234_Quicker_20220930_180856.png
CAR_SCENE = "we0091234_Quicker_20220930_180856.png"


def device(tmp_path, broker, key, name: str, **extra) -> Device:
    """A device pinning the registry's key (kid k1), subscribed once the centre has its status
    (the device subscribes before it publishes it: the broker holds the subscription by then)."""
    cfg = {**extra, **sync_cfg(broker, name, {"k1": public_key_b64(key)})}
    return Device(tmp_path / name, cfg)


def online(reg, *names: str) -> None:
    def all_online() -> bool:
        states = {d["device"]: d["state"] for d in reg.devices(SITE)}
        return all(states.get(n) == "online" for n in names)

    wait_for(all_online, 30, f"{', '.join(names)} online at the centre")


class Watch:
    """Every change the centre publishes on the site's and the devices' lists topics."""

    def __init__(self, broker):
        self.seen: list[tuple[str, dict]] = []
        ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = lambda c, u, m: self.seen.append((m.topic, json.loads(m.payload)))
        self.c.on_subscribe = lambda *_: ready.set()
        self.c.connect(broker.host, broker.port)
        self.c.subscribe([(f"gatectl/v1/{SITE}/lists", 1), (f"gatectl/v1/{SITE}/+/lists", 1)])
        self.c.loop_start()
        assert ready.wait(15)

    def topics(self, **match) -> list[str]:
        return sorted(t.split("/", 3)[3] for t, b in self.seen
                      if all(b.get(k) == v for k, v in match.items()))

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def drive(lane, t0: float) -> tuple[str, str]:
    """The car of CAR_SCENE at the device's entry lane: (decision, reason)."""
    img = read_image(PLATES / "scenes" / CAR_SCENE)
    out = []
    for i in range(6):
        out += lane.process(img, t0 + i * 0.2)
    [d] = out + lane.flush(t0 + 100)
    assert d.plate == CAR
    return d.decision, d.reason


def test_a_plate_added_at_the_centre_opens_the_lane_and_its_removal_closes_it(
        tmp_path, broker, key, worker):
    reg = worker.registry
    dev = device(tmp_path, broker, key, "lane-a", **lane_cfg())
    try:
        online(reg, "lane-a")
        lane = dev.app.gate(dev.cfg.gates[0])
        assert drive(lane, 0.0) == ("denied", "unknown plate")
        reg.set_plate(SITE, CAR, "resident", unit="3-1201")
        wait_for(lambda: dev.app.store.plates(CAR), 15, "the centre's plate on the device")
        assert drive(lane, 1000.0) == ("granted", "resident 3-1201")
        reg.remove_plate(SITE, CAR)
        wait_for(lambda: not dev.app.store.plates(CAR), 15, "the plate removed on the device")
        assert drive(lane, 2000.0) == ("denied", "unknown plate")
        # on the blacklist: the lane raises the alert
        reg.set_plate(SITE, CAR, "blacklist", note="police notice 17")
        wait_for(lambda: dev.app.store.plates(CAR), 15, "the blacklisted plate on the device")
        decision, reason = drive(lane, 3000.0)
        assert decision == "alert" and "police notice 17" in reason
        assert dev.client.counters["lists_applied"] == 3
    finally:
        dev.close()


DOOR = {"outputs": [{"name": "door", "channel": 0}], "doors": [{"name": "door", "output": "door"}],
        "access": {"doors": [{"door": "door", "policy": "qr"}]}}


def test_a_pass_revoked_at_the_centre_is_refused_at_the_door_as_revoked(
        tmp_path, broker, key, worker):
    reg = worker.registry
    dev = device(tmp_path, broker, key, "door-a", **DOOR)
    try:
        online(reg, "door-a")
        now = time.time()
        reg.add_pass(SITE, "visit-1", holder="V", valid_from=now - 60, valid_until=now + 3600,
                     doors=["door"])
        token = issue_pass(key, "k1", pass_id="visit-1", site=SITE, doors=["door"],
                           valid_from=now - 60, valid_to=now + 3600, uses=5)
        point = dev.app.access_point("door")

        def show(t: float):
            return point.present(Presented(kind="qr", door="door", source="cam", value=token,
                                           t=t))

        assert show(1.0).granted
        reg.revoke_pass("visit-1")
        wait_for(lambda: dev.app.store.list_version("pass", "visit-1"), 15,
                 "the revocation on the device")
        out = show(100.0)
        assert not out.granted and out.reason == "pass revoked (visit-1)"
    finally:
        dev.close()


def test_a_building_change_reaches_only_its_devices_and_a_move_removes_it_there(
        tmp_path, broker, key, worker):
    reg = worker.registry
    reg.add_device(SITE, "dev-a", "b1")
    reg.add_device(SITE, "dev-b", "b2")
    a, b = device(tmp_path, broker, key, "dev-a"), device(tmp_path, broker, key, "dev-b")
    watch = Watch(broker)
    try:
        online(reg, "dev-a", "dev-b")
        reg.set_plate(SITE, CAR, "resident", building="b1")
        reg.set_plate(SITE, "粤B12345", "visitor", valid_to=time.time() + 3600)  # the site's
        wait_for(lambda: b.app.store.plates("粤B12345") and a.app.store.plates("粤B12345"), 15,
                 "the site's plate on both devices")
        wait_for(lambda: a.app.store.plates(CAR), 15, "b1's plate on dev-a")
        assert not b.app.store.plates(CAR)  # what reached dev-b after it never held it
        # the watcher gets the centre's publications in order: the last one seen, all are
        wait_for(lambda: watch.topics(plate="粤B12345"), 10, "the site's plate watched")
        assert watch.topics(plate=CAR) == ["dev-a/lists"]
        assert watch.topics(plate="粤B12345") == ["lists"]
        # moved to one device of b2: a signed removal for dev-a, the entry for dev-b
        watch.seen.clear()
        reg.set_plate(SITE, CAR, "resident", device="dev-b")
        wait_for(lambda: b.app.store.plates(CAR) and not a.app.store.plates(CAR), 15,
                 "the plate moved from dev-a to dev-b")
        wait_for(lambda: watch.topics(plate=CAR, op="delete"), 10, "the removal watched")
        assert watch.topics(plate=CAR, op="upsert") == ["dev-b/lists"]
        assert watch.topics(plate=CAR, op="delete") == ["dev-a/lists"]
        # a pass of building b2: its revocation reaches dev-b only
        now = time.time()
        reg.add_pass(SITE, "b2-pass", holder="V", valid_from=now, valid_until=now + 3600,
                     building="b2")
        reg.revoke_pass("b2-pass")
        wait_for(lambda: b.app.store.list_version("pass", "b2-pass"), 15, "b2's revocation")
        wait_for(lambda: watch.topics(pass_id="b2-pass"), 10, "the revocation watched")
        assert watch.topics(pass_id="b2-pass") == ["dev-b/lists"]
        assert b.app.store.use_pass("b2-pass", 5) == "revoked"
    finally:
        watch.close()
        a.close()
        b.close()


FORGED = ("unsigned", "other key", "for another device", "other site", "not a plate", "too deep",
          "unknown field", "too large")


def test_a_forged_list_change_is_refused_counted_and_changes_nothing(
        tmp_path, broker, key, worker):
    reg = worker.registry
    dev = device(tmp_path, broker, key, "dev-a")
    try:
        online(reg, "dev-a")
        change = {"v": 1, "type": "plate", "op": "upsert", "plate": CAR,
                  "version": int(time.time() * 1000), "list": "resident", "unit": "", "note": "",
                  "resident": None, "valid_from": None, "valid_to": None}
        forged: dict[str, bytes | dict] = {
            "unsigned": {**change, "site": SITE, "device": "*"},
            "other key": sign_change(generate_private_key(), "k1", change, site=SITE),
            "for another device": sign_change(key, "k1", change, site=SITE, device="dev-b"),
            "other site": sign_change(key, "k1", change, site="elsewhere"),
            "not a plate": sign_change(key, "k1", {**change, "plate": "XX12345"}, site=SITE),
            "too deep": json.dumps({**change, "note": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}).encode(),
            "unknown field": sign_change(key, "k1", {**change, "gate": "open"}, site=SITE),
            "too large": sign_change(key, "k1", {**change, "note": "x" * 5000}, site=SITE),
        }
        assert tuple(forged) == FORGED

        def refused() -> int:
            return sum(v for k, v in dev.client.refusals.counts().items()
                       if k.startswith("refused_lists_"))

        for n, (case, payload) in enumerate(forged.items(), 1):
            # the one for another device is published on dev-a's own topic (retargeted)
            topic = f"gatectl/v1/{SITE}/{'dev-a/' if case == 'for another device' else ''}lists"
            publish(broker, topic, payload)
            wait_for(lambda n=n: refused() == n, 15, f"the {case} change refused and counted")
        counts = dev.client.refusals.counts()
        assert counts["refused_lists_unsigned"] == 1 and counts["refused_lists_bad_signature"] == 1
        assert counts["refused_lists_wrong_device"] == 1 and counts["refused_lists_wrong_site"] == 1
        assert counts["refused_lists_malformed"] == 2 and counts["refused_lists_too_deep"] == 1
        assert counts["refused_lists_too_large"] == 1
        assert not dev.app.store.plates(CAR) and dev.app.store.list_version("plate", CAR) is None
        assert not dev.client.counters["lists_applied"]
        # the genuine change after them applies: the sync thread went on
        reg.set_plate(SITE, CAR, "resident")
        wait_for(lambda: dev.app.store.plates(CAR), 15, "the genuine change")
    finally:
        dev.close()


def test_a_wiped_device_gets_its_plate_lists_and_revocations_back_by_resync(
        tmp_path, broker, key, worker):
    reg = worker.registry
    reg.add_device(SITE, "dev-a", "b1")
    now = time.time()
    reg.set_plate(SITE, CAR, "resident", unit="3-1201", building="b1")
    reg.set_plate(SITE, "粤B12345", "blacklist", note="n")
    reg.set_plate(SITE, "沪AF71017", "resident", building="b2")  # another building's
    reg.set_plate(SITE, "京EA5331", "resident")
    reg.remove_plate(SITE, "京EA5331")
    reg.add_pass(SITE, "gone-1", holder="V", valid_from=now, valid_until=now + 3600)
    reg.revoke_pass("gone-1")
    wiped = device(tmp_path, broker, key, "dev-a")
    try:
        online(reg, "dev-a")
        store = wiped.app.store
        assert not store.plates() and store.use_pass("gone-1", 5) is None
        store.enqueue("resync", "dev-a")
        wait_for(lambda: store.list_version("pass", "gone-1"), 30, "the resync's revocation")
        wait_for(lambda: len(store.plates()) == 2, 15, "the resync's plates")
        assert {(p["plate"], p["list"], p["unit"]) for p in store.plates()} == {
            (CAR, "resident", "3-1201"), ("粤B12345", "blacklist", "")}
        assert store.use_pass("gone-1", 5) == "revoked"
        # the removed and the other building's plates came as removals: nothing to hold
        assert store.list_version("plate", "京EA5331") and store.list_version("plate", "沪AF71017")
    finally:
        wiped.close()


def test_a_local_residents_face_stays_home_and_a_site_residents_reaches_the_site(
        tmp_path, broker, key, worker):
    reg = worker.registry
    a, b = device(tmp_path, broker, key, "dev-a"), device(tmp_path, broker, key, "dev-b")
    try:
        online(reg, "dev-a", "dev-b")
        local = a.app.enroller().enroll_resident(
            "Rose Leslie", "2-302", [Sample("r", read_image(FACES / "rose_leslie_01.jpg"))],
            Consent("local", "desk"))
        shared = a.app.enroller().enroll_resident(
            "Barack Obama", "1-101", [Sample("o", read_image(FACES / "obama_01.jpg"))],
            Consent("site", "desk"))
        got = wait_for(lambda: b.app.store.find_residents(shared.uid), 30, "the site resident on B")
        assert b.app.store.template_count(("resident", got[0].id)) == 1
        held = reg.resident(shared.uid)
        assert (held["consent"], held["templates"], held["home_device"]) == ("site", 1, "dev-a")
        # the local resident went up first (one outbox, one worker): decided by now
        home = reg.resident(local.uid)
        assert (home["consent"], home["templates"], home["home_device"]) == ("none", 0, "dev-a")
        wait_for(lambda: a.app.store.version_of(local.uid)[1] == home["version"], 15,
                 "the centre's signed version of the local resident on its home device")
        assert a.app.store.template_count(("resident", local.id)) == 1  # still works at home
        assert not b.app.store.find_residents(local.uid)
        for (body,) in worker.db.query("SELECT body FROM changes WHERE ref = ?", [local.uid]):
            assert json.loads(body)["device"] == "dev-a" and "templates" not in json.loads(body)
    finally:
        a.close()
        b.close()


def test_the_operator_adds_and_removes_a_building_plate_and_revokes_a_pass_from_the_cli(
        tmp_path, broker, key, worker):
    reg = worker.registry
    reg.add_device(SITE, "dev-a", "b1")
    dev = device(tmp_path, broker, key, "dev-a")
    config = tmp_path / "central.toml"  # the worker's (tests/test_central.write_config)

    def central(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "gatectl", "central", *args, "--config",
                               str(config), "--site", SITE], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        online(reg, "dev-a")
        central("plates", "add", "--plate", "川a 8h458", "--list", "visitor", "--unit", "3-1201",
                "--building", "b1")
        wait_for(lambda: dev.app.store.plates(CAR), 15, "the CLI's plate on dev-a")
        [row] = [json.loads(line) for line in central("plates", "list", "--json").splitlines()]
        assert (row["plate"], row["list"], row["building"], row["unit"]) == (
            CAR, "visitor", "b1", "3-1201")
        central("plates", "remove", "--plate", CAR)
        wait_for(lambda: not dev.app.store.plates(CAR), 15, "the plate removed on dev-a")
        out = json.loads(central("passes", "add", "--holder", "V", "--id", "cli-pass"))
        central("passes", "revoke", "--id", out["id"])
        wait_for(lambda: dev.app.store.use_pass("cli-pass", 5) == "revoked", 15,
                 "the revocation on dev-a")
    finally:
        dev.close()


def test_an_erased_residents_car_is_taken_off_the_devices_lists(tmp_path, broker, key, worker):
    reg = worker.registry
    reg.enroll(SITE, "u-car", name="C", unit="3-1201", consent="none", home_device="dev-z")
    dev = device(tmp_path, broker, key, "dev-a")
    try:
        online(reg, "dev-a")
        reg.set_plate(SITE, CAR, "resident", unit="3-1201", resident="u-car")
        reg.set_plate(SITE, "粤B12345", "resident")  # someone else's: stays
        wait_for(lambda: dev.app.store.plates(CAR) and dev.app.store.plates("粤B12345"), 15,
                 "both plates on the device")
        reg.delete_resident("u-car")
        wait_for(lambda: not dev.app.store.plates(CAR), 15, "the erased resident's car removed")
        assert dev.app.store.plates("粤B12345")
        assert [p["plate"] for p in reg.plates(SITE)] == ["粤B12345"]
        assert not worker.db.query("SELECT 1 FROM plates WHERE resident_uid = 'u-car'")
    finally:
        dev.close()
