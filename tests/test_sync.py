"""Central sync against a real Mosquitto started on a free port (tests/broker.py): the outbox
survives broker restarts and a SIGKILL, enrollments travel between two devices through the
reference centre, signed commands are checked, and the daemon itself goes online/offline."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatectl.config import parse_config
from gatectl.config.sync import SyncConfig
from gatectl.domain.consent import Consent
from gatectl.people.enroll import Sample
from gatectl.runtime.app import App, simulated_boards
from gatectl.central.tool import Central
from gatectl.sources.media import read_image
from gatectl.sync.enrollment import encode_templates
from gatectl.sync.signing import generate_private_key, public_key_b64, sign_command
from tests.broker import Broker
from tests.conftest import FACES, REPO, wait_for

SITE = "garden"
CENTRAL_KEY = generate_private_key()  # the reference centre's: signs enrollment changes
CENTRAL_KID = "central-1"




def sync_cfg(broker: Broker, device: str, keys: dict[str, str] | None = None, **extra) -> dict:
    return {"device": {"id": device, "site": SITE},
            "sync": {"enabled": True, "host": broker.host, "port": broker.port,
                     "command_keys": {CENTRAL_KID: public_key_b64(CENTRAL_KEY), **(keys or {})}, **extra}}


def toml(d: dict) -> str:
    """Just enough TOML for these configs (tables of scalars and one nested table)."""
    out: list[str] = []

    def table(name: str, body: dict) -> None:
        out.append(f"[{name}]")
        nested = []
        for k, v in body.items():
            if isinstance(v, dict):
                nested.append((f"{name}.{k}", v))
            else:
                out.append(f"{k} = {json.dumps(v)}")
        for n, b in nested:
            table(n, b)

    for name, body in d.items():
        table(name, body)
    return "\n".join(out) + "\n"


@pytest.fixture
def central(broker):
    c = Central(SyncConfig(enabled=True, host=broker.host, port=broker.port), SITE, client_id="central-test",
                key=CENTRAL_KEY, kid=CENTRAL_KID)
    c.start()
    yield c
    c.stop()


class Device:
    """A device in this process: App + SyncClient, with a simulated relay board."""

    def __init__(self, tmp: Path, cfg: dict):
        self.cfg = parse_config(cfg)
        self.app = App(self.cfg, tmp, boards=simulated_boards(self.cfg))
        self.client = self.app.sync_client(lambda: {"test": True}, lambda: "no reload in tests")
        self.client.start()
        wait_for(self.client.connected.is_set, 10, "the device to connect")

    def close(self) -> None:
        self.client.stop()
        self.app.close()


# ---- outbox: nothing lost ---------------------------------------------------------------------

def test_thousands_of_events_survive_two_broker_restarts_and_a_sigkill(tmp_path, broker, central):
    total = 3000
    cfg = tmp_path / "dev.toml"
    cfg.write_text(toml(sync_cfg(broker, "dev1")))
    data = tmp_path / "dev1"

    def producer(rate: float) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "tests.sync_producer", str(cfg), str(data), str(total),
                                 str(rate)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    p1 = producer(600)
    assert p1.stdout.readline().startswith("start 0")
    wait_for(lambda: len(central.events) >= 300, 20, "the first events")
    broker.stop()  # outage 1: events pile up in the outbox
    time.sleep(1.0)  # the outage lasts this long (a duration, not a wait for a condition)
    broker.start()
    wait_for(lambda: len(central.events) >= 900, 30, "events after the first restart")
    p1.send_signal(signal.SIGKILL)  # mid-drain, mid-recording
    p1.communicate(timeout=10)
    p2 = producer(3000)
    assert p2.stdout.readline().startswith("start")  # recording, before the second outage
    broker.stop()  # outage 2, while the second process records and drains
    time.sleep(1.0)
    broker.start()
    out, err = p2.communicate(timeout=120)
    assert p2.returncode == 0, err[-3000:]
    assert "drained" in out

    app = App(parse_config(sync_cfg(broker, "dev1")), data)
    stored = [r["id"] for r in app.store.db.query("SELECT id FROM events ORDER BY id")]
    app.close()
    assert len(stored) == total, err[-3000:]
    wait_for(lambda: len(central.events) >= total, 30, "every event at the centre")
    assert set(central.events) == set(stored), f"missing: {len(set(stored) - set(central.events))}"
    seqs = central.order["dev1"]
    assert seqs == sorted(seqs), "events must arrive in outbox order (first copies)"


def test_outbox_is_bounded_and_counts_what_it_drops(tmp_path):
    cfg = parse_config({"sync": {"enabled": True, "outbox_max": 50_000}})
    app = App(cfg, tmp_path)
    store = app.store
    store.outbox_max = 100  # the floor of the config is 50,000; the policy is the same at 100
    for i in range(130):
        app.recorder.record("lobby", "access", "denied", f"e{i}")
    st = store.outbox_stats()
    assert st["pending"] == 100 and st["dropped_events"] == 30 and st["dropped_snapshots"] == 0
    refs = [r["ref"] for r in store.outbox_after(0, 1000)]
    newest = [r["id"] for r in store.db.query("SELECT id FROM events ORDER BY rowid DESC LIMIT 100")][::-1]
    assert refs == newest  # the oldest went first
    app.close()


# ---- enrollments ------------------------------------------------------------------------------

def test_enrollment_round_trip_between_two_devices_with_deletion(tmp_path, broker):
    # the site's residents consented to site-wide replication: A's enrollment reaches B
    relay = Central(SyncConfig(enabled=True, host=broker.host, port=broker.port), SITE, relay=True,
                    key=CENTRAL_KEY, kid=CENTRAL_KID, replicate="site")
    relay.start()
    a = Device(tmp_path / "a", sync_cfg(broker, "dev-a"))
    b = Device(tmp_path / "b", sync_cfg(broker, "dev-b"))
    try:
        r = a.app.enroller().enroll_resident("Barack Obama", "1-101", [Sample("o1", read_image(FACES / "obama_01.jpg"))], Consent("site", "test"))
        got = wait_for(lambda: b.app.store.find_residents(r.uid), 30, "the resident on device B")
        assert got[0].name == "Barack Obama" and got[0].unit == "1-101"
        ta = a.app.store.templates_of(("resident", r.id))
        tb = b.app.store.templates_of(("resident", got[0].id))
        assert len(tb) == len(ta) == 1 and float(ta[0][0] @ tb[0][0]) > 0.9999
        # B recognises the person from another photo, with A's template
        b.app.directory.refresh()
        face = b.app.enroller().templates([Sample("o2", read_image(FACES / "obama_02.jpg"))])[0][0]
        m = b.app.directory.gallery.match(face)
        assert m.owner == ("resident", got[0].id) and m.score > 0.5

        a.app.store.remove_resident(r.id)
        wait_for(lambda: not b.app.store.find_residents(r.uid), 30, "the deletion on device B")
        assert b.app.store.template_count(("resident", got[0].id)) == 0
        assert b.app.store.tombstone_version(r.uid) is not None
        # a late, older upsert cannot bring the person back
        stale = {"v": 1, "type": "resident", "op": "upsert", "uid": r.uid, "version": 1, "name": "X", "unit": "Y",
                 "templates": encode_templates([(ta[0][0], 1.0)], ta[0][2]), "origin": "central"}
        relay.push(stale, "dev-b")
        wait_for(lambda: b.client.counters["enroll_ignored"] >= 1, 15, "the stale upsert ignored")
        assert not b.app.store.find_residents(r.uid)
    finally:
        a.close()
        b.close()
        relay.stop()


def test_template_from_another_model_is_refused_with_the_reason(tmp_path, broker, central, caplog):
    dev = Device(tmp_path / "d", sync_cfg(broker, "dev-m"))
    try:
        import numpy as np

        change = {"v": 1, "type": "resident", "op": "upsert", "uid": "u-arc", "version": 5, "name": "N",
                  "unit": "U", "templates": encode_templates([(np.ones(512, "f4") / 22.6, 0.9)], "arcface-r100"),
                  "origin": "central"}
        central.push(change, "dev-m")
        wait_for(lambda: dev.client.counters["enroll_rejected"] == 1, 10, "the refusal")
        assert not dev.app.store.find_residents("u-arc")
        assert any("made by model 'arcface-r100'" in r.getMessage() for r in caplog.records)
    finally:
        dev.close()


def test_device_can_request_a_full_resync(tmp_path, broker):
    relay = Central(SyncConfig(enabled=True, host=broker.host, port=broker.port), SITE, relay=True,
                    key=CENTRAL_KEY, kid=CENTRAL_KID, replicate="site")
    relay.start()
    a = Device(tmp_path / "a", sync_cfg(broker, "dev-a"))
    try:
        r = a.app.enroller().enroll_resident("Kit Harington", "2-301",
                                            [Sample("k", read_image(FACES / "kit_harington_01.jpeg"))], Consent("site", "test"))
        wait_for(lambda: r.uid in relay.residents, 15, "the centre to learn the resident")
    finally:
        a.close()
    c = Device(tmp_path / "c", sync_cfg(broker, "dev-c"))  # a new device, empty store
    try:
        assert not c.app.store.residents()
        c.app.store.enqueue("resync", "dev-c")
        wait_for(lambda: c.app.store.find_residents(r.uid), 15, "the resynced resident")
    finally:
        c.close()
        relay.stop()


# ---- signed commands --------------------------------------------------------------------------

@pytest.fixture
def keyed(tmp_path, broker, central):
    key = generate_private_key()
    cfg = sync_cfg(broker, "dev-k", {"k1": public_key_b64(key)})
    cfg |= {"outputs": [{"name": "door"}, {"name": "arm", "channel": 1}, {"name": "hold", "channel": 2}],
            "doors": [{"name": "front", "output": "door"}], "barriers": [{"name": "lane", "open_output": "arm"}],
            "elevators": [{"name": "car", "hold_output": "hold"}]}
    dev = Device(tmp_path / "k", cfg)
    yield key, dev, central
    dev.close()


def pulses(dev: Device) -> int:
    return len(dev.app.boards["main"].history)


def test_signed_door_open_is_executed_once_and_a_replay_is_refused(keyed):
    key, dev, central = keyed
    body = sign_command(key, "k1", "dev-k", "door.open", {"door": "front"}, now=time.time())
    resp = central.command("dev-k", body)
    assert resp == {"id": body["id"], "ok": True, "result": "door front unlocked"}
    assert pulses(dev) == 1
    again = central.command("dev-k", body)  # what a broker re-delivery looks like
    assert again["ok"] is False and again["error"].startswith("rejected: replayed")
    assert pulses(dev) == 1
    kinds = [(e.kind, e.decision) for e in dev.app.store.events(kind="command")]
    assert kinds == [("command", "granted"), ("command", "denied")]


@pytest.mark.parametrize("case,expect", [
    ("bad_signature", "rejected: bad_signature"),
    ("expired", "rejected: expired"),
    ("unknown_key", "rejected: unknown_key"),
    ("unsigned", "rejected: unsigned"),
    ("wrong_device", "rejected: wrong_device"),
])
def test_bad_commands_are_rejected_and_never_acted_on(keyed, case, expect):
    key, dev, central = keyed
    now = time.time()
    if case == "bad_signature":
        body = sign_command(generate_private_key(), "k1", "dev-k", "door.open", {"door": "front"}, now=now)
    elif case == "expired":
        body = sign_command(key, "k1", "dev-k", "door.open", {"door": "front"}, now=now - 120, ttl_s=30)
    elif case == "unknown_key":
        body = sign_command(key, "k9", "dev-k", "door.open", {"door": "front"}, now=now)
    elif case == "unsigned":
        body = sign_command(key, "k1", "dev-k", "door.open", {"door": "front"}, now=now)
        del body["sig"]
    else:
        body = sign_command(key, "k1", "dev-other", "door.open", {"door": "front"}, now=now)
    resp = central.command("dev-k", body)
    assert resp["ok"] is False and resp["error"].startswith(expect), resp
    assert pulses(dev) == 0


def test_announcement_watchlist_and_status_commands(keyed):
    key, dev, central = keyed

    def run(cmd: str, args: dict) -> dict:
        return central.command("dev-k", sign_command(key, "k1", "dev-k", cmd, args, now=time.time()))

    assert run("display.announce", {"text": "Water off 9-12 tomorrow", "seconds": 3600})["ok"]
    assert [a["text"] for a in dev.app.store.announcements()] == ["Water off 9-12 tomorrow"]
    assert run("display.announce", {"text": ""})["error"].startswith("args.text")

    templates = dev.app.enroller().templates([Sample("a", read_image(FACES / "alex_lacamoire_01.jpg"))])
    wl = {"uid": "w-1", "version": 1, "name": "Alex L", "reason": "police notice",
          "templates": encode_templates(templates, dev.app.embedder.model_id)}
    resp = run("watchlist.add", wl)
    assert resp["ok"] and resp["result"] == "applied", resp
    assert [w.name for w in dev.app.store.watch_entries()] == ["Alex L"]
    assert run("watchlist.remove", {"uid": "w-1", "version": 2})["ok"]
    assert dev.app.store.watch_entries() == []

    r = dev.app.enroller().enroll_resident("Rose Leslie", "2-302", [Sample("r", read_image(FACES / "rose_leslie_01.jpg"))],
                                           Consent("site", "test"))  # the centre learns her only with consent
    # versions are the centre's clock in ms: wait for its signed answer to the enrollment request
    wait_for(lambda: dev.app.store.version_of(r.uid)[1] > 1, 15, "the centre's signed version of Rose")
    now_ms = int(time.time() * 1000)
    assert run("resident.status", {"uid": r.uid, "status": "suspended", "version": now_ms})["ok"]
    assert dev.app.store.resident(r.id).status == "suspended"
    assert run("resident.status", {"uid": "nobody", "status": "active", "version": now_ms})["error"].startswith("args.uid")
    assert run("self.destruct", {})["error"].startswith("unknown command 'self.destruct'")
    assert run("barrier.open", {"barrier": "lane"})["result"] == "barrier lane opened"
    assert dev.app.boards["main"].history[-1].channel == 1
    assert run("barrier.open", {"barrier": "nope"})["error"].startswith("args.barrier: unknown barrier")
    dev.app.controls.ebike("car")
    assert dev.app.boards["main"].is_on(2)
    assert run("elevator.release", {"elevator": "car"})["result"] == "elevator car released"
    assert not dev.app.boards["main"].is_on(2)


def test_username_and_password_from_a_file(tmp_path):
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "dev-p", "s3cret"], check=True, capture_output=True)
    b = Broker(tmp_path / "broker", password_file=pw)
    b.start()
    try:
        secret = tmp_path / "mqtt-password"
        secret.write_text("s3cret\n")
        dev = Device(tmp_path / "p", sync_cfg(b, "dev-p", username="dev-p", password_file=str(secret)))
        dev.close()
        secret.write_text("wrong\n")
        cfg = parse_config(sync_cfg(b, "dev-p", username="dev-p", password_file=str(secret)))
        app = App(cfg, tmp_path / "q")
        client = app.sync_client(lambda: {}, lambda: "")
        client.start()
        time.sleep(1.5)
        assert not client.connected.is_set()  # refused, and retried in the background
        client.stop()
        app.close()
    finally:
        b.stop()


def test_sync_cli_works_without_broker_or_daemon(tmp_path):
    from tests.conftest import run_cli

    cfg = tmp_path / "s.toml"
    cfg.write_text('[device]\nid = "d1"\nsite = "s"\n[sync]\nenabled = true\nport = 1\n')
    d = tmp_path / "state"
    r = run_cli("sync", "resync", config=cfg, data=d)
    assert r.returncode == 0 and "resync requested" in r.stdout, r.stderr
    r = run_cli("sync", "status", config=cfg, data=d)
    assert r.returncode == 0
    stats = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert stats["pending"] == "1" and stats["dropped_events"] == "0"
    r = run_cli("sync", "status", data=d)  # built-in defaults: sync off
    assert r.returncode == 2 and "not enabled" in r.stderr


def test_fifty_thousand_events_wait_offline_and_all_arrive(tmp_path, broker, central):
    """The figure access-control test specs ask: 50,000 events held while offline, none lost."""
    cfg = parse_config(sync_cfg(broker, "dev-50k"))
    app = App(cfg, tmp_path / "d")
    n = 50_000
    with app.store.write() as db:  # a day of a busy gate, recorded while the broker was away
        now = time.time()
        rows = [{"id": f"01TEST{i:020d}", "ts": now + i * 1e-3, "gate": "g", "kind": "access", "decision": "denied",
                 "reason": "load", "snapshot": None, "snapshot_bytes": 0} for i in range(n)]
        db["events"].insert_all(rows, batch_size=5000)
        db["outbox"].insert_all(({"kind": "event", "ref": r["id"], "created_at": now} for r in rows), batch_size=5000)
    stats = app.store.outbox_stats()  # read once: its age ticks between two reads
    assert {k: v for k, v in stats.items() if k != "oldest_age_s"} == {"pending": n, "dropped_events": 0,
                                                                       "dropped_snapshots": 0}
    client = app.sync_client(lambda: {}, lambda: "")
    client.start()
    try:
        wait_for(lambda: len(central.events) >= n, 120, "50,000 events at the centre", step=0.2)
        wait_for(lambda: app.store.outbox_stats()["pending"] == 0, 30, "an empty outbox", step=0.2)
    finally:
        client.stop()
        app.close()
    assert set(central.events) == {r["id"] for r in rows}
    assert central.order["dev-50k"] == sorted(central.order["dev-50k"])
