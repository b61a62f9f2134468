"""`gatectl events export`: CSV, and the zip with the snapshots and their SHA-256 sums, from a
real store through the real CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from datetime import datetime

import numpy as np

from tests.conftest import ok, one_line_error, run_cli

VEC = np.ones(128, np.float32) / np.sqrt(128)


def test_export_since_as_csv_and_as_a_zip_with_the_snapshots(app, clock, tmp_path):
    r = app.store.add_resident("Wang Wei", "3-2-1501", [(VEC, 1.0)], "m")
    old = app.recorder.record("lobby", "access", "granted", f"resident #{r.id}",
                              np.full((40, 40, 3), 1, np.uint8), resident_id=r.id)
    clock.advance(10 * 86400)
    since = datetime.fromtimestamp(clock.t - 3600).isoformat(timespec="seconds")
    new = [app.recorder.record("lobby", "access", "granted", f"resident #{r.id}",
                               np.full((40, 40, 3), 7, np.uint8), resident_id=r.id),
           app.recorder.record("lobby", "alert", "alert", "watchlist #1",
                               np.full((40, 40, 3), 9, np.uint8)),
           app.recorder.record("system", "system", None, "started")]
    data = app.data_dir

    out = ok(run_cli("events", "export", "--since", since, data=data))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [x["event"] for x in rows] == [e.id for e in new]
    assert rows[0]["resident"] == "Wang Wei" and rows[0]["unit"] == "3-2-1501"
    assert rows[0]["resident_id"] == str(r.id) and rows[0]["snapshot"] == new[0].snapshot
    assert old.id not in out

    z = tmp_path / "for-police.zip"
    said = ok(run_cli("events", "export", "--since", since, "--format", "zip", "--out", str(z),
                      data=data))
    assert "exported 3 event(s) with 2 snapshot(s)" in said
    with zipfile.ZipFile(z) as zf:
        names = set(zf.namelist())
        assert names == {"events.csv", "SHA256SUMS",
                         f"snapshots/{new[0].snapshot}", f"snapshots/{new[1].snapshot}"}
        assert zf.read(f"snapshots/{new[0].snapshot}") == \
            (app.snapshot_dir / new[0].snapshot).read_bytes()
        assert zf.read("events.csv").decode().replace("\r\n", "\n") == out  # text=True reads \n
        for line in zf.read("SHA256SUMS").decode().splitlines():
            digest, name = line.split("  ", 1)
            assert hashlib.sha256(zf.read(name)).hexdigest() == digest
    assert not list(tmp_path.glob("*.tmp"))


def test_export_arguments_are_checked_in_one_line(app, tmp_path):
    line = one_line_error(run_cli("events", "export", "--format", "zip", data=app.data_dir))
    assert "--out FILE.zip" in line
    line = one_line_error(run_cli("events", "list", "--format", "zip", data=app.data_dir))
    assert "for `events export`" in line
    line = one_line_error(run_cli("events", "export", "--since", "yesterday", data=app.data_dir))
    assert "--since" in line
