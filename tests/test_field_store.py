"""Store-side field bugs of issue 13: ids are never reused, anti-passback survives a restart,
and erasing a resident leaves no name behind (events, outbox, INFO logs) while their watchlist
entry is kept, not dropped silently."""

from __future__ import annotations

import logging

import numpy as np

from gatectl.config import Config
from gatectl.store.recorder import EventRecorder
from gatectl.hw.outputs import Outputs
from gatectl.hw.relay import SimulatedRelay
from gatectl.control.controls import Controls
from gatectl.store import Store
from tests.conftest import FakeClock

VEC = np.ones(128, np.float32) / np.sqrt(128)


def test_resident_and_watchlist_ids_are_never_reused(tmp_path):
    s = Store(tmp_path / "g.db")
    a = s.add_resident("A", "1", [(VEC, 0.9)], "m1")
    b = s.add_resident("B", "1", [(VEC, 0.9)], "m1")
    s.remove_resident(b.id)
    c = s.add_resident("C", "1", [(VEC, 0.9)], "m1")
    assert c.id > b.id > a.id  # C must not inherit B's cooldown / anti-passback state
    w1 = s.add_watch("W", "", None, [(VEC, 0.9)], "m1")
    s.remove_watch(w1.id)
    w2 = s.add_watch("X", "", None, [(VEC, 0.9)], "m1")
    assert w2.id > w1.id
    s.replicate_resident("uid-central", 1, "D", "2", "active", [(VEC, 0.9)], "m1")
    d = s.find_residents("uid-central")[0]
    assert d.id > c.id
    s.close()
    s = Store(tmp_path / "g.db")  # and across a restart
    s.remove_resident(d.id)
    assert s.add_resident("E", "1", [(VEC, 0.9)], "m1").id > d.id


def test_migration_keeps_existing_data_and_the_highest_id(tmp_path):
    """A store made by the previous schema (plain INTEGER PRIMARY KEY): every row and reference
    survives the migration, and the next id is above every id in use."""
    from sqlite_utils import Database

    from gatectl.store.migrations import migrations

    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m004_ids_never_reused")
    db.executescript("""
        INSERT INTO residents (id, uid, name, unit, created_at) VALUES (1, 'u1', 'A', '1', 0), (5, 'u5', 'B', '2', 0);
        INSERT INTO watchlist (id, uid, name, reason, resident_id, created_at) VALUES (3, 'w3', 'B', 'x', 5, 0);
        INSERT INTO templates (owner_kind, owner_id, model_id, quality, embedding, created_at)
            VALUES ('resident', 5, 'm1', 0.9, x'00', 0);
        INSERT INTO plates (plate, list, resident_id, created_at) VALUES ('京A12345', 'resident', 5, 0);
        INSERT INTO enrollment_photos (resident_id, path) VALUES (5, 'p.jpg');
        INSERT INTO events (id, ts, gate, kind, decision, resident_id, watchlist_id) VALUES ('e1', 0, 'g', 'access', 'granted', 5, 3);
    """)
    db.close()

    s = Store(path)
    assert "AUTOINCREMENT" in s.db.execute("SELECT sql FROM sqlite_master WHERE name='residents'").fetchone()[0]
    assert [(r.id, r.name) for r in s.residents()] == [(1, "A"), (5, "B")]
    assert s.watched_residents()[5].id == 3
    assert s.plates("京A12345")[0]["resident_id"] == 5
    e = s.events()[0]
    assert (e.id, e.resident_id, e.watchlist_id) == ("e1", 5, 3)
    assert s.db.execute("SELECT count(*) FROM enrollment_photos WHERE resident_id = 5").fetchone()[0] == 1
    assert s.db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert s.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    s.remove_watch(3)
    s.remove_resident(5)
    assert s.add_resident("C", "3", [(VEC, 0.9)], "m1").id == 6
    assert s.add_watch("D", "", None, [(VEC, 0.9)], "m1").id == 4
    s.close()


ANTI_PASSBACK_SITE = {
    "outputs": [{"name": "door", "channel": 0}],
    "doors": [{"name": "door", "output": "door", "anti_passback_s": 60}],
}


def controls_on(store: Store, mono: FakeClock) -> Controls:
    cfg = Config.model_validate(ANTI_PASSBACK_SITE)
    return Controls(cfg, Outputs(cfg.outputs, {"main": SimulatedRelay(clock=mono)}),
                    EventRecorder(store, store.path.parent / "snaps"), clock=mono)


def test_anti_passback_survives_a_restart(tmp_path):
    wall, mono = FakeClock(), FakeClock(500.0)
    s = Store(tmp_path / "g.db", clock=wall)
    rid = s.add_resident("A", "1", [(VEC, 0.9)], "m1").id
    c = controls_on(s, mono)
    assert c.anti_passback_ok("door", rid)
    c.grant("door", rid)
    s.close()

    wall.advance(20)
    mono.t = 3.0  # a restart: the monotonic clock starts again
    s = Store(tmp_path / "g.db", clock=wall)
    c = controls_on(s, mono)
    assert not c.anti_passback_ok("door", rid)  # 20 s after the pass: still refused
    wall.advance(41)
    mono.advance(41)
    assert c.anti_passback_ok("door", rid)  # 61 s after the pass
    # erasure takes the pass record with it
    s.remove_resident(rid)
    assert s.db.execute("SELECT count(*) FROM anti_passback").fetchone()[0] == 0


def test_erasure_leaves_no_name_in_events_outbox_or_info_logs(tmp_path, caplog):
    """An old-style reason ('watchlist: Rose Leslie') is scrubbed on removal, and new reasons
    never carry a name: they reference the watchlist entry by id."""
    from gatectl.domain.access import decide_watchlisted

    s = Store(tmp_path / "g.db", publish=True)
    r = s.add_resident("Rose Leslie", "7-1-702", [(VEC, 0.9)], "m1")
    w = s.add_watch(r.name, "", r.id, [], "m1")
    verdict = decide_watchlisted(w)
    assert "Rose" not in verdict.reason and str(w.id) in verdict.reason
    rec = EventRecorder(s, tmp_path / "snaps")
    old = rec.record("g", "alert", "alert", "watchlist: Rose Leslie (7-1-702)", resident_id=r.id,
                     watchlist_id=w.id)
    other = rec.record("g", "command", "granted", "resident.status Rose Leslie suspended")
    s.add_plate("京A12345", "resident", resident_id=r.id, unit="7-1-702")
    plate = rec.record("lane", "access", "granted", "京A12345 entry: resident 7-1-702")
    s.remove_resident(r.id)
    dump = "\n".join(s.db.conn.iterdump())
    kept = s.watch_entries()
    # the watchlist entry is kept on purpose (see below); everything else is gone
    assert [k.id for k in kept] == [w.id]
    dump_without_watch = dump.replace(f"'{kept[0].uid}','Rose Leslie'", "")
    assert "Rose Leslie" not in dump_without_watch and "7-1-702" not in dump_without_watch
    reasons = {e.id: e.reason for e in s.events()}
    assert "Rose" not in reasons[old.id] and "Rose" not in reasons[other.id]
    assert reasons[plate.id] == "京A12345 entry: resident [unit]"
    outbox = " ".join(str(row) for row in s.outbox_after(0, 100))
    assert "Rose" not in outbox and "7-1-702" not in outbox


def test_removing_a_watchlisted_resident_keeps_the_watchlist_entry_with_its_face(tmp_path):
    """A guard expects someone on the watchlist to still raise the alert after they moved out:
    the entry stays, detached from the resident, and keeps the face it matched by."""
    s = Store(tmp_path / "g.db")
    r = s.add_resident("Rose Leslie", "7-1-702", [(VEC, 0.9)], "m1")
    w = s.add_watch(r.name, "banned", r.id, [], "m1")
    s.remove_resident(r.id)
    (entry,) = s.watch_entries()
    assert entry.id == w.id and entry.resident_id is None
    owners = [o for o, _ in s.iter_templates("m1")]
    assert owners == [("watchlist", w.id)]  # the face moved to the entry; no resident left
    assert s.residents() == []


def test_face_gate_info_log_carries_no_name(tmp_path, caplog):
    from gatectl.runtime.app import App
    from gatectl.config import default_config
    from gatectl.sources.media import read_image
    from tests.conftest import FACES, enroll

    app = App(default_config(), tmp_path / "state", boards={"main": SimulatedRelay()}, clock=FakeClock())
    try:
        enroll(app, "Barack Obama", "obama_01.jpg", unit="9-9-909")
        gate = app.gates()[0]
        caplog.set_level(logging.INFO)
        img = read_image(FACES / "obama_02.jpg")
        decisions = []
        for i in range(3):
            decisions += gate.process(img, float(i))
        assert [d.decision for d in decisions] == ["granted"]
        info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        assert any("granted" in m for m in info)
        assert not any("Obama" in m or "9-9-909" in m for m in info), info
    finally:
        app.close()


def test_residents_remove_says_the_watchlist_entry_is_kept(tmp_path):
    from tests.conftest import FACES, run_cli

    d = tmp_path / "state"
    r = run_cli("enroll", "--name", "Rose Leslie", "--unit", "7-1-702", "--photo", str(FACES / "rose_leslie_01.jpg"),
                data=d)
    assert r.returncode == 0, r.stderr
    assert run_cli("watchlist", "add", "--resident", "1", "--reason", "banned", data=d).returncode == 0
    r = run_cli("residents", "remove", "1", data=d)
    assert r.returncode == 0, r.stderr
    assert "kept watchlist entry #1" in r.stdout and "gatectl watchlist remove 1" in r.stdout
    listing = run_cli("watchlist", "list", data=d).stdout.splitlines()
    assert len(listing) == 2 and "banned" in listing[1]
    # the kept entry still alerts on the face
    r = run_cli("replay", "--json", str(FACES / "rose_leslie_02.jpg"), data=d)
    assert '"decision": "alert"' in r.stdout and "Rose" not in r.stdout.split('"reason"')[1].split(",")[0]
