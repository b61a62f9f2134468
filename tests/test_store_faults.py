"""The store when the SD card fails: corrupt pages, a held write lock, a read-only filesystem;
the spool of events the store could not take; retention of orphan files and of event rows.

Real SQLite files damaged by overwriting their pages, a real second process holding the write
lock, a real read-only mount, real `gatectl run` subprocesses."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gatectl.config import default_config
from gatectl.domain.records import DAY_SECONDS
from gatectl.runtime.app import App
from gatectl.config.run import RunConfig
from gatectl.runtime.runner import GateWorker
from gatectl.sources.media import read_image
from gatectl.store import Store
from gatectl.store.db import StoreError
from gatectl.store.recorder import EventRecorder, EventSpool, new_event_id
from scripts.bench_store import LOCKER  # the same lock holder the benchmark measures with
from tests.conftest import FACES, REPO, FakeClock, enroll, run_cli, wait_for

VEC = np.ones(128, np.float32) / np.sqrt(128)
PAGE = 4096


def corrupt_table(db: Path, table: str) -> list[int]:
    """Overwrite every page of ``table``'s b-tree roots (the table and its indexes) with noise,
    as an SD card that lost those sectors would; returns the page numbers."""
    conn = sqlite3.connect(db)
    pages = [r[0] for r in conn.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = ? AND rootpage > 0",
                                        [table])]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0, "close every connection first"
    rng = np.random.default_rng(13)
    with open(db, "r+b") as f:
        for page in pages:
            f.seek((page - 1) * page_size)
            f.write(rng.integers(0, 256, page_size, np.uint8).tobytes())
    return pages


def filled_store(path: Path, clock=None, n_events: int = 50) -> None:
    s = Store(path, clock=clock or time.time)
    s.add_resident("Li Lei", "3-2-1501", [(VEC, 0.9)], "m1")
    rec = EventRecorder(s, path.parent / "snaps")
    for _ in range(n_events):
        rec.record("lobby", "access", "denied", "unknown face " + "x" * 80)
    s.close()


def test_every_sqlite_error_on_a_corrupt_file_is_a_store_error(tmp_path):
    """Today a corrupt page raises sqlite3.DatabaseError, which the recorder does not catch."""
    db = tmp_path / "g.db"
    filled_store(db)
    corrupt_table(db, "events")
    s = Store(db)  # page 1 (the schema) is intact: the file opens
    with pytest.raises(StoreError, match="g.db: write failed .*malformed"):
        s.insert_event({"id": new_event_id(time.time()), "ts": time.time(), "gate": "g", "kind": "access",
                        "decision": "denied", "reason": "x"})
    with pytest.raises(StoreError, match="g.db: read failed"):
        s.events()
    assert [r.name for r in s.residents()] == ["Li Lei"]  # what is not damaged still reads
    rec = EventRecorder(s, tmp_path / "snaps", spool=EventSpool(tmp_path / "g.db.spool", 65536))
    ev = rec.record("lobby", "access", "granted", "resident", resident_id=1)  # does not raise
    assert rec.unrecorded == 1 and rec.store_failing and [r["id"] for r, _ in rec.spool.entries()] == [ev.id]


def test_corrupt_store_still_opens_the_door_for_a_recognised_resident(tmp_path, relay, clock, caplog):
    """The decision used to raise before the door: every resident locked out, no journal line."""
    data = tmp_path / "state"
    first = App(default_config(), data, boards={"main": relay}, clock=clock)
    enroll(first, "Barack Obama", "obama_01.jpg")
    first.close()
    corrupt_table(data / "gatectl.db", "events")

    app = App(default_config(), data, boards={"main": relay}, clock=clock)
    try:
        gate = app.gate(app.cfg.gates[0])
        img = read_image(FACES / "obama_02.jpg")
        with caplog.at_level(logging.INFO):
            decisions = gate.process(img, 0.0) + gate.process(img, 0.1)
        assert [(d.decision, d.resident) for d in decisions] == [("granted", "Barack Obama")]
        assert len(relay.history) == 1  # the door opened
        lines = [r.getMessage() for r in caplog.records if "EVENT NOT STORED" in r.getMessage()]
        assert len(lines) == 1 and decisions[0].event.id in lines[0] and "spooled" in lines[0]
        assert app.recorder.unrecorded == 1
        [(row, seen)] = app.recorder.spool.entries()
        assert row["id"] == decisions[0].event.id and seen == 1
        assert (app.snapshot_dir / row["snapshot"]).exists()  # the photo is kept for the row to come

        # the gate worker is doing its job: the supervisor keeps petting the watchdog
        worker = _worker_on(gate, img)
        try:
            wait_for(lambda: worker.gate.frames >= 6, timeout=60, what="frames through the gate")
            assert not worker.stalled(time.monotonic()) and worker.errors == 0
        finally:
            worker.stop.set()
            worker.thread.join(timeout=10)
    finally:
        app.close()


class _Frames:
    """A camera reader that always has the same frame: the gate worker's input."""

    def __init__(self, image):
        self.image, self.seq, self.missed = image, 0, 0
        self.camera = type("Camera", (), {"finished": False})()

    def get(self, timeout: float):
        self.seq += 1
        time.sleep(0.01)
        return type("Frame", (), {"image": self.image, "t_capture": time.monotonic(), "seq": self.seq})()


def _worker_on(gate, image, run: RunConfig | None = None) -> GateWorker:
    w = GateWorker(lambda: gate, _Frames(image), threading.Event(), run)
    w.start()
    return w


def test_a_worker_failing_on_every_frame_withholds_the_watchdog():
    """Heartbeat fresh but every frame raising is not doing the job: a restart may help."""

    class Broken:
        cfg = type("Cfg", (), {"name": "lobby"})()
        frames = 0

        def process(self, image, t):
            self.frames += 1
            raise RuntimeError("every frame fails")

    logging.getLogger("gatectl.run").disabled = True
    # restarts after errors in a row off: the time rule alone (stall_s, 10 s)
    w = _worker_on(Broken(), np.zeros((8, 8, 3), np.uint8), RunConfig(restart_after_errors=1000))
    try:
        wait_for(lambda: w.errors >= 3, what="failing frames")
        assert w.heartbeat > time.monotonic() - 5  # the old check saw a live, fresh worker
        assert not w.stalled(time.monotonic())
        assert w.stalled(time.monotonic() + 11)  # failing for longer than run.stall_s
    finally:
        w.stop.set()
        w.thread.join(timeout=5)
        logging.getLogger("gatectl.run").disabled = False


class _Daemon:
    """`gatectl run` as a subprocess, its stderr collected line by line."""

    def __init__(self, data: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "gatectl", "--data", str(data), "run"], cwd=REPO,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def saw(self, text: str) -> str | None:
        return next((ln for ln in self.lines if text in ln), None)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.proc.kill()


@pytest.mark.parametrize("damage", ["schema", "events"])
def test_run_moves_a_corrupt_store_aside_instead_of_crash_looping(tmp_path, damage):
    """A corrupt schema page made `gatectl run` exit at every start (systemd restart loop); a
    corrupt table made it run with every decision failing. Both: moved aside, fresh store, alert."""
    data = tmp_path / "state"
    data.mkdir()
    db = data / "gatectl.db"
    filled_store(db)
    if damage == "schema":
        with open(db, "r+b") as f:  # page 1 past the 100-byte file header: sqlite_master
            f.seek(100)
            f.write(np.random.default_rng(5).integers(0, 256, PAGE - 100, np.uint8).tobytes())
    else:
        corrupt_table(db, "events")
    daemon = _Daemon(data)
    try:
        line = wait_for(lambda: daemon.saw("store corrupt") or daemon.proc.poll() is not None, timeout=120,
                        what="the corrupt-store alert")
        assert daemon.proc.poll() is None, "\n".join(daemon.lines)
        assert "moved aside to gatectl.db.corrupt-" in line
        if damage == "schema":  # nothing readable: everyone must be enrolled again (no centre)
            assert "nothing salvaged" in line and "residents must be enrolled again" in line
        else:  # who may pass was intact: restored; the events stay in the corrupt copy
            assert "salvaged 1 residents, 0 watchlist, 1 templates, 0 tombstones" in line
            assert "enrolled again" not in line
        wait_for(lambda: daemon.saw("running 1 gate"), timeout=120, what="the gates to start")
        assert daemon.stop() == 0
    finally:
        daemon.proc.kill()
    assert not any("Traceback" in ln for ln in daemon.lines), "\n".join(daemon.lines)
    [moved] = list(data.glob("gatectl.db.corrupt-*[0-9]"))
    assert moved.stat().st_size > 0
    fresh = Store(db)
    [alert] = fresh.events(kind="alert")
    assert alert.gate == "system" and "store corrupt" in alert.reason
    assert [r.name for r in fresh.residents()] == ([] if damage == "schema" else ["Li Lei"])
    fresh.close()
    # the next start finds a healthy store: nothing more is moved
    again = _Daemon(data)
    try:
        wait_for(lambda: again.saw("running 1 gate"), timeout=120, what="the second start")
        assert again.stop() == 0
    finally:
        again.proc.kill()
    assert not again.saw("store corrupt") and len(list(data.glob("gatectl.db.corrupt-*[0-9]"))) == 1


def test_corrupt_store_asks_the_centre_for_a_resync(tmp_path):
    from gatectl.config import parse_config
    from gatectl.runtime.runner import Runner

    data = tmp_path / "state"
    data.mkdir()
    filled_store(data / "gatectl.db")
    corrupt_table(data / "gatectl.db", "residents")
    cfg = parse_config({"sync": {"enabled": True, "host": "127.0.0.1", "port": 1}})
    app = App(cfg, data)
    try:
        Runner(app)._recover_store()
        rows = app.store.outbox_after(0, 10)
        assert [r["kind"] for r in rows] == ["event", "resync"]
        reason = app.store.events(kind="alert")[0].reason
        assert "resync requested from the centre" in reason and "lost residents/watchlist/templates" in reason
        assert app.store.residents() == []
    finally:
        app.close()


def test_salvage_restores_who_may_pass_all_or_nothing(tmp_path):
    """A resident restored without their watchlist entry would be let in: the identity tables
    come back together or not at all; plates and nonces on their own."""
    from gatectl.store.salvage import quarantine_if_corrupt, salvage

    db = tmp_path / "g.db"
    s = Store(db)
    r = s.add_resident("Li Lei", "1", [(VEC, 1.0)], "m")
    s.add_watch("Li Lei", "banned", r.id, [], "m")
    s.add_plate("川A8H458", "resident", unit="3-1201")
    s.claim("nonce-1", time.time() + 600, time.time(), forget_before=0)
    s.close()
    corrupt_table(db, "watchlist")
    target, problem = quarantine_if_corrupt(db, "20261202-000000")
    assert "malformed" in problem or "watchlist" in problem
    fresh = Store(db)
    summary, restored = salvage(target, fresh)
    assert not restored and fresh.residents() == [] and fresh.watch_entries() == []
    assert summary.startswith("salvaged 1 plates, 0 list_versions, 1 nonces; lost residents/watchlist/templates/tombstones")
    assert [p["plate"] for p in fresh.plates()] == ["川A8H458"] and not fresh.claim("nonce-1", 0, 0, 0)
    assert fresh.newest_iat() == pytest.approx(time.time(), abs=60)
    fresh.close()

    # a template page of noise that still parses is not a face: not restored either
    db2 = tmp_path / "h.db"
    s = Store(db2)
    s.add_resident("A", "1", [(np.full(128, 7.0, np.float32), 1.0)], "m")
    s.close()
    fresh = Store(tmp_path / "fresh.db")
    summary, restored = salvage(db2, fresh)
    assert not restored and "is not a unit vector" in summary and fresh.residents() == []




def test_a_held_write_lock_bounds_the_wait_and_the_event_is_spooled_then_inserted(tmp_path, caplog):
    """A backup or a `sqlite3` shell holding the write lock made every decision wait 5 s."""
    db = tmp_path / "g.db"
    store = Store(db, publish=True)
    r = store.add_resident("Li Lei", "1", [(VEC, 1.0)], "m")
    rec = EventRecorder(store, tmp_path / "snaps", spool=EventSpool(tmp_path / "g.db.spool", 65536),
                        lock_wait_s=0.3)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with caplog.at_level(logging.ERROR):
            ev = rec.record("lobby", "access", "granted", "resident", np.zeros((16, 16, 3), np.uint8),
                            resident_id=r.id)
        waited = time.monotonic() - t0
        assert waited < 2.0, f"the decision waited {waited:.2f} s for the lock"
        assert any("EVENT NOT STORED" in m and "spooled" in m and ev.id in m for m in caplog.messages)
        assert rec.drain_spool() == 0  # still locked: stays in the spool
        assert len(rec.spool.entries()) == 1
    finally:
        locker.communicate("\n", timeout=10)
    assert rec.drain_spool() == 1
    assert rec.spool.size() == 0 and rec.store_failing is None
    [row] = store.events()
    assert (row.id, row.decision, row.resident_id, row.snapshot) == (ev.id, "granted", r.id, ev.snapshot)
    assert store.resident(r.id).last_seen_at == ev.ts
    outbox = [(o["kind"], o["ref"]) for o in store.outbox_after(0, 10) if o["kind"] != "enroll"]
    assert outbox == [("event", ev.id), ("snapshot", ev.id)]
    # a crash after the insert but before the spool was cut: the same line again is no new row
    rec.spool.append(json.loads(json.dumps(store.events()[0].__dict__ | {"snapshot_bytes": 0})), r.id)
    assert rec.drain_spool() == 0 and rec.spool.size() == 0
    assert len(store.events()) == 1 and len(store.outbox_after(0, 10)) == 3


def test_spool_is_bounded_and_reads_its_own_file_as_untrusted(tmp_path, caplog):
    spool = EventSpool(tmp_path / "s.spool", 2048)
    row = {"id": new_event_id(1.0), "ts": 1.0, "gate": "g", "kind": "access", "decision": "denied",
           "reason": "unknown face", "resident_id": None, "watchlist_id": None, "score": None,
           "snapshot": None, "snapshot_bytes": 0}
    n = 0
    while spool.append(dict(row, id=new_event_id(1.0 + n)), None):
        n += 1
    assert 5 < n < 20 and spool.dropped == 1 and spool.size() <= 2048
    with open(spool.path, "ab") as f:  # a line that is not an event, and a torn last line
        f.write(b'{"row": {"id": "\\u001b[31mforged"}, "seen": null}\n{"row": {"id": "01')
    assert len(spool.entries()) == n
    store = Store(tmp_path / "g.db")
    with caplog.at_level(logging.ERROR):
        assert spool.drain(store, None) == n and len(store.events()) == n
    assert spool.bad_lines == 1
    assert any("malformed line" in m and "\x1b" not in m for m in caplog.messages)
    assert spool.path.read_bytes() == b'{"row": {"id": "01'  # the torn line waits; nothing invented
    # the next event does not vanish into the torn line: it starts a line of its own
    assert spool.append(dict(row, id=new_event_id(99.0), score=0.5), None)
    assert spool.drain(store, None) == 1 and spool.bad_lines == 2 and not spool.path.exists()
    assert len(store.events()) == n + 1


def test_spool_field_types_cover_every_event_field():
    from dataclasses import fields

    from gatectl.domain.records import Event
    from gatectl.store.recorder import _EVENT_FIELD_TYPES

    assert set(_EVENT_FIELD_TYPES) == {f.name for f in fields(Event)}


def test_retention_sweeps_orphans_and_tmp_files_but_never_a_referenced_one(tmp_path):
    clock = FakeClock()
    store = Store(tmp_path / "g.db", clock=clock)
    snaps = tmp_path / "snaps"
    rec = EventRecorder(store, snaps, clock=clock, spool=EventSpool(tmp_path / "g.db.spool", 65536))
    img = np.full((32, 32, 3), 90, np.uint8)
    kept = rec.record("g", "access", "denied", "unknown face", img)
    day = (snaps / kept.snapshot).parent
    orphan = day / f"{new_event_id(clock())}.jpg"  # a crash between the file and its row
    orphan.write_bytes(b"\xff\xd8 orphan")
    tmp = day / "x.jpg.tmp"  # a full disk mid-write
    tmp.write_bytes(b"partial")
    spooled = day / "spooled.jpg"  # its row waits in the spool
    spooled.write_bytes(b"\xff\xd8 spooled")
    rec.spool.append({"id": new_event_id(clock()), "ts": clock(), "gate": "g", "kind": "access",
                      "decision": "granted", "reason": "resident", "resident_id": None, "watchlist_id": None,
                      "score": None, "snapshot": str(spooled.relative_to(snaps)), "snapshot_bytes": 9}, None)
    enrol = snaps / "enrollment" / "uid1" / "0.jpg"
    enrol.parent.mkdir(parents=True)
    enrol.write_bytes(b"\xff\xd8 enrollment")
    r = store.add_resident("A", "1", [(VEC, 1.0)], "m")
    store.add_enrollment_photo(r.id, Path("enrollment/uid1/0.jpg"))
    empty = snaps / "2026" / "01" / "01"
    empty.mkdir(parents=True)
    old = clock() - 2 * 3600
    for p in (snaps / kept.snapshot, orphan, tmp, spooled, enrol):
        os.utime(p, (old, old))
    fresh_tmp = day / "y.jpg.tmp"  # being written right now
    fresh_tmp.write_bytes(b"in flight")

    clock.advance(3600)  # now is an hour later; the grace period is an hour
    os.utime(fresh_tmp, (clock(), clock()))
    removed = rec.apply_retention(retention_days=30, max_mb=1000)
    assert removed == 2
    assert not orphan.exists() and not tmp.exists() and not empty.exists()
    assert (snaps / kept.snapshot).exists() and spooled.exists() and enrol.exists() and fresh_tmp.exists()


def test_event_rows_expire_by_age_and_count_keeping_recent_access_events(tmp_path):
    assert default_config().storage.event_retention_days == 180  # access records: 180 days by default
    clock = FakeClock()
    store = Store(tmp_path / "g.db", clock=clock, publish=True)
    rec = EventRecorder(store, tmp_path / "snaps", clock=clock)
    img = np.full((16, 16, 3), 60, np.uint8)
    old_access = rec.record("g", "access", "granted", "resident", img)
    clock.advance(200 * DAY_SECONDS)
    store.record_pass("京A12345", "lane", "entry", old_access.ts, "granted", old_access.id)
    recent = [rec.record("g", kind, None, "x") for kind in ["control"] * 3 + ["access"] * 3 + ["alert"]]
    removed = rec.apply_retention(retention_days=365, max_mb=1000, event_days=180, event_max_rows=1000)
    assert removed == 1 and not (tmp_path / "snaps" / old_access.snapshot).exists()
    assert [e.id for e in store.events()] == [e.id for e in recent]
    assert old_access.id not in {o["ref"] for o in store.outbox_after(0, 100)}
    assert store.vehicle_passes()[0]["event_id"] is None  # the pass stays, unlinked
    # over the count: the oldest non-access events go, never an access event within 180 days
    assert store.expire_events(clock() - 180 * DAY_SECONDS, max_rows=4) == []
    assert [e.kind for e in store.events()] == ["access"] * 3 + ["alert"]
    store.expire_events(clock() - 180 * DAY_SECONDS, max_rows=1)
    assert [e.kind for e in store.events()] == ["access"] * 3


@pytest.fixture
def ro_mount(tmp_path):
    """A real filesystem that can be remounted read-only (a tmpfs; needs root)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def test_read_only_filesystem_is_one_clear_line(ro_mount):
    """An SD card the kernel remounted read-only: SQLite's 'unable to open database file' told
    the technician nothing; now every command and the daemon say what is wrong in one line."""
    data = ro_mount / "state"
    s = Store(data / "gatectl.db")
    s.add_resident("A", "1", [(VEC, 1.0)], "m")
    s.close()
    subprocess.run(["mount", "-o", "remount,ro", str(ro_mount)], check=True)
    with pytest.raises(StoreError, match="gatectl.db: the filesystem holding the state folder is read-only"):
        Store(data / "gatectl.db")
    for args in (["residents", "list"], ["run"]):
        res = run_cli(*args, data=data)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert "read-only" in res.stderr and "Traceback" not in res.stderr


def _bench_config(tmp_path: Path) -> Path:
    """A face gate on a looping image folder: the resident walks up (3 frames), walks away
    (10 frames without a face, so the track ends), and comes back - a pass every ~2.6 s."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        (frames / f"a{i}.jpg").write_bytes((FACES / "obama_02.jpg").read_bytes())
    for i in range(10):
        (frames / f"b{i:02d}.jpg").write_bytes((REPO / "tests/data/noface/yolox_dog_bicycle.jpg").read_bytes())
    cfg = tmp_path / "bench.toml"
    cfg.write_text(f"""
[[cameras]]
name = "folder"
source = "{frames}"
kind = "images"
fps = 5
loop = true
max_frame_age_ms = 2000

[[outputs]]
name = "door"
channel = 0

[[doors]]
name = "door"
output = "door"

[[gates]]
kind = "face"
name = "bench-gate"
camera = "folder"
door = "door"
cooldown_s = 0
""")
    return cfg


def test_daemon_keeps_opening_and_spools_while_another_process_holds_the_lock(tmp_path):
    """`gatectl run` for real: a `sqlite3`-style second process holds the write lock; the
    resident still gets in at once, the watchdog keeps being petted, the events wait in the
    spool and reach the store (and its outbox) when the lock is released."""
    import socket

    cfg = _bench_config(tmp_path)
    data = tmp_path / "state"
    res = run_cli("enroll", "--name", "Barack Obama", "--unit", "1-1-101", "--photo", str(FACES / "obama_01.jpg"),
                  data=data, config=cfg)
    assert res.returncode == 0, res.stderr
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(0.2)
    messages: list[tuple[float, str]] = []
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            try:
                messages.append((time.monotonic(), sock.recv(4096).decode()))
            except OSError:
                continue

    threading.Thread(target=listen, daemon=True).start()
    env = dict(os.environ, NOTIFY_SOCKET=str(notify), WATCHDOG_USEC="2000000")
    proc = subprocess.Popen([sys.executable, "-m", "gatectl", "--config", str(cfg), "--data", str(data), "run"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(ln.rstrip("\n")) for ln in proc.stderr], daemon=True).start()
    granted = lambda: [ln for ln in lines if "bench-gate: granted" in ln]
    locker = None
    try:
        wait_for(granted, timeout=120, what="a first grant")
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(data / "gatectl.db")], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert locker.stdout.readline().strip() == "locked"
        locked_at, before = time.monotonic(), len(granted())
        unstored = wait_for(lambda: [ln for ln in lines if "EVENT NOT STORED" in ln], timeout=60,
                            what="an event the locked store refused")
        assert "spooled for the store's recovery" in unstored[0] and "database is locked" in unstored[0]
        wait_for(lambda: len(granted()) >= before + 2, timeout=60, what="two grants while the lock is held")
        wait_for(lambda: sum(t > locked_at + 3 and m == "WATCHDOG=1" for t, m in messages) >= 2, timeout=30,
                 what="the watchdog still petted while the store is locked")
        spooled_ids = [json.loads(ln[ln.index("{"):])["id"] for ln in lines if "EVENT NOT STORED" in ln]
        locker.communicate("\n", timeout=10)
        wait_for(lambda: any("spooled event(s) inserted" in ln for ln in lines), timeout=30,
                 what="the spool drained into the store")
    finally:
        if locker is not None and locker.poll() is None:
            locker.kill()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            proc.kill()
            done.set()
    assert proc.returncode == 0 and not any("Traceback" in ln for ln in lines), "\n".join(lines[-30:])
    store = Store(data / "gatectl.db")
    stored = {e.id: e for e in store.events(limit=10_000)}
    assert spooled_ids and all(i in stored for i in spooled_ids)
    assert all(stored[i].decision == "granted" for i in spooled_ids)
    assert not (data / "gatectl.db.spool").exists()


def test_doctor_says_the_store_is_corrupt_as_run_would_find_it(tmp_path):
    """A store with a corrupt events table passed `doctor` ("[ok] store ... writable") while
    `run` moves it aside at start: doctor runs the same check."""
    data = tmp_path / "state"
    data.mkdir()
    filled_store(data / "gatectl.db")
    corrupt_table(data / "gatectl.db", "events")
    r = run_cli("doctor", "--camera-timeout", "0.2", data=data)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    [line] = [x for x in r.stdout.splitlines() if x.split(" ", 2)[1] == "store"]
    assert line.startswith(f"[FAIL] store {data / 'gatectl.db'}: corrupt (") and "will move it aside" in line, line
    assert not list(data.glob("gatectl.db.corrupt-*"))  # doctor only looks
