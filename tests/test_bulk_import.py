"""`gatectl residents import`: real photos through the real enrollment path in a real CLI
process; refusals with their reasons in a CSV; a re-run resumes (from the journal, and from the
store when the journal missed an enrollment)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from tests.conftest import FACES, NOFACE, REPO, ok, one_line_error, run_cli


def resident_folder(root: Path, name: str, *photos: Path, meta: dict | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    for p in photos:
        shutil.copy(p, d / p.name)
    if meta is not None:
        (d / "resident.json").write_text(json.dumps(meta))
    return d


def refusals(path: Path) -> dict[str, str]:
    with open(path, newline="") as f:
        return {row["source"]: row["reason"] for row in csv.DictReader(f)}


def residents(data: Path) -> dict[str, str]:
    out = ok(run_cli("residents", "list", "--json", data=data))
    return {r["name"]: r["unit"] for r in map(json.loads, out.splitlines())}


def test_a_folder_import_refuses_with_reasons_and_resumes(tmp_path):
    src, data = tmp_path / "photos", tmp_path / "state"
    resident_folder(src, "1-1-101__Barack Obama", FACES / "obama_01.jpg", FACES / "obama_02.jpg")
    resident_folder(src, "1-1-102__Joe Biden", FACES / "biden_01.jpg")
    resident_folder(src, "kit", FACES / "kit_harington_01.jpeg",
                    meta={"name": "Kit Harington", "unit": "2-1-201"})
    resident_folder(src, "rose", FACES / "rose_leslie_01.jpg")  # no unit
    resident_folder(src, "1-1-103__A Dog", NOFACE / "yolox_dog_bicycle.jpg")
    resident_folder(src, "1-1-104__Obama Again", FACES / "obama_03.jpg")
    resident_folder(src, "1-1-105__Nobody")  # no photo
    (src / "kit" / "notes.txt").write_text("not a photo: ignored")

    first = run_cli("residents", "import", str(src), "--refusals", str(tmp_path / "r1.csv"),
                    data=data)
    assert first.returncode == 1, first.stderr
    assert "imported 3 resident(s), 4 refused" in first.stdout and "r1.csv" in first.stdout
    assert "s per resident" in first.stdout
    assert residents(data) == {"Barack Obama": "1-1-101", "Joe Biden": "1-1-102",
                               "Kit Harington": "2-1-201"}
    why = refusals(tmp_path / "r1.csv")
    assert set(why) == {"rose", "1-1-103__A Dog", "1-1-104__Obama Again", "1-1-105__Nobody"}
    assert "no unit" in why["rose"]
    assert "no face" in why["1-1-103__A Dog"].lower()
    assert "already belongs to resident #1" in why["1-1-104__Obama Again"]
    assert "no photo" in why["1-1-105__Nobody"]

    # the office fixes Rose's folder; a re-run enrolls her and skips the three done
    (src / "rose" / "resident.json").write_text('{"name": "Rose Leslie", "unit": "2-1-202"}')
    second = run_cli("residents", "import", str(src), "--refusals", str(tmp_path / "r2.csv"),
                     data=data)
    assert second.returncode == 1, second.stderr
    assert "imported 1 resident(s), 3 refused" in second.stdout
    assert "3 already enrolled by an earlier run" in second.stdout
    assert residents(data)["Rose Leslie"] == "2-1-202"
    assert "rose" not in refusals(tmp_path / "r2.csv")

    # a crash after an enrollment but before its journal line: the store says it is done
    [journal] = (data / "imports").glob("*.jsonl")
    kept = journal.read_text()
    assert "Obama" not in kept and "1-1-101" not in kept and "rose" not in kept  # digests only
    journal.unlink()
    third = run_cli("residents", "import", str(src), "--json",
                    "--refusals", str(tmp_path / "r3.csv"), data=data)
    summary = json.loads(third.stdout)
    assert summary["enrolled"] == 4 and summary["refused"] == 3 and summary["skipped"] == 0
    assert len(residents(data)) == 4  # nobody enrolled twice


def test_a_csv_import_and_its_one_line_errors(tmp_path):
    data = tmp_path / "state"
    (tmp_path / "pics").mkdir()
    for p in ("obama_01.jpg", "obama_02.jpg", "biden_01.jpg"):
        shutil.copy(FACES / p, tmp_path / "pics" / p)
    sheet = tmp_path / "residents.csv"
    sheet.write_text("name,unit,photos\n"
                     "Barack Obama,1-1-101,pics/obama_01.jpg;pics/obama_02.jpg\n"
                     "\n"
                     "Joe Biden,1-1-102,pics/biden_01.jpg\n"
                     "Too,Many,Columns,here\n"
                     "Lost Photo,1-1-103,pics/missing.jpg\n", encoding="utf-8")
    r = run_cli("residents", "import", str(sheet), "--refusals", str(tmp_path / "r.csv"),
                data=data)
    assert "imported 2 resident(s), 2 refused" in r.stdout, r.stderr
    why = refusals(tmp_path / "r.csv")
    assert "4 columns" in why["residents.csv line 5"]
    assert "missing.jpg: no such file" in why["residents.csv line 6"]
    assert residents(data) == {"Barack Obama": "1-1-101", "Joe Biden": "1-1-102"}

    # by default the refusals go to the current folder (the operator's), not the state folder
    r = run_cli("residents", "import", str(sheet), "--json", data=data)
    summary = json.loads(r.stdout)
    assert summary["skipped"] == 2 and summary["refused"] == 2
    assert Path(summary["refusals"]).parent == Path(".")
    (REPO / summary["refusals"]).unlink()  # run_cli runs in the checkout
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    line = one_line_error(run_cli("residents", "import", str(sheet), "--refusals",
                                  str(blocked / "r.csv"), data=data))
    assert "--refusals" in line and "cannot write" in line

    bad = tmp_path / "bad.csv"
    bad.write_text("who,where\nA,B\n")
    line = one_line_error(run_cli("residents", "import", str(bad), data=data))
    assert "bad.csv: the first line must be name,unit,photos" in line
    line = one_line_error(run_cli("residents", "import", str(tmp_path / "nope"), data=data))
    assert "nope: no such folder or file" in line
    assert not list(REPO.glob("import-refusals-*.csv"))  # no refusal file for refused sources
