"""`gatectl run` with central sync, against a real Mosquitto of the test's own: online/offline
status (Last Will on SIGKILL), health, events with snapshots, a signed remote door open through
the `gatectl central` CLI, a remote config reload, TLS with client certificates, and one-line
errors for bad TLS settings."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from gatectl.config.sync import SyncConfig, TlsConfig
from gatectl.central.tool import Central
from tests.broker import Broker, make_pki
from tests.conftest import FACES, REPO, run_cli, wait_for
from tests.test_sync import SITE


def write_config(tmp_path, broker: Broker, pub: str | None = None, tls: str = "", keepalive: int = 5):
    cam = tmp_path / "cam"
    cam.mkdir(exist_ok=True)
    (cam / "a.jpg").write_bytes((FACES / "lin_manuel_miranda_01.png").read_bytes())
    cfg = tmp_path / "dev.toml"
    keys = f'\n[sync.command_keys]\nk1 = "{pub}"\n' if pub else ""
    cfg.write_text(f"""
[device]
id = "dev-d"
site = "{SITE}"

[[cameras]]
name = "c"
source = "{cam}"
kind = "images"
fps = 2
loop = true
max_frame_age_ms = 3000

[[outputs]]
name = "door"

[[doors]]
name = "front"
output = "door"

[[gates]]
kind = "face"
name = "g"
camera = "c"
door = "front"
cooldown_s = 1

[sync]
enabled = true
host = "{broker.host}"
port = {broker.port}
keepalive_s = {keepalive}
health_interval_s = 2
{tls}{keys}""")
    return cfg


def start(cfg, data) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gatectl", "--config", str(cfg), "--data", str(data), "run"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_daemon_status_events_remote_open_reload_and_last_will(tmp_path, broker):
    key = tmp_path / "central.key"
    r = run_cli("central", "keygen", "--out", str(key), "--kid", "k1")
    assert r.returncode == 0, r.stderr
    pub = r.stdout.strip().splitlines()[-1].split('"')[1]
    cfg = write_config(tmp_path, broker, pub)
    central = Central(SyncConfig(enabled=True, host=broker.host, port=broker.port), SITE, client_id="c-e2e")
    central.start()
    proc = start(cfg, tmp_path / "state")
    try:
        wait_for(lambda: central.statuses.get("dev-d", {}).get("health", {}).get("cameras"), 60,
                 "a status with camera health")
        st = central.statuses["dev-d"]
        assert st["state"] == "online" and st["health"]["boards"]["main"]["state"] == "online"
        assert "c" in st["health"]["cameras"] and st["sync"]["outbox"]["dropped_events"] == 0
        ev = wait_for(lambda: [e for e in central.events.values() if e["kind"] == "access"], 60, "an access event")[0]
        assert ev["decision"] == "denied" and ev["reason"] == "unknown face" and ev["snapshot"] is True
        wait_for(lambda: ev["id"] in central.snapshots, 10, "its snapshot")
        assert central.snapshots[ev["id"]][:2] == b"\xff\xd8"  # JPEG bytes, not base64

        args = ["central", "cmd", "--site", SITE, "--port", str(broker.port), "--device", "dev-d",
                "--key", str(key), "--kid", "k1"]
        r = run_cli(*args, "door.open", "door=front")
        assert r.returncode == 0 and json.loads(r.stdout)["result"] == "door front unlocked", r.stdout + r.stderr
        r = run_cli(*args, "door.open", "door=back")
        assert r.returncode == 1 and "unknown door 'back'" in json.loads(r.stdout)["error"]

        signing = ["--key", str(key), "--kid", "k1"]  # the same key signs enrollment changes
        r = run_cli("central", "enroll", "--site", SITE, "--port", str(broker.port), *signing, "--name",
                    "Barack Obama", "--unit", "1-101", "--photo", str(FACES / "obama_01.jpg"))
        assert r.returncode == 0, r.stderr
        uid = json.loads(r.stdout)["uid"]
        wait_for(lambda: "Barack Obama" in run_cli("residents", "list", config=cfg, data=tmp_path / "state").stdout,
                 60, "the pushed resident on the device", step=0.5)
        r = run_cli("central", "delete", "--site", SITE, "--port", str(broker.port), *signing, "--uid", uid)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: "Barack Obama" not in run_cli("residents", "list", config=cfg,
                                                        data=tmp_path / "state").stdout, 60, "the deletion", step=0.5)

        connects = central.statuses["dev-d"]["sync"]["connects"]
        uptime = central.statuses["dev-d"]["health"]["uptime_s"]
        cfg.write_text(cfg.read_text().replace("cooldown_s = 1", "cooldown_s = 2"))
        r = run_cli(*args, "config.reload")
        assert r.returncode == 0 and "restarting" in json.loads(r.stdout)["result"], r.stdout
        # the old process's last status also said connects == 1: the new one has a shorter uptime
        wait_for(lambda: central.statuses["dev-d"].get("sync", {}).get("connects") == 1
                 and central.statuses["dev-d"]["state"] == "online"
                 and central.statuses["dev-d"].get("health", {}).get("uptime_s", 1e9) < uptime, 60,
                 "the restarted daemon online")
        assert proc.poll() is None and connects >= 1  # same process (exec), back online

        cfg.write_text(cfg.read_text().replace("cooldown_s = 2", "cooldown_s = -1"))
        r = run_cli(*args, "config.reload")
        assert r.returncode == 1 and "gates[0].cooldown_s" in json.loads(r.stdout)["error"]

        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: central.statuses["dev-d"]["state"] == "offline", 20, "the Last Will")
    finally:
        proc.kill()
        proc.communicate()
        central.stop()


def test_mutual_tls_connects_and_bad_tls_settings_are_one_line(tmp_path):
    pki = make_pki(tmp_path / "pki", client_cn="dev-d")
    broker = Broker(tmp_path / "broker", tls=pki, require_certificate=True)
    broker.start()
    tls = f'\n[sync.tls]\nca = "{pki.ca}"\ncert = "{pki.client_cert}"\nkey = "{pki.client_key}"\n'
    cfg = write_config(tmp_path, broker, tls=tls)
    central = Central(SyncConfig(enabled=True, host="localhost", port=broker.port,
                                 tls=TlsConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)), SITE)
    central.start()
    proc = start(cfg, tmp_path / "state")
    try:
        wait_for(lambda: central.statuses.get("dev-d", {}).get("state") == "online", 60, "online over TLS")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        central.stop()
        broker.stop()
    assert proc.returncode == 0, err[-2000:]
    assert central.statuses["dev-d"]["state"] == "offline"  # a clean stop says so itself

    cases = [(tls.replace(str(pki.ca), str(tmp_path / "nope.pem")), f"sync.tls.ca: file not found: {tmp_path / 'nope.pem'}"),
             (tls.replace(str(pki.client_cert), str(pki.ca.parent / "junk.pem")), "sync.tls.cert: ")]
    (pki.ca.parent / "junk.pem").write_text("not a certificate\n")
    for bad, expect in cases:
        cfg = write_config(tmp_path, broker, tls=bad)
        r = run_cli("run", config=cfg, data=tmp_path / "state2")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"gatectl: {expect}"), r.stderr


def test_an_unsigned_enrollment_of_a_strangers_face_never_opens_a_live_daemons_door(tmp_path, broker):
    """Issue 12: one unsigned message on <prefix>/v1/<site>/enroll carrying a stranger's own
    template opened the door 0.9 s later; reusing a resident's uid recorded the pass as theirs."""
    import time

    from gatectl.config import default_config
    from gatectl.people.enroll import Sample
    from gatectl.runtime.app import App
    from gatectl.sources.media import read_image
    from gatectl.sync.enrollment import encode_templates
    from gatectl.sync.signing import generate_private_key, public_key_b64
    from gatectl.sync.topics import Topics
    from tests.test_enroll_authority import raw_publish

    key = generate_private_key()
    cfg = write_config(tmp_path, broker, public_key_b64(key))  # the camera shows the stranger
    scratch = App(default_config(), tmp_path / "scratch")
    stranger = encode_templates(scratch.enroller().templates(
        [Sample("s", read_image(FACES / "lin_manuel_miranda_01.png"))]), scratch.embedder.model_id)
    scratch.close()
    central = Central(SyncConfig(enabled=True, host=broker.host, port=broker.port), SITE, client_id="c-atk",
                      key=key, kid="k1")
    central.start()
    proc = start(cfg, tmp_path / "state")
    try:
        wait_for(lambda: central.statuses.get("dev-d", {}).get("health", {}).get("cameras"), 60, "the daemon")

        def frames() -> int:
            return central.statuses["dev-d"]["health"]["cameras"]["c"]["frames"]

        change = {"v": 1, "type": "resident", "op": "upsert", "uid": "u-stranger", "version": int(time.time() * 1000),
                  "name": "Stranger", "unit": "0-0", "status": "active", "templates": stranger, "origin": "central"}
        raw_publish(broker, Topics("gatectl", SITE, "dev-d").enroll_site, change)
        wait_for(lambda: central.statuses["dev-d"].get("sync", {}).get("enroll_rejected", 0) >= 1, 30,
                 "the daemon's refusal in its status")
        seen = frames()
        wait_for(lambda: frames() >= seen + 6, 30, "three more seconds of frames of the stranger", step=0.1)
        assert not [e for e in central.events.values() if e.get("decision") == "granted"]

        central.push({**change, "version": None})  # the centre's own, signed: now the door opens
        ev = wait_for(lambda: [e for e in central.events.values() if e.get("decision") == "granted"], 60,
                      "a grant after the signed enrollment", step=0.1)[0]
        assert ev["resident"] == "u-stranger"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        central.stop()
