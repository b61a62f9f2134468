"""The technician's CLI as a subprocess (issue 13): finding the service's config and state,
the board simulator's console, doctor/config-check parity, re-enrollment, argument checks,
lists. Real store, real models, real pty board."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading

from gatectl.config.hardware import ModbusBoardConfig
from gatectl.hw.serial.port import SerialBoard
from tests.conftest import FACES, REPO, ok, one_line_error, run_cli, wait_for



# --- board-sim and central take their own options ------------------------------------------

def test_board_sim_and_central_help():
    for args in (["board-sim", "--help"], ["central", "--help"]):
        out = ok(run_cli(*args))
        assert out.startswith(f"usage: gatectl {args[0]}"), out
    assert "--link" in ok(run_cli("board-sim", "--help"))
    line = one_line_error(run_cli("board-sim", "--address", "0"))
    assert "--address" in line and "1..255" in line


class Lines:
    """A subprocess's stdout read by a thread, so the test waits for lines without blocking."""

    def __init__(self, proc: subprocess.Popen):
        self.q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.q.put(line) for line in proc.stdout], daemon=True).start()

    def wait(self, pred, timeout: float = 10.0) -> str:
        seen = []

        def found():
            while not self.q.empty():
                line = self.q.get()
                seen.append(line)
                if pred(line):
                    return line
            return None
        return wait_for(found, timeout, f"a matching line among {seen}")


def test_board_sim_console_drives_inputs_over_real_modbus(tmp_path):
    link = tmp_path / "relay0"
    proc = subprocess.Popen([sys.executable, "-m", "gatectl", "board-sim", "--address", "3", "--channels", "4",
                             "--inputs", "4", "--baud", "0", "--link", str(link)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)
    lines = Lines(proc)
    board = None
    try:
        first = lines.wait(lambda s: s.startswith("simulated"))
        assert "address 3, 4 relays, 4 inputs" in first and f"(link {link})" in first
        assert link.is_symlink()
        board = SerialBoard(ModbusBoardConfig(name="b", port=str(link), address=3, channels=4,
                                              inputs=4, baud=115200, timeout_ms=100, poll_ms=30))
        wait_for(lambda: board.inputs() == [False] * 4, 10, "the driver to read the inputs")
        for command, want in (("in 1 on", [True, False, False, False]),       # door contact
                              ("in 3 toggle", [True, False, True, False]),    # fire alarm
                              ("input 1 off", [False, False, True, False])):
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
            wait_for(lambda want=want: board.inputs() == want, 5, f"inputs {want} after '{command}'")
        proc.stdin.write("in 9 on\n")
        proc.stdin.flush()
        assert "inputs 1..4" in lines.wait(lambda s: s.startswith("error"))
        board.pulse(1, 0.3)
        lines.wait(lambda s: "2:ON" in s)
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(10) == 0
        assert not link.exists()  # the link goes with the simulator
    finally:
        if board is not None:
            board.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- the CLI finds the service's config and state ------------------------------------------

def cli_env(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The CLI with no --config / --data, as a technician types it on an installed device."""
    import os

    full = {k: v for k, v in os.environ.items() if k not in ("GATECTL_CONFIG", "STATE_DIRECTORY")}
    return subprocess.run([sys.executable, "-m", "gatectl", *args], check=False, capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**full, **env})


def test_cli_uses_the_service_config_and_state(tmp_path):
    root = tmp_path / "root"
    etc = root / "etc" / "gatectl"
    etc.mkdir(parents=True)
    (etc / "gatectl.toml").write_text('[device]\nid = "lobby-1"\n')
    env = {"GATECTL_ROOT": str(root), "XDG_STATE_HOME": str(tmp_path / "xdg")}
    state = root / "var" / "lib" / "gatectl"
    r = cli_env("enroll", "--name", "Obama", "--unit", "1-1-101", "--photo", str(FACES / "obama_01.jpg"), env=env)
    ok(r)
    assert r.stderr.strip() == (f"gatectl: config {etc / 'gatectl.toml'} (the service's config); "
                                f"state {state} (the service's state folder)")
    assert (state / "gatectl.db").is_file() and not (tmp_path / "xdg").exists()
    listing = ok(cli_env("residents", "list", env=env))
    assert listing.splitlines()[1].split()[:2] == ["1", "Obama"]
    # $GATECTL_CONFIG wins over /etc; the config's storage.state_dir over /var/lib
    other = tmp_path / "other"
    cfg = tmp_path / "other.toml"
    cfg.write_text(f'[storage]\nstate_dir = "{other}"\n')
    r = cli_env("residents", "list", env={**env, "GATECTL_CONFIG": str(cfg)})
    assert ok(r).count("\n") == 1 and f"state {other} (storage.state_dir)" in r.stderr
    assert (other / "gatectl.db").is_file()


def test_cli_refuses_to_create_files_in_another_users_state(tmp_path):
    import os

    if os.geteuid() != 0:
        import pytest

        pytest.skip("needs root to give the folder to another user")
    state = tmp_path / "root" / "var" / "lib" / "gatectl"
    state.mkdir(parents=True)  # the service's StateDirectory: found without any config
    r = cli_env("enroll", "--name", "Obama", "--unit", "1-1-101", "--photo", str(FACES / "obama_01.jpg"),
                env={"GATECTL_ROOT": str(tmp_path / "root")})
    ok(r)
    for p in [state, *state.iterdir()]:
        os.chown(p, 65534, 65534)  # the service's user
    (state / "gatectl.db-wal").unlink(missing_ok=True)
    (state / "gatectl.db-shm").unlink(missing_ok=True)
    before = sorted(p.name for p in state.iterdir())
    for args in (["residents", "list"], ["enroll", "--name", "Kit", "--unit", "2", "--photo",
                                         str(FACES / "kit_harington_01.jpeg")]):
        r = cli_env(*args, env={"GATECTL_ROOT": str(tmp_path / "root")})
        assert r.returncode == 2, r
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith(f"gatectl: {state} belongs to ") and "sudo -u" in last, r.stderr
    assert sorted(p.name for p in state.iterdir()) == before  # no root-owned WAL or shm file
    assert all(p.stat().st_uid == 65534 for p in state.iterdir())


# --- replay leaves the real store alone -----------------------------------------------------

def test_replay_uses_a_scratch_store_and_fails_on_unreadable_input(tmp_path):
    d = tmp_path / "state"
    ok(run_cli("enroll", "--name", "Obama", "--unit", "1", "--photo", str(FACES / "obama_01.jpg"), data=d))
    db_before = (d / "gatectl.db").stat().st_size
    r = run_cli("replay", "--json", str(FACES / "obama_02.jpg"), str(tmp_path / "missing.jpg"), data=d)
    assert r.returncode == 1, r
    [granted] = [json.loads(line) for line in r.stdout.splitlines()]
    assert (granted["decision"], granted["resident"]) == ("granted", "Obama")
    assert r.stderr.strip() == f"gatectl: {tmp_path / 'missing.jpg'}: no such file or folder"
    assert ok(run_cli("events", "list", "--json", data=d)) == ""
    assert "last seen    -" in ok(run_cli("residents", "show", "1", data=d))
    assert not (d / "snapshots").exists() or not any((d / "snapshots").rglob("*.jpg"))
    assert (d / "gatectl.db").stat().st_size == db_before
    # asked for: into the real store, exit 0 when every input was read
    r = run_cli("replay", "--store", "--json", str(FACES / "obama_02.jpg"), data=d)
    [granted] = [json.loads(line) for line in ok(r).splitlines()]
    assert [json.loads(line)["id"] for line in ok(run_cli("events", "list", "--json", data=d)).splitlines()] \
        == [granted["event"]]
    assert "last seen    -" not in ok(run_cli("residents", "show", "1", data=d))
    ok(run_cli("replay", "--store", "--json", str(FACES / "biden_01.jpg"), data=d))
    r = run_cli("events", "list", "--json", "--limit", "1", data=d)
    assert [json.loads(line)["reason"] for line in ok(r).splitlines()] == ["unknown face"]  # the newest
    assert r.stderr.strip() == "gatectl: older events not shown (the newest 1; --limit N or --since to see them)"


# --- config check, doctor and run agree -----------------------------------------------------

def test_config_check_doctor_and_run_refuse_the_same_missing_files(tmp_path):
    cfg = tmp_path / "gatectl.toml"
    cfg.write_text(f"""
[[cameras]]
name = "c"
source = "{tmp_path / 'frames'}/"
[[outputs]]
name = "door"
[[doors]]
name = "door"
output = "door"
[[gates]]
kind = "face"
name = "g"
camera = "c"
door = "door"
[sync]
enabled = true
port = 1
username = "dev"
password_file = "{tmp_path / 'mqtt.pass'}"
[sync.tls]
ca = "{tmp_path / 'ca.pem'}"
""")
    want = [f"sync.password_file: file not found: {tmp_path / 'mqtt.pass'}",
            f"sync.tls.ca: file not found: {tmp_path / 'ca.pem'}"]
    r = run_cli("config", "check", str(cfg))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"gatectl: {cfg}: {w}" for w in want], r.stderr
    r = run_cli("doctor", "--camera-timeout", "0.2", config=cfg, data=tmp_path / "s")
    assert r.returncode == 1 and "all checks passed" not in r.stdout
    assert [line for line in r.stdout.splitlines() if line.startswith("[FAIL] sync")] == [f"[FAIL] {w}" for w in want]
    r = run_cli("run", config=cfg, data=tmp_path / "s")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"gatectl: {w}" for w in want], r.stderr
    # with the files there, all three are past them
    (tmp_path / "mqtt.pass").write_text("secret\n")
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    assert "sync" not in run_cli("config", "check", str(cfg)).stderr
    r = run_cli("doctor", "--camera-timeout", "0.2", config=cfg, data=tmp_path / "s")
    assert "[FAIL] sync.tls.ca: cannot load certificate/key" in r.stdout, r.stdout


def test_empty_config_is_an_error(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing yet\n")
    assert one_line_error(run_cli("config", "check", str(empty))) == \
        f"gatectl: {empty}: empty config: nothing is set (start from config/lobby-face-gate.toml)"
    assert "empty config" in one_line_error(run_cli("doctor", config=empty, data=tmp_path / "s"))
    no_gates = tmp_path / "wiring.toml"
    no_gates.write_text('[[outputs]]\nname = "door"\n')
    assert one_line_error(run_cli("config", "check", str(no_gates))) == \
        f"gatectl: {no_gates}: gates: no gate configured: `gatectl run` would watch nothing"


# --- re-enrollment, rename, move, photos ----------------------------------------------------

def test_reenroll_the_same_resident_and_update_them(tmp_path):
    import sqlite3

    d = tmp_path / "state"
    ok(run_cli("enroll", "--name", "Barack", "--unit", "1-1-101", "--photo", str(FACES / "obama_01.jpg"), data=d))
    with sqlite3.connect(d / "gatectl.db") as db:  # enrolled 20 days ago, never seen since
        db.execute("UPDATE residents SET created_at = created_at - 20 * 86400")
    assert "re-enrollment required" in ok(run_cli("residents", "list", data=d))
    line = one_line_error(run_cli("enroll", "--name", "Barack", "--unit", "1-1-101",
                                  "--photo", str(FACES / "obama_02.jpg"), data=d))
    assert "already belongs to resident #1 Barack (1-1-101)" in line and "enroll --resident 1" in line
    out = ok(run_cli("enroll", "--resident", "1", "--photo", str(FACES / "obama_02.jpg"), data=d))
    assert out.strip() == ("resident #1 Barack (1-1-101): 1 template(s) added, 2 in all; "
                           "inactivity clock restarted")
    assert ok(run_cli("residents", "list", data=d)).splitlines()[1].split()[3] == "active"
    line = one_line_error(run_cli("enroll", "--resident", "1", "--photo", str(FACES / "biden_01.jpg"), data=d))
    assert line.startswith("gatectl: biden_01.jpg: does not look like resident #1 Barack")
    out = ok(run_cli("residents", "update", "1", "--name", "Barack H. Obama", "--unit", "2-1-101", data=d))
    assert out.strip() == "resident #1 is now Barack H. Obama (2-1-101)"
    out = ok(run_cli("residents", "update", "1", "--replace-photos", str(FACES / "obama_03.jpg"), data=d))
    assert "templates replaced by 1 photo(s), 1 template(s) in all" in out
    line = one_line_error(run_cli("residents", "update", "1", "--add-photo", str(FACES / "kit_harington_01.jpeg"),
                                  data=d))
    assert "does not look like resident #1" in line
    [g] = [json.loads(x) for x in ok(run_cli("replay", "--json", str(FACES / "obama_02.jpg"), data=d)).splitlines()]
    assert (g["decision"], g["resident"]) == ("granted", "Barack H. Obama")
    assert one_line_error(run_cli("residents", "update", "1", data=d)).startswith("gatectl: residents update: give")


# --- names, units and the quality gate ------------------------------------------------------

def test_enroll_refuses_blank_or_unprintable_names_and_an_enlarged_tiny_face(tmp_path):
    import cv2

    d = tmp_path / "state"
    photo = str(FACES / "obama_01.jpg")
    cases = [(["--name", "  ", "--unit", "1"], "gatectl: --name: empty; give a real value"),
             (["--name", "Eve", "--unit", ""], "gatectl: --unit: empty; give a real value"),
             (["--name", "x" * 65, "--unit", "1"], "gatectl: --name: 65 characters, at most 64: "),
             (["--name", "Eve\x1b[2J\nroot", "--unit", "1"],
              "gatectl: --name: contains a control or non-printable character: Eve\\x1b[2J\\x0aroot")]
    for args, want in cases:
        line = one_line_error(run_cli("enroll", *args, "--photo", photo, data=d))
        assert line.startswith(want), line
    # a face shrunk to ~20 px and enlarged back: big, sharp enough for the Laplacian, no detail
    img = cv2.imread(photo)
    small = cv2.resize(img, None, fx=20 / 236, fy=20 / 236, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "enlarged.png"), cv2.resize(small, img.shape[1::-1], interpolation=cv2.INTER_CUBIC))
    line = one_line_error(run_cli("enroll", "--name", "Eve", "--unit", "1", "--photo", str(tmp_path / "enlarged.png"),
                                  data=d))
    assert line.startswith("gatectl: enlarged.png: face enlarged or blurred, no fine detail"), line
    assert ok(run_cli("residents", "list", "--json", data=d)) == ""  # nothing was enrolled


# --- argument checks: relay pulse, visitor windows, conflicting lists ------------------------

def test_relay_pulse_seconds_and_plate_windows_are_checked(tmp_path):
    d = tmp_path / "state"
    for bad in ("0", "-1", "nan", "inf"):
        line = one_line_error(run_cli("relay", "pulse", "--output", "door", "--seconds", bad, data=d))
        assert line == f"gatectl relay: argument --seconds: '{bad}' is not a number in 0.1..600 s", line
    line = one_line_error(run_cli("plates", "add", "粤B12345", "--list", "visitor", "--from", "2099-01-02",
                                  "--to", "2099-01-01", data=d))
    assert line.startswith("gatectl: --to: 2099-01-01 00:00:00") and "is not after --from 2099-01-02" in line
    line = one_line_error(run_cli("plates", "add", "粤B12345", "--list", "visitor", "--to", "2020-01-01", data=d))
    assert "is already past" in line
    assert ok(run_cli("plates", "list", "--json", data=d)) == ""
    r = run_cli("plates", "add", "粤B12345", "--unit", "1-101", data=d)
    assert ok(r).strip() == "粤B12345 on the resident list" and r.stderr == ""
    r = run_cli("plates", "add", "粤B12345", "--list", "blacklist", "--note", "fees", data=d)
    assert ok(r).strip() == "粤B12345 on the blacklist list"
    assert r.stderr.startswith("gatectl: warning: 粤B12345 is also on the resident list: the blacklist wins")


# --- lists: --json, filters, paging, zones --------------------------------------------------

def test_lists_take_json_filters_and_say_what_was_left_out(tmp_path):
    import re

    d = tmp_path / "state"
    for name, unit, photo in (("Barack Obama", "1-1-101", "obama_01.jpg"), ("Joe Biden", "1-2-202", "biden_01.jpg"),
                              ("Kit Harington", "2-1-301", "kit_harington_01.jpeg")):
        ok(run_cli("enroll", "--name", name, "--unit", unit, "--photo", str(FACES / photo), data=d))
    ok(run_cli("residents", "suspend", "2", data=d))

    def names(*args):
        return [json.loads(x)["name"] for x in ok(run_cli("residents", "list", "--json", *args, data=d)).splitlines()]
    assert names("--unit", "1") == ["Barack Obama", "Joe Biden"]
    assert names("--unit", "1-1-101") == ["Barack Obama"]
    assert names("--name", "HARING") == ["Kit Harington"]
    assert names("--status", "suspended") == ["Joe Biden"]
    r = run_cli("residents", "list", "--limit", "2", data=d)
    assert len(ok(r).splitlines()) == 3 and r.stderr.strip() == "gatectl: 1 more not shown (--offset 2 for the next page)"
    assert names("--offset", "2") == ["Kit Harington"]
    rec = json.loads(ok(run_cli("residents", "list", "--json", "--limit", "1", data=d)))
    assert set(rec) >= {"id", "uid", "name", "unit", "status", "created_at", "last_seen_at", "templates"}
    enrolled = [x for x in ok(run_cli("residents", "show", "1", data=d)).splitlines() if x.startswith("enrolled")]
    assert re.search(r"\d\d:\d\d:\d\d[+-]\d\d:\d\d$", enrolled[0]), enrolled  # says its zone
    ok(run_cli("plates", "add", "粤B12345", "--resident", "1", "--unit", "1-1-101", data=d))
    ok(run_cli("plates", "add", "沪AD12345", "--list", "blacklist", data=d))
    plates = [json.loads(x) for x in ok(run_cli("plates", "list", "--json", "--list", "blacklist", data=d)).splitlines()]
    assert [p["plate"] for p in plates] == ["沪AD12345"]
    assert [json.loads(x)["plate"] for x in ok(run_cli("plates", "list", "--json", "--name", "obama",
                                                       data=d)).splitlines()] == ["粤B12345"]
    ok(run_cli("watchlist", "add", "--resident", "3", "--reason", "tailgating", data=d))
    [w] = [json.loads(x) for x in ok(run_cli("watchlist", "list", "--json", "--name", "kit", data=d)).splitlines()]
    assert (w["name"], w["reason"], w["resident_id"]) == ("Kit Harington", "tailgating", 3)
    assert ok(run_cli("watchlist", "list", "--json", "--name", "nobody", data=d)) == ""


def test_board_sim_answers_as_a_configured_board_and_names_its_inputs(tmp_path):
    link = tmp_path / "relay0"
    cfg = tmp_path / "site.toml"
    cfg.write_text(f"""
[[cameras]]
name = "c"
source = "0"
[[boards]]
name = "main"
driver = "modbus"
port = "{link}"
address = 5
channels = 4
inputs = 4
baud = 115200
poll_ms = 30
[[outputs]]
name = "lock"
[[inputs]]
name = "front_contact"
index = 0
role = "door_contact"
door = "front"
[[inputs]]
name = "fire"
index = 2
role = "fire_alarm"
[[doors]]
name = "front"
output = "lock"
[[gates]]
kind = "face"
name = "g"
camera = "c"
door = "front"
""")
    proc = subprocess.Popen([sys.executable, "-m", "gatectl", "--config", str(cfg), "board-sim", "--board", "main",
                             "--baud", "0", "--link", str(link)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines = Lines(proc)
    try:
        assert "address 5, 4 relays, 4 inputs" in lines.wait(lambda s: s.startswith("simulated"))
        assert lines.wait(lambda s: s.startswith("inputs:")).strip() == \
            "inputs: 1 front_contact (door_contact), 3 fire (fire_alarm)"
        proc.stdin.write("in fire on\n")
        proc.stdin.flush()
        assert "inputs 1:off 2:off 3:ACTIVE 4:off" in lines.wait(lambda s: s.startswith("relays"))
        out = ok(run_cli("relay", "inputs", config=cfg, data=tmp_path / "s"))
        states = {line.split()[0]: line.split()[-1] for line in out.splitlines()[1:3]}
        assert states == {"front_contact": "inactive", "fire": "ACTIVE"}, out
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_update_and_watchlist_name_an_empty_name_or_unit_as_such(tmp_path):
    """`residents update --unit ""` and `watchlist add --name ""` were taken for options not
    given ("give --name, --unit, ..."): the line names the empty option, as enroll does."""
    d = tmp_path / "state"
    ok(run_cli("enroll", "--name", "Obama", "--unit", "1-1-101", "--photo", str(FACES / "obama_01.jpg"), data=d))
    for args, want in ((["residents", "update", "1", "--unit", ""], "gatectl: --unit: empty; give a real value"),
                       (["residents", "update", "1", "--name", ""], "gatectl: --name: empty; give a real value"),
                       (["watchlist", "add", "--name", "", "--photo", str(FACES / "biden_01.jpg")],
                        "gatectl: --name: empty; give a real value")):
        assert one_line_error(run_cli(*args, data=d)).startswith(want), args
    [r] = [json.loads(x) for x in ok(run_cli("residents", "list", "--json", data=d)).splitlines()]
    assert (r["name"], r["unit"]) == ("Obama", "1-1-101")
    assert ok(run_cli("watchlist", "list", "--json", data=d)) == ""
