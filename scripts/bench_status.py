#!/usr/bin/env python3
"""What the status page costs a running daemon: request latency of /healthz, /metrics and a
live-view frame, and the CPU and RSS `gatectl run` uses with the page off, on and idle, and on
with a viewer (the page's own polling: /api/status every 2 s, the frame every 250 ms).

Each phase is a real `gatectl run` subprocess (one face gate on a looping folder of photos at
--fps, a simulated relay), measured from /proc after a warm-up; the client runs here.

Prints progress to stderr and, last, one JSON line on stdout.

    python scripts/bench_status.py [--seconds 20] [--requests 200] [--fps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from benchlib import stats  # noqa: E402

PHOTOS = [REPO / "tests/data/noface/hyperlpr_test_img.jpg", REPO / "tests/data/faces/obama_01.jpg",
          REPO / "tests/data/noface/yolox_dog_bicycle.jpg"]
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def config(folder: Path, port: int, status: bool, fps: float) -> str:
    return f"""
[[cameras]]
name = "lobby"
source = "{folder}"
loop = true
fps = {fps}

[[outputs]]
name = "door"
channel = 0

[[doors]]
name = "door"
output = "door"

[[gates]]
kind = "face"
name = "lobby"
camera = "lobby"
door = "door"

[status]
enabled = {"true" if status else "false"}
port = {port}
"""


def wait_ready(proc: subprocess.Popen, url: str | None, timeout: float = 180) -> None:
    """Until the page answers (or, page off, until the gate analyses frames: a warm-up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gatectl run exited with {proc.returncode}")
        if url is None:
            time.sleep(10)  # no page to ask: model loading takes a few seconds
            return
        try:
            if httpx.get(url + "/live/lobby", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the daemon did not start in time")


def phase(tmp: Path, name: str, status: bool, viewer: bool, args: argparse.Namespace) -> dict:
    port = free_port()
    cfg = tmp / f"{name}.toml"
    cfg.write_text(config(tmp / "camera", port, status, args.fps))
    proc = subprocess.Popen([sys.executable, "-m", "gatectl", "--config", str(cfg), "--data",
                             str(tmp / f"state-{name}"), "run"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}" if status else None
    try:
        wait_ready(proc, url)
        out: dict = {}
        if url is not None and viewer:
            # interleaved, so every endpoint meets the same load from the gate worker; a frame
            # asked for right after the previous one is the cached JPEG, one asked 1/fps later
            # a new frame to encode
            paths = {"healthz_ms": "/healthz", "metrics_ms": "/metrics",
                     "live_frame_cached_ms": "/live/lobby"}
            samples: dict[str, list[float]] = {k: [] for k in [*paths, "live_frame_new_ms"]}
            with httpx.Client(base_url=url, timeout=10) as c:
                for _ in range(args.requests):
                    time.sleep(1 / args.fps)
                    samples["live_frame_new_ms"] += timed_get(c, "/live/lobby")
                    for key, path in paths.items():
                        samples[key] += timed_get(c, path)
            out.update({k: stats(v) for k, v in samples.items()})
        stop = threading.Event()
        poller = threading.Thread(target=view_page, args=(url, stop), daemon=True)
        if url is not None and viewer:
            poller.start()
        c0, t0 = cpu_s(proc.pid), time.monotonic()
        time.sleep(args.seconds)  # measuring: the daemon works meanwhile
        out["cpu_percent"] = round(100 * (cpu_s(proc.pid) - c0) / (time.monotonic() - t0), 1)
        out["rss_mb"] = round(rss_mb(proc.pid), 1)
        stop.set()
        print(f"{name}: {out}", file=sys.stderr)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def timed_get(c: httpx.Client, path: str) -> list[float]:
    """[milliseconds] of one request, which must succeed."""
    t = time.perf_counter()
    r = c.get(path)
    ms = (time.perf_counter() - t) * 1000
    if r.status_code != 200:
        raise SystemExit(f"{path}: HTTP {r.status_code}")
    return [ms]


def view_page(url: str, stop: threading.Event) -> None:
    """What one open page asks for: the status every 2 s, the frame every 250 ms."""
    with httpx.Client(base_url=url, timeout=10) as c:
        n = 0
        while not stop.wait(0.25):
            c.get("/live/lobby")
            if n % 8 == 0:
                c.get("/api/status")
            n += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="CPU measuring time per phase")
    ap.add_argument("--requests", type=int, default=200, help="requests per endpoint")
    ap.add_argument("--fps", type=float, default=4.0, help="camera frames per second")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-status-") as scratch:
        tmp = Path(scratch)
        (tmp / "camera").mkdir()
        for p in PHOTOS:
            shutil.copy(p, tmp / "camera" / p.name)
        off = phase(tmp, "off", status=False, viewer=False, args=args)
        idle = phase(tmp, "idle", status=True, viewer=False, args=args)
        viewed = phase(tmp, "viewed", status=True, viewer=True, args=args)
    result = {
        "fps": args.fps, "requests": args.requests, "seconds": args.seconds,
        "healthz_ms": viewed.pop("healthz_ms"), "metrics_ms": viewed.pop("metrics_ms"),
        "live_frame_new_ms": viewed.pop("live_frame_new_ms"),
        "live_frame_cached_ms": viewed.pop("live_frame_cached_ms"),
        "cpu_percent": {"page_off": off["cpu_percent"], "page_on_idle": idle["cpu_percent"],
                        "page_viewed": viewed["cpu_percent"]},
        "rss_mb": {"page_off": off["rss_mb"], "page_on_idle": idle["rss_mb"],
                   "page_viewed": viewed["rss_mb"]},
        "added_cpu_percent_viewed": round(viewed["cpu_percent"] - off["cpu_percent"], 1),
        "added_rss_mb": round(viewed["rss_mb"] - off["rss_mb"], 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
