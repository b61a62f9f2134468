"""Store: durable settings, migrations, survives a restart, erasure and retention."""

from __future__ import annotations

import numpy as np
import pytest

from gatectl.domain.records import DAY_SECONDS
from gatectl.store import Store
from gatectl.store.db import StoreError
from gatectl.store.recorder import EventRecorder
from tests.conftest import FakeClock

VEC = np.ones(128, np.float32) / np.sqrt(128)


def test_pragmas_and_schema_version(tmp_path):
    s = Store(tmp_path / "g.db")
    q = lambda p: s.db.execute(f"PRAGMA {p}").fetchone()[0]  # noqa: E731
    assert q("journal_mode") == "wal"
    assert q("synchronous") == 2  # FULL
    assert q("busy_timeout") == 5000
    assert q("foreign_keys") == 1
    assert q("auto_vacuum") == 2  # INCREMENTAL
    version = s.schema_version
    assert version >= 1 and q("user_version") == version
    s.close()
    s2 = Store(tmp_path / "g.db")  # reopening applies nothing twice
    assert s2.schema_version == version


def test_templates_hold_no_identity_data(tmp_path):
    s = Store(tmp_path / "g.db")
    cols = {c.name for c in s.db["templates"].columns}
    assert cols == {"id", "owner_kind", "owner_id", "model_id", "quality", "embedding", "created_at"}


def test_store_survives_restart(tmp_path):
    clock = FakeClock()
    s = Store(tmp_path / "g.db", clock=clock)
    r = s.add_resident("Li Lei", "3-2-1501", [(VEC, 0.9), (VEC, 0.8)], "m1")
    rec = EventRecorder(s, tmp_path / "snaps")
    ev = rec.record("lobby", "access", "granted", "resident", np.zeros((48, 64, 3), np.uint8), resident_id=r.id,
                    score=0.77)
    s.close()
    s = Store(tmp_path / "g.db", clock=clock)
    [back] = s.residents()
    assert (back.name, back.unit, back.last_seen_at) == ("Li Lei", "3-2-1501", clock.t)
    [row] = s.events()
    assert (row.id, row.decision, row.score, row.resident_id) == (ev.id, "granted", 0.77, r.id)
    assert (tmp_path / "snaps" / row.snapshot).read_bytes()[:2] == b"\xff\xd8"  # a JPEG
    owners = [(o, v) for o, v in s.iter_templates("m1")]
    assert len(owners) == 2 and owners[0][0] == ("resident", r.id)
    np.testing.assert_allclose(owners[0][1], VEC)
    assert list(s.iter_templates("other-model")) == [] and s.foreign_model_templates("other") == 2


def test_event_ids_sort_by_time(tmp_path):
    clock = FakeClock()
    s = Store(tmp_path / "g.db", clock=clock)
    rec = EventRecorder(s, tmp_path / "snaps")
    ids = []
    for _ in range(50):
        ids.append(rec.record("g", "access", "denied", "unknown face").id)
        clock.advance(0.001)
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert [e.id for e in s.events()] == ids


def test_remove_resident_erases_templates_and_snapshots(tmp_path):
    s = Store(tmp_path / "g.db")
    rec = EventRecorder(s, tmp_path / "snaps")
    a = s.add_resident("A", "1", [(VEC, 1.0)], "m")
    b = s.add_resident("B", "2", [(VEC, 1.0)], "m")
    img = np.full((32, 32, 3), 128, np.uint8)
    ea = rec.record("g", "access", "granted", "resident", img, resident_id=a.id)
    eb = rec.record("g", "access", "granted", "resident", img, resident_id=b.id)
    s.add_watch("A", "test", a.id, [], "m")
    rev = s.directory_rev()
    files = s.remove_resident(a.id)
    rec.delete_files(files)
    assert not (tmp_path / "snaps" / ea.snapshot).exists()
    assert (tmp_path / "snaps" / eb.snapshot).exists()
    assert s.template_count(("resident", a.id)) == 0 and s.template_count(("resident", b.id)) == 1
    assert [r.name for r in s.residents()] == ["B"]
    # the watchlist entry is kept (detached, with the face) rather than dropped silently
    assert [(w.name, w.resident_id) for w in s.watch_entries()] == [("A", None)]
    ev = {e.id: e for e in s.events()}
    assert ev[ea.id].resident_id is None and ev[ea.id].snapshot is None  # audit row kept, anonymised
    assert s.directory_rev() > rev


def test_retention_by_age_and_by_size(tmp_path):
    clock = FakeClock()
    s = Store(tmp_path / "g.db", clock=clock)
    rec = EventRecorder(s, tmp_path / "snaps", clock=clock)
    rng = np.random.default_rng(1)
    evs = []
    for day in range(10):
        noise = rng.integers(0, 255, (120, 160, 3), np.uint8)  # noise compresses badly: ~15 KB each
        evs.append(rec.record("g", "access", "denied", "unknown face", noise))
        clock.advance(DAY_SECONDS)
    n, total = s.snapshot_usage()
    assert n == 10 and total > 10 * 10_000
    # 5 days of retention: the 5 oldest go (ages 10..6 days), the rest stay
    removed = rec.apply_retention(retention_days=5.5, max_mb=1000)
    assert removed == 5
    assert [e.snapshot is None for e in s.events()] == [True] * 5 + [False] * 5
    for e in evs[:5]:
        assert not (tmp_path / "snaps" / e.snapshot).exists()
    # a size budget of ~2 snapshots keeps only the newest two
    per = total / 10
    removed = rec.apply_retention(retention_days=100, max_mb=2.5 * per / 2**20)
    assert removed == 3
    assert [e.snapshot is not None for e in s.events()] == [False] * 8 + [True] * 2
    assert len(s.events()) == 10  # rows stay


def test_unwritable_database_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError) as exc:
        Store(tmp_path / "file" / "g.db")
    assert "\n" not in str(exc.value) and "g.db" in str(exc.value)
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="garbage.db: cannot open database"):
        Store(bad)


def test_snapshot_failure_keeps_the_event(tmp_path):
    s = Store(tmp_path / "g.db")
    blocked = tmp_path / "snaps"
    blocked.write_text("a file where the snapshot folder should be")  # every write fails
    rec = EventRecorder(s, blocked)
    ev = rec.record("g", "access", "denied", "unknown face", np.zeros((8, 8, 3), np.uint8))
    assert ev.snapshot is None and rec.snapshot_failures == 1
    assert [e.id for e in s.events()] == [ev.id]
