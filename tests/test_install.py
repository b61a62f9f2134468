"""scripts/install.sh and uninstall.sh, run for real with bash into a throwaway root: a first
install, an upgrade that keeps the state folder and the edited config, the wrapper acting on the
installed config and state, then uninstall keeping and erasing the data.

The venv is made with `--pip-args --no-deps` (the dependencies are this test run's own: the
wrapper runs with them on PYTHONPATH) so the test installs gatectl itself, not 400 MB of wheels.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOT_USER = os.geteuid() == 0 and shutil.which("useradd") is not None

pytestmark = pytest.mark.skipif(
    shutil.which("systemctl") is None, reason="systemctl missing (.ci/run installs systemd)"
)


def script(name: str, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
    )


def seed_root(root: Path) -> None:
    """The account files a Debian root has, with the groups the service joins."""
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "group").write_text("root:x:0:\ndialout:x:20:\nvideo:x:44:\n")
    (etc / "gshadow").write_text("root:*::\ndialout:*::\nvideo:*::\n")


def accounts(root: Path) -> list[str]:
    return [x for x in (root / "etc/passwd").read_text().splitlines() if x.startswith("gatectl:")]


def wrapper(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "GATECTL_ROOT": str(root),
        "PYTHONPATH": sysconfig.get_paths()["purelib"],  # the dependencies (see the docstring)
    }
    env.pop("GATECTL_CONFIG", None)
    env.pop("STATE_DIRECTORY", None)
    return subprocess.run(
        [str(root / "usr/local/bin/gatectl"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_install_upgrade_and_uninstall_in_a_throwaway_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    seed_root(root)
    first = script("install.sh", "--root", root, "--pip-args", "--no-deps")
    assert first.returncode == 0, first.stderr
    unit = root / "etc/systemd/system/gatectl.service"
    assert unit.read_text() == (REPO / "systemd/gatectl.service").read_text()
    assert (root / "etc/systemd/system/multi-user.target.wants/gatectl.service").is_symlink()
    config = root / "etc/gatectl/gatectl.toml"
    assert config.read_text() == (REPO / "config/lobby-face-gate.toml").read_text()
    state = root / "var/lib/gatectl"
    assert state.is_dir() and (state.stat().st_mode & 0o777) == 0o750
    assert os.access(root / "usr/local/bin/gatectl", os.X_OK)
    venv_python = root / "opt/gatectl/venv/bin/python"
    version = subprocess.run(
        [str(venv_python), "-c", "import importlib.metadata as m; print(m.version('gatectl'))"],
        capture_output=True, text=True, check=True,
    )
    assert version.stdout.strip() == "0.1.0"
    if ROOT_USER:  # useradd --prefix: the user in the root's own account files
        [account] = accounts(root)
        assert account.endswith(":/var/lib/gatectl:/usr/sbin/nologin")
        groups = (root / "etc/group").read_text().splitlines()
        assert any(g.startswith("dialout:") and g.endswith("gatectl") for g in groups)
        assert any(g.startswith("video:") and g.endswith("gatectl") for g in groups)
    else:
        assert "not created" in first.stderr

    # the wrapper works on the installed config and state folder
    listed = wrapper(root, "residents", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"state {state} " in listed.stderr and str(config) in listed.stderr
    assert (state / "gatectl.db").is_file()

    # upgrade: the edited config and everything in the state folder stay
    edited = config.read_text().replace("\n", "\n# edited by the site\n", 1)
    config.write_text(edited)
    (state / "marker").write_text("kept")
    wheels = tmp_path / "wheels"  # the upgrade installs a wheel given (--wheel), built once here
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                    str(REPO)], check=True, capture_output=True, timeout=240)
    [wheel] = wheels.glob("gatectl-*.whl")
    again = script("install.sh", "--root", root, "--wheel", wheel, "--pip-args", "--no-deps")
    assert again.returncode == 0, again.stderr
    assert "kept" in again.stderr and config.read_text() == edited
    assert (state / "marker").read_text() == "kept" and (state / "gatectl.db").is_file()
    if ROOT_USER:
        assert len(accounts(root)) == 1

    # uninstall keeping the data
    kept = script("uninstall.sh", "--root", root)
    assert kept.returncode == 0, kept.stderr
    assert not unit.exists() and not (root / "opt/gatectl").exists()
    assert not (root / "usr/local/bin/gatectl").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/gatectl.service").exists()
    assert (state / "marker").read_text() == "kept" and config.read_text() == edited

    # erasing removes them, and the user
    erased = script("uninstall.sh", "--root", root, "--erase-data")
    assert erased.returncode == 0, erased.stderr
    for gone in ("var/lib/gatectl", "etc/gatectl", "var/log/gatectl", "opt/gatectl"):
        assert not (root / gone).exists(), gone
    assert accounts(root) == []


def test_the_scripts_refuse_bad_arguments_in_one_line(tmp_path: Path) -> None:
    bad = script("install.sh", "--root", tmp_path, "--example", "no-such-site")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no-such-site" in bad.stderr
    assert not (tmp_path / "opt").exists()
    odd = script("uninstall.sh", "--frobnicate")
    assert odd.returncode == 2 and "--frobnicate" in odd.stderr

