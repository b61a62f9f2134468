"""Logs: one INFO line per decision naming resident ids, never names (a real face gate on real
photos); the `[logging]` section's JSON lines and rotated file, tracebacks kept."""

from __future__ import annotations

import json
import logging

import pytest

from gatectl.config.base import ConfigError
from gatectl.config.site import LoggingConfig
from gatectl.runtime.systemd import setup_logging
from tests.conftest import FACES, enroll
from tests.test_face_gate import pass_photo


@pytest.fixture
def root_logging():
    """setup_logging replaces the root handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield
    for h in root.handlers:
        if h not in saved:
            h.close()
    root.handlers[:] = saved
    root.setLevel(level)


def test_each_face_decision_is_one_info_line_with_the_resident_id_and_no_name(app, caplog):
    r = enroll(app, "Barack Obama", "obama_01.jpg", unit="3-2-1501")
    gate = app.gate(app.cfg.gates[0])
    caplog.set_level(logging.INFO)
    caplog.clear()
    granted = pass_photo(gate, FACES / "obama_02.jpg")
    stranger = pass_photo(gate, FACES / "biden_01.jpg")
    assert [d.decision for d in granted] == ["granted"]
    assert [d.decision for d in stranger] == ["denied"]
    # grants are the door's access point's decision, refusals the gate's own
    decisions = [rec for rec in caplog.records if rec.name in ("gatectl.face_gate", "gatectl.access")]
    assert len(decisions) == 2 and all(rec.levelno == logging.INFO for rec in decisions)
    first, second = (rec.getMessage() for rec in decisions)
    assert f"granted resident #{r.id}" in first and f"event {granted[0].event.id}" in first
    assert "denied" in second and "unknown face" in second
    for rec in caplog.records:  # no line of any logger names the person or their unit
        text = rec.getMessage()
        assert "Obama" not in text and "Barack" not in text and "3-2-1501" not in text, text


def test_json_lines_in_a_rotated_file_keep_the_traceback(tmp_path, root_logging):
    file = tmp_path / "log" / "gatectl.log"
    setup_logging("info", LoggingConfig(format="json", file=file, max_mb=0.1, backups=1))
    log = logging.getLogger("gatectl.test_logging")
    log.info("lobby: granted resident #%d", 7)
    try:
        {}["door"]
    except KeyError:
        log.exception("gate %s: frame failed", "lobby")
    log.debug("not at info")
    for h in logging.getLogger().handlers:
        h.flush()
    lines = [json.loads(x) for x in file.read_text().splitlines()]
    assert [(x["level"], x["logger"], x["msg"]) for x in lines] == [
        ("info", "gatectl.test_logging", "lobby: granted resident #7"),
        ("error", "gatectl.test_logging", "gate lobby: frame failed")]
    assert lines[1]["exc"].startswith("Traceback") and "KeyError: 'door'" in lines[1]["exc"]
    for i in range(2000):  # past max_mb: rotated, one backup kept
        log.info("filler line %d %s", i, "x" * 80)
    assert file.with_name("gatectl.log.1").is_file()
    assert not file.with_name("gatectl.log.2").exists()
    assert file.stat().st_size <= 0.1 * 2**20 + 200


def test_text_file_and_a_bad_log_file_is_one_line(tmp_path, root_logging):
    file = tmp_path / "gatectl.log"
    setup_logging("warning", LoggingConfig(file=file))
    logging.getLogger("gatectl.x").warning("fire alarm input %s ACTIVE", "fa")
    logging.getLogger("gatectl.x").info("below the level")
    for h in logging.getLogger().handlers:
        h.flush()
    [line] = file.read_text().splitlines()
    assert line.endswith(" WARNING gatectl.x: fire alarm input fa ACTIVE")
    (tmp_path / "a-file").write_text("")  # its "folder" cannot be made, even as root
    with pytest.raises(ConfigError, match="logging.file: .*cannot write"):
        setup_logging("info", LoggingConfig(file=tmp_path / "a-file" / "gatectl.log"))
    for bad in ("relative.log", "/var/log/../etc/passwd", "/dev/null"):
        with pytest.raises(ValueError):
            LoggingConfig(file=bad)


def test_a_running_daemon_logs_json_decisions_to_its_file_by_id(tmp_path):
    """`gatectl run` for real with `[logging] format = "json"` and a file: a resident's passes
    are INFO JSON lines naming `resident #1`; nothing in the file names them."""
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO, run_cli, wait_for
    from tests.test_store_faults import _bench_config

    cfg = _bench_config(tmp_path)
    log_file = tmp_path / "logs" / "gatectl.log"
    cfg.write_text(f'log_level = "info"\n[logging]\nformat = "json"\nfile = "{log_file}"\n'
                   + cfg.read_text())
    data = tmp_path / "state"
    res = run_cli("enroll", "--name", "Barack Obama", "--unit", "3-2-1501", "--photo",
                  str(FACES / "obama_01.jpg"), data=data, config=cfg)
    assert res.returncode == 0, res.stderr
    proc = subprocess.Popen([sys.executable, "-m", "gatectl", "--config", str(cfg), "--data",
                             str(data), "run"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def lines() -> list[dict]:
        text = log_file.read_text() if log_file.exists() else ""
        return [json.loads(x) for x in text.splitlines() if x.endswith("}")]

    try:
        grants = wait_for(lambda: [x for x in lines() if "bench-gate: granted" in x["msg"]],
                          timeout=120, what="a grant in the log file")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert grants[0]["level"] == "info" and grants[0]["logger"] == "gatectl.access"
    assert "granted resident #1" in grants[0]["msg"]
    text = log_file.read_text()
    assert "Obama" not in text and "3-2-1501" not in text
    assert all(set(x) >= {"ts", "level", "logger", "msg"} for x in lines())
