#!/usr/bin/env python3
"""Flood benchmark: genuine signed commands answered while junk floods a live `gatectl run`.

Starts its own Mosquitto and a real `gatectl run` (one face gate on a looping image folder, a
door on the simulated relay board), then, from a separate process, publishes junk at ``--rate``
messages/s for ``--seconds`` over the device's three inbound topics (cmd, its enroll topic, the
site's enroll topic), cycling through every payload class that used to hurt: nested JSON,
signed with the wrong key under the pinned key id (costs a signature check), not JSON, a lone
surrogate in ``kid``, a version of 2**64, quality "nan", over the command size limit, once a
second a 1 MB ``kid``, and at the start one message of ``--huge-mb`` MB (a 128 MB one once
took the daemon's RSS to 635 MB). Meanwhile ``--commands`` genuine signed door.open commands are sent at even
intervals, each awaited up to 10 s (MQTT 5 request/response).

Prints progress to stderr and, last, one JSON object on stdout: junk sent and rate achieved,
genuine commands answered (ok), their answer latency, and what the flood cost the device: event
rows and database bytes added, log bytes written, peak RSS, and the refusal counters from its
status message.

    python scripts/flood_sync.py [--rate 3000] [--seconds 30] [--commands 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt
from benchlib import stats
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gatectl.sync.signing import generate_private_key, public_key_b64, sign_command
from gatectl.sync.topics import Topics
from tests.broker import Broker

SITE, DEVICE, KID = "flood", "dev-f", "k1"
PHOTO = REPO / "tests" / "data" / "faces" / "lin_manuel_miranda_01.png"


def say(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def client(port: int, name: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def junk_payloads() -> list[bytes]:
    wrong = generate_private_key()
    now = time.time()
    forged = sign_command(wrong, KID, DEVICE, "door.open", {"door": "front"}, now=now)
    return [b"[" * 4000 + b"]" * 4000,
            json.dumps(forged).encode(),
            b"\xff\xfe not json at all",
            json.dumps({**forged, "kid": "k\ud800"}).encode(),
            json.dumps({"v": 1, "type": "resident", "op": "upsert", "uid": "x", "version": 2**64}).encode(),
            json.dumps({"v": 1, "type": "resident", "op": "upsert", "uid": "x", "version": 3,
                        "templates": [{"model": "m", "dim": 1, "quality": "nan", "emb": "AAAA"}]}).encode(),
            json.dumps({**forged, "pad": "x" * 17_000}).encode()]


def junk_worker(port: int, rate: float, seconds: float, huge_mb: int) -> int:
    """Runs in its own process (so its publishing does not share a GIL with the measurement)."""
    t = Topics("gatectl", SITE, DEVICE)
    topics = [t.cmd, t.enroll_device, t.enroll_site]
    payloads = junk_payloads()
    huge = json.dumps({**json.loads(payloads[1]), "kid": "k" * 1_000_000}).encode()  # once a second
    c = client(port, f"junk-{os.getpid()}")
    if huge_mb:
        c.publish(t.cmd, b"[" * (huge_mb << 20), qos=1).wait_for_publish(120)
    sent = 0
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            c.publish(topics[sent % 3], huge if sent % max(int(rate), 1) == 0 else payloads[sent % len(payloads)],
                      qos=0)
            sent += 1
        time.sleep(0.002)
    took = time.monotonic() - start
    c.disconnect()
    c.loop_stop()
    print(json.dumps({"sent": sent, "seconds": round(took, 2)}), flush=True)
    return 0


def write_config(folder: Path, port: int, pub: str) -> Path:
    cam = folder / "cam"
    cam.mkdir()
    (cam / "a.png").write_bytes(PHOTO.read_bytes())
    cfg = folder / "dev.toml"
    cfg.write_text(f"""
[device]
id = "{DEVICE}"
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

[sync]
enabled = true
host = "127.0.0.1"
port = {port}
health_interval_s = 1

[sync.command_keys]
{KID} = "{pub}"
""")
    return cfg


def db_state(path: Path) -> tuple[int, int]:
    """(event rows, bytes of the database with its WAL)."""
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        rows = db.execute("SELECT count(*) FROM events").fetchone()[0]
    return rows, size


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def run(args, folder: Path, port: int) -> dict:
    key = generate_private_key()
    cfg = write_config(folder, port, public_key_b64(key))
    data = folder / "state"
    log_path = folder / "daemon.log"
    t = Topics("gatectl", SITE, DEVICE)
    statuses: list[dict] = []
    answers: dict[bytes, tuple[float, dict]] = {}
    centre = client(port, "centre")

    def on_message(c, u, m) -> None:
        if m.topic == t.status:
            statuses.append(json.loads(m.payload))
            return
        corr = getattr(m.properties, "CorrelationData", None)
        if corr is not None:
            answers[corr] = (time.monotonic(), json.loads(m.payload))

    centre.on_message = on_message
    centre.subscribe([(t.status, 1), (t.cmd_resp, 1)])
    with open(log_path, "w") as log_file:
        daemon = subprocess.Popen([sys.executable, "-m", "gatectl", "--config", str(cfg), "--data", str(data), "run"],
                                  cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not any(s.get("state") == "online" and "sync" in s for s in statuses):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not come online:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        db = data / "gatectl.db"
        rows0, size0 = db_state(db)
        log0 = log_path.stat().st_size
        say(f"daemon online; flooding {args.rate:.0f} msg/s for {args.seconds:.0f} s")
        junk = subprocess.Popen([sys.executable, __file__, "--junk-worker", str(port), str(args.rate),
                                 str(args.seconds), str(args.huge_mb)], stdout=subprocess.PIPE, text=True)
        sent: dict[bytes, float] = {}
        gap = args.seconds / (args.commands + 1)
        start = time.monotonic()
        for i in range(args.commands):
            time.sleep(max(0.0, start + gap * (i + 1) - time.monotonic()))
            body = sign_command(key, KID, DEVICE, "door.open", {"door": "front"}, now=time.time())
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = t.cmd_resp
            props.CorrelationData = corr = body["id"].encode()
            sent[corr] = time.monotonic()
            centre.publish(t.cmd, json.dumps(body).encode(), qos=1, properties=props)
        junk_out, _ = junk.communicate(timeout=args.seconds + 120)
        wait_until = time.monotonic() + 10
        while len(answers) < len(sent) and time.monotonic() < wait_until:
            time.sleep(0.05)
        ok = [corr for corr, (_, body) in answers.items() if corr in sent and body.get("ok")]
        latency = [(answers[c][0] - sent[c]) * 1000 for c in ok]
        n_status = len(statuses)
        deadline = time.monotonic() + 5
        while len(statuses) == n_status and time.monotonic() < deadline:
            time.sleep(0.05)  # one more status, with the counters after the flood
        rows1, size1 = db_state(db)
        worker = json.loads(junk_out.strip().splitlines()[-1])
        sync = statuses[-1].get("sync", {})
        return {"junk_rate_target": args.rate, "junk_sent": worker["sent"],
                "junk_rate_achieved": round(worker["sent"] / worker["seconds"], 1), "seconds": worker["seconds"],
                "genuine_sent": len(sent), "genuine_answered_ok": len(ok),
                "answer_ms": stats(latency) if latency else None,
                "event_rows_added": rows1 - rows0, "db_bytes_added": size1 - size0,
                "log_bytes_added": log_path.stat().st_size - log0,
                "huge_message_mb": args.huge_mb, "daemon_peak_rss_mb": peak_rss_mb(daemon.pid),
                "refused": sync.get("refused"), "inbox_overflow": sync.get("inbox_overflow", 0)}
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        centre.disconnect()
        centre.loop_stop()


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--junk-worker":
        return junk_worker(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=3000.0, help="junk messages per second")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--commands", type=int, default=10, help="genuine signed commands during the flood")
    ap.add_argument("--huge-mb", type=int, default=128, help="one message this big first (0: none)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        broker = Broker(folder / "broker")
        broker.start()
        try:
            result = run(args, folder, broker.port)
        finally:
            broker.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
