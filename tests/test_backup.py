"""`gatectl backup` / `gatectl restore` on real SQLite files, through the real CLI in another
process: a backup taken while a writer keeps inserting events is consistent; restore refuses
while a daemon holds the store, refuses an unknown schema and hostile archives in one line, and
moves the current data aside instead of deleting them."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
import threading
from pathlib import Path

import numpy as np

from gatectl.store import Store
from tests.conftest import ok, one_line_error, run_cli, wait_for

VEC = np.ones(128, np.float32) / np.sqrt(128)


def image(i: int) -> np.ndarray:
    return np.full((48, 64, 3), i % 250, np.uint8)


def unpack(backup: Path, dest: Path) -> tuple[dict, Path, set[str]]:
    """(manifest, the database file, the snapshot paths in the archive)."""
    with tarfile.open(backup) as tar:
        names = tar.getnames()
        tar.extractall(dest, filter="data")
    manifest = json.loads((dest / "manifest.json").read_text())
    snaps = {n.removeprefix("snapshots/") for n in names if n.startswith("snapshots/")}
    return manifest, dest / "gatectl.db", snaps


def test_a_backup_while_events_are_written_is_consistent_and_restores(app, tmp_path):
    app.store.add_resident("Resident A", "1-1-101", [(VEC, 1.0)], "m")
    app.site_models.mkdir(parents=True)  # a site's own detector (`gatectl models install`)
    (app.site_models / "site_det.onnx").write_bytes(b"onnx bytes")
    for i in range(5):
        app.recorder.record("lobby", "access", "denied", "unknown face", image(i))
    stop = threading.Event()
    written = [5]

    def writer() -> None:  # the daemon's recorder, on its own thread and connection
        while not stop.is_set():
            app.recorder.record("lobby", "access", "denied", "unknown face", image(written[0]))
            written[0] += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        wait_for(lambda: written[0] > 50, timeout=30, what="events being written")
        before = app.store.event_count()
        out = ok(run_cli("backup", str(tmp_path / "site.tar"), data=app.data_dir))
        wait_for(lambda: app.store.event_count() > before + 20, timeout=30, what="more events")
    finally:
        stop.set()
        thread.join(timeout=30)
    after = app.store.event_count()
    assert "1 resident(s)" in out
    manifest, db, snaps = unpack(tmp_path / "site.tar", tmp_path / "unpacked")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        referenced = {r[0] for r in conn.execute("SELECT snapshot FROM events")}
        [name] = [r[0] for r in conn.execute("SELECT name FROM residents")]
    assert (tmp_path / "unpacked" / "models" / "site_det.onnx").read_bytes() == b"onnx bytes"
    assert before <= n < after  # a point between the writes, not the end
    assert referenced <= snaps  # every row's snapshot file is in the backup
    assert name == "Resident A"
    assert manifest["schema"] == [r[0] for r in sqlite3.connect(db).execute(
        "SELECT name FROM _sqlite_migrations ORDER BY rowid")]

    # restore: the backup's state comes back, the current one is kept aside whole
    app.close()
    (app.site_models / "site_det.onnx").write_bytes(b"installed after the backup")
    out = ok(run_cli("restore", str(tmp_path / "site.tar"), data=app.data_dir))
    assert f"{n} event(s)" in out and "previous data are in" in out
    aside = Path(out.rsplit("previous data are in ", 1)[1].strip())
    restored = Store(app.store_path)
    try:
        assert restored.event_count() == n
        assert all((app.snapshot_dir / s).is_file() for s in referenced)
    finally:
        restored.close()
    previous = Store(aside / "gatectl.db")
    try:
        assert previous.event_count() == after
    finally:
        previous.close()
    assert len(list((aside / "snapshots").rglob("*.jpg"))) == after
    assert (app.site_models / "site_det.onnx").read_bytes() == b"onnx bytes"
    assert (aside / "models" / "site_det.onnx").read_bytes() == b"installed after the backup"


def test_restore_refuses_while_the_daemon_runs(app, tmp_path):
    from gatectl.runtime.runner import Runner

    ev = app.recorder.record("lobby", "access", "denied", "unknown face", image(1))
    ok(run_cli("backup", str(tmp_path / "b.tar"), data=app.data_dir))
    runner = Runner(app)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: runner.workers, timeout=120, what="the daemon to start")
        line = one_line_error(run_cli("restore", str(tmp_path / "b.tar"), data=app.data_dir))
        assert "running `gatectl run`" in line and "systemctl stop gatectl" in line
        second = one_line_error(run_cli("run", data=app.data_dir))  # nor a second daemon
        assert "in use by a running `gatectl run`" in second
    finally:
        runner.stop.set()
        thread.join(timeout=30)
    assert not list(app.data_dir.glob("*before-restore*"))
    assert ev.id in {e.id for e in app.store.events()}  # the daemon's camera events came after
    assert (app.snapshot_dir / ev.snapshot).is_file()


def rewritten(backup: Path, out: Path, manifest: dict | None = None,
              extra: tuple[str, bytes] | None = None) -> Path:
    """The backup with another manifest, or a member added."""
    with tarfile.open(backup) as src, tarfile.open(out, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name == "manifest.json" and manifest is not None:
                data = json.dumps(manifest).encode()
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
        if extra:
            info = tarfile.TarInfo(extra[0])
            info.size = len(extra[1])
            dst.addfile(info, io.BytesIO(extra[1]))
    return out


def test_restore_refuses_an_unknown_schema_and_hostile_archives_in_one_line(app, tmp_path):
    app.recorder.record("lobby", "access", "denied", "unknown face", image(1))
    ok(run_cli("backup", str(tmp_path / "b.tar"), data=app.data_dir))
    manifest, _, _ = unpack(tmp_path / "b.tar", tmp_path / "u")
    app.close()
    newer = rewritten(tmp_path / "b.tar", tmp_path / "newer.tar",
                      {**manifest, "schema": [*manifest["schema"], "m099_from_the_future"]})
    line = one_line_error(run_cli("restore", str(newer), data=app.data_dir))
    assert "newer.tar" in line and "m099_from_the_future" in line
    evil = rewritten(tmp_path / "b.tar", tmp_path / "evil.tar", extra=("../escape.txt", b"x"))
    line = one_line_error(run_cli("restore", str(evil), data=app.data_dir))
    assert "outside the backup's layout" in line
    assert not (app.data_dir.parent / "escape.txt").exists()
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    assert "junk.tar" in one_line_error(run_cli("restore", str(tmp_path / "junk.tar"),
                                                data=app.data_dir))
    assert "no such backup" in one_line_error(run_cli("restore", str(tmp_path / "none.tar"),
                                                      data=app.data_dir))
    # nothing was touched by the refusals
    assert not list(app.data_dir.glob("*before-restore*"))
    assert not list(app.data_dir.glob(".gatectl.db.restore-*"))
    s = Store(app.store_path)
    try:
        assert s.event_count() == 1
    finally:
        s.close()


def test_the_hold_is_one_per_process_and_refused_to_another(tmp_path):
    """Two Apps of one daemon (a reload) share the hold; another process is refused until the
    last one lets go."""
    import subprocess
    import sys

    from gatectl.store.backup import StoreHold

    db = tmp_path / "gatectl.db"
    probe = ("import sys; from pathlib import Path; from gatectl.store.backup import StoreHold\n"
             "try:\n StoreHold(Path(sys.argv[1])).acquire('probe')\nexcept Exception as e:\n"
             " print(e); sys.exit(3)\n")

    def other_process() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", probe, str(db)], capture_output=True,
                              text=True, timeout=60)

    a, b = StoreHold(db), StoreHold(db)
    a.acquire("gatectl run")
    b.acquire("gatectl run")
    refused = other_process()
    assert refused.returncode == 3 and "in use by a running `gatectl run`" in refused.stdout
    a.release()
    assert other_process().returncode == 3  # b still holds it
    b.release()
    assert other_process().returncode == 0
