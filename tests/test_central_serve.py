"""`gatectl central serve --config central.toml` as the service runs it (a real Mosquitto, the
SQLite default): health and Prometheus metrics over HTTP, a device whose status goes offline
raises an alert, a killed worker process is restarted; the operator's commands; central.toml
errors are one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx

from gatectl.central.simulate import SimDevice
from gatectl.config.central import load_central_config
from tests.broker import free_port
from tests.conftest import REPO, one_line_error, ok, run_cli, wait_for
from tests.test_central import SITE, write_config


def test_the_example_central_toml_validates():
    cfg = load_central_config(REPO / "config" / "central" / "central.toml")
    assert cfg.database.startswith("sqlite:///") and cfg.ingest.workers >= 1


def test_a_bad_central_toml_is_one_line(tmp_path):
    bad = tmp_path / "central.toml"
    bad.write_text('database = "mysql://x"\n[ingest]\nworkers = 0\n')
    r = run_cli("central", "serve", "--config", str(bad))
    one_line_error(r)
    assert "database" in r.stderr and "ingest.workers" in r.stderr
    r = run_cli("central", "residents", "list", "--config", str(tmp_path / "missing.toml"))
    one_line_error(r)


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_serve_health_metrics_offline_alert_and_worker_restart(tmp_path, broker):
    from gatectl.sync.signing import generate_private_key, save_private_key

    save_private_key(generate_private_key(), tmp_path / "central.key")
    port = free_port()
    config = write_config(tmp_path, broker, f"sqlite:///{tmp_path / 'c.db'}", http_port=port)
    proc = subprocess.Popen([sys.executable, "-m", "gatectl", "central", "serve", "--config", str(config)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=(tmp_path / "serve.log").open("wb"))
    url = f"http://127.0.0.1:{port}"

    def get(path: str) -> httpx.Response | None:
        try:
            return httpx.get(url + path, timeout=2)
        except httpx.HTTPError:
            return None

    dev = None
    try:
        health = wait_for(lambda: (r := get("/health")) is not None and r.status_code == 200 and r, 60,
                          "/health 200 with both workers")
        assert set(health.json()["workers"]) == {"w1", "w2"}
        dev = SimDevice(broker.host, broker.port, SITE, "dev-m", resend_s=1.0)
        dev.wait_ready()
        dev.event(b"\xff\xd8jpeg")
        wait_for(lambda: dev.resend() == 0 and not dev.pending, 60, "the event stored and confirmed", step=0.2)
        text = get("/metrics").text
        assert metric(text, "gatectl_central_events_total") == 1
        assert metric(text, "gatectl_central_devices_offline") == 0
        # a device's lag is written apart from its events, within a second (ingest.SEEN_EVERY_S)
        wait_for(lambda: 'gatectl_central_device_lag_seconds{device="dev-m",site="garden"}'
                 in get("/metrics").text, 20, "the device's lag in the metrics")

        dev.client.loop_stop()  # the device vanishes (no reconnect): the broker sends its Last Will
        dev.client.socket().close()
        wait_for(lambda: metric(get("/metrics").text, "gatectl_central_devices_offline") == 1, 60,
                 "the device counted offline")
        assert metric(get("/metrics").text, "gatectl_central_alerts_total") == 1

        pid = health.json()["workers"]["w1"]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: (r := get("/health")) is not None and r.json()["workers"]["w1"]["pid"] != pid
                 and r.status_code == 200, 60, "the worker restarted")

        r = run_cli("central", "events", "list", "--config", str(config), "--json")
        assert '"device": "dev-m"' in ok(r)
        r = run_cli("central", "devices", "list", "--config", str(config))
        assert "device=dev-m" in ok(r) and "state=offline" in r.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()


def test_operator_commands_change_and_list_the_registry(tmp_path, broker):
    from gatectl.sync.signing import generate_private_key, save_private_key

    save_private_key(generate_private_key(), tmp_path / "central.key")
    config = str(write_config(tmp_path, broker, f"sqlite:///{tmp_path / 'c.db'}"))
    ok(run_cli("central", "devices", "add", "--config", config, "--site", SITE, "--device", "dev-1",
               "--building", "b1", "--door", "front"))
    assert "building=b1" in ok(run_cli("central", "devices", "list", "--config", config))
    out = ok(run_cli("central", "passes", "add", "--config", config, "--site", SITE, "--holder", "visitor 1",
                     "--hours", "2", "--door", "front"))
    pid = out.split('"id": "')[1].split('"')[0]
    ok(run_cli("central", "passes", "revoke", "--config", config, "--id", pid))
    assert "status=revoked" in ok(run_cli("central", "passes", "list", "--config", config, "--site", SITE))
    one_line_error(run_cli("central", "residents", "remove", "--config", config, "--uid", "nobody"))
    one_line_error(run_cli("central", "residents", "add", "--config", config, "--site", SITE))


def test_bench_central_prints_its_json_with_nothing_lost():
    r = subprocess.run([sys.executable, "scripts/bench_central.py", "--events", "200", "--paced-events", "40",
                        "--rate", "100", "--devices", "4", "--workers", "1", "--engines", "sqlite"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    run = out["runs"]["sqlite_1"]
    assert run["events_per_s"] > 0 and run["unconfirmed"] == 0 and run["snapshots"] == 60
    assert out["broker_ceiling"]["received"] == 200


def test_the_central_unit_is_hardened(tmp_path):
    import re
    import shutil

    import pytest

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    shutil.copy(REPO / "systemd" / "gatectl-central.service", tmp_path / "gatectl-central.service")
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", "gatectl-central.service"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for gatectl-central\.service: (\d+\.\d+)", out.stdout)
    assert m and float(m.group(1)) <= 2.5, out.stdout[-2000:]
    unit = (REPO / "systemd" / "gatectl-central.service").read_text()
    assert "ExecStart=/opt/gatectl/venv/bin/gatectl central serve --config /etc/gatectl-central/central.toml" in unit
