"""The technician's CLI as a subprocess: real store in a scratch --data folder, real models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tests.conftest import FACES, LIVENESS, NOFACE, REPO, ok, one_line_error, run_cli



def test_enroll_list_show_remove_cycle(tmp_path):
    d = tmp_path / "state"
    out = ok(run_cli("enroll", "--name", "Obama", "--unit", "1-1-101", "--photo", str(FACES / "obama_01.jpg"),
                     "--photo", str(FACES / "obama_02.jpg"), data=d))
    assert out.strip() == "enrolled resident #1 Obama (1-1-101) with 2 template(s); consent local"
    ok(run_cli("enroll", "--name", "Biden", "--unit", "1-2-202", "--photo", str(FACES / "biden_01.jpg"), data=d))
    listing = ok(run_cli("residents", "list", data=d)).splitlines()
    assert listing[0].split() == ["id", "name", "unit", "status", "last", "seen", "templates"]
    assert listing[1].split()[:4] == ["1", "Obama", "1-1-101", "active"] and listing[1].split()[-1] == "2"
    show = ok(run_cli("residents", "show", "Biden", data=d))
    assert "unit         1-2-202" in show and "templates    1" in show
    # a pass leaves an event with a snapshot
    rp = ok(run_cli("replay", "--store", "--json", str(FACES / "biden_02.jpg"), data=d))
    [event] = [json.loads(l) for l in rp.splitlines()]
    assert (event["decision"], event["resident"]) == ("granted", "Biden")
    snap = d / "snapshots" / event["snapshot"]
    assert snap.exists()
    events = ok(run_cli("events", "list", "--json", "--since", "1h", data=d)).splitlines()
    assert [json.loads(l)["id"] for l in events] == [event["event"]]
    assert ok(run_cli("events", "list", "--kind", "alert", "--json", data=d)) == ""
    assert ok(run_cli("events", "list", "--gate", "nope", "--json", data=d)) == ""
    out = ok(run_cli("residents", "remove", "2", data=d))
    assert out.startswith("removed resident #2 Biden") and "1 photo/snapshot file(s) deleted" in out
    assert not snap.exists()
    assert [l.split()[1] for l in ok(run_cli("residents", "list", data=d)).splitlines()[1:]] == ["Obama"]
    assert "re-enrollment" not in ok(run_cli("residents", "reactivate", "1", data=d))


def test_enroll_refusals_are_one_line(tmp_path):
    d = tmp_path / "state"
    line = one_line_error(run_cli("enroll", "--name", "X", "--unit", "1", "--photo",
                                  str(FACES / "multi_rose_kit.jpg"), data=d))
    assert line == "gatectl: multi_rose_kit.jpg: 2 faces found, need exactly one person"
    line = one_line_error(run_cli("enroll", "--name", "X", "--unit", "1", "--photo",
                                  str(NOFACE / "yolox_dog_bicycle.jpg"), data=d))
    assert line == "gatectl: yolox_dog_bicycle.jpg: no face found"
    line = one_line_error(run_cli("enroll", "--name", "X", "--unit", "1", "--photo",
                                  str(LIVENESS / "image_F2.jpg"), data=d))
    assert line.startswith("gatectl: image_F2.jpg: spoof suspected")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    line = one_line_error(run_cli("enroll", "--name", "X", "--unit", "1", "--photo", str(bad), data=d))
    assert str(bad) in line
    ok(run_cli("enroll", "--name", "Kit", "--unit", "2", "--photo", str(FACES / "kit_harington_01.jpeg"), data=d))
    line = one_line_error(run_cli("enroll", "--name", "Jon", "--unit", "3", "--photo",
                                  str(FACES / "kit_harington_02.jpeg"), data=d))
    assert "already belongs to resident #1 Kit (2)" in line
    line = one_line_error(run_cli("enroll", "--name", "X", "--unit", "1", data=d))
    assert "--photo" in line
    line = one_line_error(run_cli("residents", "show", "404", data=d))
    assert line == "gatectl: resident '404': not found (give the id from `gatectl residents list`)"
    line = one_line_error(run_cli("events", "list", "--since", "last week", data=d))
    assert line.startswith("gatectl: --since: cannot read 'last week'")
    line = one_line_error(run_cli("--config", str(tmp_path / "none.toml"), "residents", "list", data=d))
    assert line.endswith("none.toml: config file not found")


def test_since_with_anything_after_the_span_is_refused_in_one_line(tmp_path):
    """Python's ``$`` alone also matches before a final newline: "1h\\n" was read as 1h."""
    line = one_line_error(run_cli("events", "list", "--since", "1h\n", data=tmp_path / "state"))
    assert line.startswith("gatectl: --since: cannot read '1h\\x0a'"), line


def test_watchlist_commands(tmp_path):
    d = tmp_path / "state"
    out = ok(run_cli("watchlist", "add", "--name", "Lin", "--reason", "police notice",
                     "--photo", str(FACES / "lin_manuel_miranda_01.png"), data=d))
    assert out.strip() == "watchlist entry #1 Lin added"
    assert "police notice" in ok(run_cli("watchlist", "list", data=d))
    [alert] = [json.loads(l) for l in ok(run_cli("replay", "--json", str(FACES / "lin_manuel_miranda_01.png"),
                                                   data=d)).splitlines()]
    assert (alert["decision"], alert["resident"], alert["reason"]) == ("alert", "Lin", "watchlist #1: police notice")
    ok(run_cli("watchlist", "remove", "1", data=d))
    assert ok(run_cli("watchlist", "list", data=d)).count("\n") == 1  # header only
    assert one_line_error(run_cli("watchlist", "remove", "1", data=d)) == "gatectl: watchlist remove: no entry #1"


def test_a_second_watchlist_entry_of_one_face_is_refused_and_the_alert_stays(tmp_path):
    """Issue 13 repro: the same person added twice made replay say 'denied (ambiguous match)'."""
    d = tmp_path / "state"
    ok(run_cli("watchlist", "add", "--name", "A (1)", "--photo", str(FACES / "alex_lacamoire_01.jpg"), data=d))
    line = one_line_error(run_cli("watchlist", "add", "--name", "A (1)", "--photo",
                                  str(FACES / "alex_lacamoire_02.jpg"), data=d))
    assert "already on the watchlist as entry #1" in line
    [alert] = [json.loads(l) for l in ok(run_cli("replay", "--json", str(FACES / "alex_lacamoire_03.png"),
                                                   data=d)).splitlines()]
    assert (alert["decision"], alert["resident"]) == ("alert", "A (1)")


def test_replay_prints_every_decision_kind(tmp_path):
    d = tmp_path / "state"
    ok(run_cli("enroll", "--name", "Obama", "--unit", "1", "--photo", str(FACES / "obama_01.jpg"), data=d))
    r = run_cli("replay", "--json", str(FACES / "obama_02.jpg"), str(FACES / "biden_01.jpg"),
                str(LIVENESS / "image_F1.jpg"), str(NOFACE), str(tmp_path / "missing.jpg"), data=d)
    assert r.returncode == 1  # an input could not be read
    out = [json.loads(l) for l in r.stdout.splitlines()]
    got = [(os.path.basename(o["source"]), o["decision"], o["resident"], o["reason"]) for o in out]
    assert got == [
        ("obama_02.jpg", "granted", "Obama", "resident"),
        ("biden_01.jpg", "denied", None, "unknown face"),
        ("image_F1.jpg", "denied", None, "liveness"),
        ("hyperlpr_test_img.jpg", "no_face", None, "no face found"),
        ("yolox_dog_bicycle.jpg", "no_face", None, "no face found"),
    ]
    for o in out:
        assert set(o) >= {"source", "decision", "resident", "reason", "score"}
    assert r.stderr.strip() == f"gatectl: {tmp_path / 'missing.jpg'}: no such file or folder"


def test_replay_of_a_video_gives_one_decision_per_pass(tmp_path):
    import cv2

    from gatectl.sources.media import read_image

    d = tmp_path / "state"
    ok(run_cli("enroll", "--name", "Obama", "--unit", "1", "--photo", str(FACES / "obama_01.jpg"), data=d))
    clip = tmp_path / "pass.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for photo, n in (("obama_02.jpg", 20), ("biden_01.jpg", 20)):
        img = read_image(FACES / photo)  # portrait photo: its top 4:3 part, as a camera frames a face
        canvas = cv2.resize(img[: img.shape[1] * 3 // 4], (640, 480), interpolation=cv2.INTER_AREA)
        for _ in range(n):
            w.write(canvas)
    w.release()
    out = [json.loads(l) for l in ok(run_cli("replay", "--json", str(clip), data=d)).splitlines()]
    assert [(o["decision"], o["resident"]) for o in out] == [("granted", "Obama"), ("denied", None)]
    assert out[0]["frame"] < 5 and 20 <= out[1]["frame"] < 25


def test_demo_runs_on_bundled_samples(tmp_path):
    r = run_cli("demo", "--json", data=tmp_path / "demo")
    out = [json.loads(l) for l in ok(r).splitlines()]
    by_source = {o["source"]: (o["decision"], o["reason"]) for o in out}
    assert by_source["faces/obama_02.jpg"] == ("granted", "resident")
    assert by_source["faces/biden_02.jpg"] == ("denied", "re-enrollment required")
    assert by_source["faces/rose_leslie_02.jpg"] == ("denied", "account suspended")
    assert by_source["faces/alex_lacamoire_02.jpg"][0] == "alert"
    assert by_source["faces/lin_manuel_miranda_01.png"] == ("denied", "unknown face")
    assert by_source["liveness/image_F1.jpg"] == ("denied", "liveness")
    assert by_source["liveness/image_F2.jpg"] == ("denied", "liveness")
    pulses = [o for o in out if o["relay"]]
    assert len(pulses) == 3 and all(o["decision"] == "granted" for o in pulses)
    # the frame the real driver put on the pty: flash-on relay 1 for 50 x 100 ms
    assert all(o["relay"].startswith("01 05 02 00 00 32 4D A7 ") for o in pulses)


def test_doctor_reports_a_missing_camera(tmp_path):
    r = run_cli("doctor", "--camera-timeout", "1", data=tmp_path / "state")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    registered = len(tomllib.loads((REPO / "models" / "models.toml").read_text()))
    assert sum(l.startswith("[ok] model ") for l in lines) == registered  # every file, verified
    assert any(l.startswith("[ok] store ") and "writable" in l for l in lines)
    assert any(l.startswith("[FAIL] camera cam0") for l in lines)
    assert lines[-1] == "doctor: 1 problem(s)"


def test_run_serves_a_camera_until_sigterm(tmp_path):
    """`gatectl run` on an image-folder camera: decisions recorded, clean stop on SIGTERM."""
    d = tmp_path / "state"
    cfg = _folder_camera_config(tmp_path, "obama_02.jpg")
    ok(run_cli("enroll", "--name", "Obama", "--unit", "1", "--photo", str(FACES / "obama_01.jpg"), data=d))
    proc = subprocess.Popen([sys.executable, "-m", "gatectl", "--config", str(cfg), "--data", str(d), "run"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        events = []
        while time.monotonic() < deadline and not events:
            time.sleep(0.5)
            events = ok(run_cli("events", "list", "--json", data=d)).splitlines()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert [json.loads(e)["decision"] for e in events] == ["granted"]
    assert "stopped; outputs off" in err and "Traceback" not in err


def _folder_camera_config(tmp_path, photo):
    cam = tmp_path / "cam"
    cam.mkdir()
    (cam / "a.jpg").write_bytes((FACES / photo).read_bytes())
    cfg = tmp_path / "gate.toml"
    cfg.write_text(f'[[cameras]]\nname = "c"\nsource = "{cam}"\nfps = 5\nloop = true\nmax_frame_age_ms = 2000\n'
                   '[[outputs]]\nname = "d"\n[[doors]]\nname = "d"\noutput = "d"\n[[gates]]\nkind = "face"\nname = "g"\ncamera = "c"\ndoor = "d"\n')
    return cfg


def test_enroll_from_a_live_camera(tmp_path):
    cfg = _folder_camera_config(tmp_path, "obama_01.jpg")
    d = tmp_path / "state"
    out = ok(run_cli("enroll", "--name", "Obama", "--unit", "1", "--camera", "c", data=d, config=cfg))
    assert out.strip() == "enrolled resident #1 Obama (1) with 3 template(s); consent local"
    line = one_line_error(run_cli("enroll", "--name", "X", "--unit", "1", "--camera", "lobby9", data=d, config=cfg))
    assert line == "gatectl: --camera: unknown camera 'lobby9'"


def test_run_without_a_camera_degrades_and_stops_cleanly(tmp_path):
    """Built-in defaults on a machine with no /dev/video0: the daemon stays up, says why, and
    stops on SIGTERM with its outputs off."""
    proc = subprocess.Popen([sys.executable, "-m", "gatectl", "--data", str(tmp_path / "state"), "run"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(6)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "camera 'cam0'" in err and "reconnecting" in err
    assert "stopped; outputs off" in err and "Traceback" not in err
