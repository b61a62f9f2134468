"""journald log lines: every line of a record, traceback included, at the record's priority."""

from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gatectl.runtime.systemd import JournalFormatter


def journal_lines(emit) -> list[str]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JournalFormatter())
    log = logging.getLogger("gatectl.test_journal")
    log.addHandler(handler)
    log.propagate = False
    try:
        emit(log)
    finally:
        log.removeHandler(handler)
    return out.getvalue().splitlines()


def test_a_logged_exception_keeps_its_traceback_at_the_error_priority():
    def emit(log: logging.Logger) -> None:
        try:
            {}["door"]
        except KeyError:
            log.exception("gate %s: frame %d failed", "lobby", 7)

    lines = journal_lines(emit)
    assert lines[0] == "<3>gatectl.test_journal: gate lobby: frame 7 failed"
    assert lines[1] == "<3>Traceback (most recent call last):"
    assert any(line.startswith("<3>") and '{}["door"]' in line for line in lines)
    assert lines[-1] == "<3>KeyError: 'door'"
    assert all(line.startswith("<3>") for line in lines)


def test_a_plain_line_is_one_journal_line():
    assert journal_lines(lambda log: log.warning("fire alarm input %s ACTIVE", "fa")) == [
        "<4>gatectl.test_journal: fire alarm input fa ACTIVE"]


UNIT = Path(__file__).resolve().parent.parent / "systemd" / "gatectl.service"
needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze missing (.ci/run installs it)"
)


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_is_hardened_as_the_service_needs():
    s = unit_settings()
    assert s["User"] == ["gatectl"] and s["StateDirectory"] == ["gatectl"]
    assert s["SupplementaryGroups"] == ["dialout video"]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"] and s["DevicePolicy"] == ["closed"]
    allowed = {v.split()[0] for v in s["DeviceAllow"]}
    assert {"char-ttyUSB", "char-ttyACM", "char-ttyS", "char-ttyAMA", "char-video4linux"} <= allowed
    assert set(s["RestrictAddressFamilies"][0].split()) == {
        "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path):
    """verify checks that ExecStart's program exists: the unit as installed, with /opt/gatectl
    pointing at a venv-like folder here (the install test puts a real one in a throwaway root)."""
    venv_bin = tmp_path / "opt" / "gatectl" / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    unit = tmp_path / "gatectl.service"
    unit.write_text(UNIT.read_text().replace("/opt/gatectl/", f"{tmp_path}/opt/gatectl/"))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "gatectl.service" not in out.stderr, out.stderr  # no warning about our unit


@needs_analyze
def test_systemd_analyze_security_exposure_is_at_most_4(tmp_path: Path):
    shutil.copy(UNIT, tmp_path / "gatectl.service")
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", "gatectl.service"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    m = re.search(r"Overall exposure level for gatectl\.service: (\d+\.\d+)", out.stdout)
    assert m, out.stdout[-500:]
    assert float(m.group(1)) <= 4.0, out.stdout
