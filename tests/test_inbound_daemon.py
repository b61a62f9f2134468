"""Attacks on a live `gatectl run` (its own Mosquitto, simulated board): text from the network
cannot forge a log line."""

from __future__ import annotations

import json
import signal
import time

from gatectl.sync.signing import generate_private_key, public_key_b64, sign_command
from gatectl.sync.topics import Topics
from tests.test_inbound import Attacker
from tests.test_sync import SITE
from tests.test_sync_daemon import start, write_config

FORGED = "12:00:00 INFO gatectl.gate: door front granted to resident Barack Obama"


def test_a_kid_with_a_newline_does_not_forge_a_log_line(tmp_path, broker):
    key = generate_private_key()
    cfg = write_config(tmp_path, broker, public_key_b64(key))
    proc = start(cfg, tmp_path / "state")
    centre = Attacker(broker, "centre")
    try:
        t = Topics("gatectl", SITE, "dev-d")
        centre.c.subscribe(t.status, qos=1)
        statuses: list[dict] = []
        centre.c.on_message = lambda c, u, m: statuses.append(json.loads(m.payload)) if m.topic == t.status else None
        deadline = time.monotonic() + 90
        while not any(s.get("state") == "online" for s in statuses):
            assert proc.poll() is None and time.monotonic() < deadline, "the daemon never came online"
            time.sleep(0.1)
        evil = f"k1\n{FORGED}\x1b[2J"
        for kid in (evil, "k9\n" + FORGED):
            body = sign_command(key, kid, "dev-d", "door.open", {"door": "front"}, now=time.time())
            centre.send(t.cmd, json.dumps(body).encode())
        change = {"v": 1, "type": "resident", "op": "delete", "uid": "u\n" + FORGED, "version": 5}
        centre.send(t.enroll_site, json.dumps(change).encode())
        genuine = sign_command(key, "k1", "dev-d", "door.open", {"door": "front"}, now=time.time())
        centre.c.subscribe(t.cmd_resp, qos=1)
        centre.c.on_message = centre._on_message
        assert centre.command("dev-d", genuine, 30)["ok"]  # everything before it was handled
    finally:
        centre.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    lines = err.splitlines()
    assert not any(line.startswith(FORGED) or FORGED in line and "\\n" not in line for line in lines), err[-3000:]
    assert "\x1b" not in err
    assert sum("refused" in line for line in lines) >= 2, err[-3000:]
