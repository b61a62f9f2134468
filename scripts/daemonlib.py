"""A whole `gatectl run` inside the calling script, on sample folders, for soak.py and
bench_cpu.py: the config of a site with every gate kind, the Runner on a thread, and what this
process costs (CPU, RSS, open descriptors, read from /proc)."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gatectl.config import parse_config  # noqa: E402
from gatectl.hw.relay import SimulatedRelay  # noqa: E402
from gatectl.people.enroll import Sample  # noqa: E402
from gatectl.runtime.app import App  # noqa: E402
from gatectl.runtime.runner import Runner  # noqa: E402
from gatectl.sources.media import read_image  # noqa: E402

DATA = REPO / "tests" / "data"
FACES = sorted((DATA / "faces").glob("*.[jp][pn]*g"))
PLATES = sorted((DATA / "plates" / "scenes").glob("*.[jp][pn]*g"))
CARS = sorted((DATA / "ebike").glob("paddle_elevator_pic_*.png"))
EMPTY = DATA / "noface" / "yolox_dog_bicycle.jpg"  # no face, no plate, no e-bike in a car


def folder(root: Path, name: str, files: list[Path]) -> Path:
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        shutil.copyfile(f, out / f"{i:03d}{f.suffix}")
    return out


def site(root: Path, cameras: dict[str, Path], gates: list[tuple[str, str, str]],
         fps: float, run: dict) -> dict:
    """A config: ``cameras`` name -> image folder (looping at ``fps``); ``gates`` (kind, name,
    camera), each with its own door, barrier or elevator on the in-memory board."""
    outputs, doors, barriers, elevators, out_gates = [], [], [], [], []
    for i, (kind, name, camera) in enumerate(gates):
        outputs.append({"name": f"out_{name}", "channel": i})
        if kind == "face":
            doors.append({"name": f"door_{name}", "output": f"out_{name}"})
            out_gates.append({"kind": "face", "name": name, "camera": camera, "door": f"door_{name}"})
        elif kind == "plate":
            barriers.append({"name": f"arm_{name}", "open_output": f"out_{name}"})
            out_gates.append({"kind": "plate", "name": name, "camera": camera,
                              "barrier": f"arm_{name}", "direction": "entry"})
        else:
            elevators.append({"name": f"car_{name}", "hold_output": f"out_{name}"})
            out_gates.append({"kind": "ebike", "name": name, "camera": camera, "elevator": f"car_{name}"})
    return {
        "cameras": [{"name": n, "source": str(p), "kind": "images", "fps": fps, "loop": True,
                     "max_frame_age_ms": 2000} for n, p in cameras.items()],
        "outputs": outputs, "doors": doors, "barriers": barriers, "elevators": elevators,
        "gates": out_gates, "run": run,
    }


class InProcessDaemon:
    """The Runner of ``data`` on a thread of this process (which is then the daemon)."""

    def __init__(self, data: dict, state: Path, enroll: bool = True):
        self.app = App(parse_config(data), state, boards={"main": SimulatedRelay(channels=8)})
        if enroll:  # a resident, so that face frames are decisions, not only detections
            self.app.enroller().enroll_resident(
                "Obama", "1-1-101", [Sample(p.name, read_image(p)) for p in FACES if "obama_01" in p.name])
        self.runner = Runner(self.app)
        self.thread = threading.Thread(target=self.runner.run, name="runner", daemon=True)

    def start(self, timeout: float = 300) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not (len(self.runner.workers) == len(self.app.cfg.gates)
                   and all(w.analysed + w.motion.spared > 0 for w in self.runner.workers)):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise SystemExit("the gates did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.runner.stop.set()
        self.thread.join(60)
        self.app.close()

    def analysed(self) -> int:
        return sum(w.analysed for w in self.runner.workers)

    def counters(self) -> dict[str, int]:
        out = {"analysed": 0, "skipped": 0, "skipped_motion": 0, "errors": 0, "restarts": 0}
        for w in self.runner.workers:
            h = w.health()
            for k in out:
                out[k] += h[k]
        return out

    def decisions(self) -> dict[str, int]:
        rows = self.app.store.db.execute(
            "SELECT kind, coalesce(decision, '-'), count(*) FROM events GROUP BY 1, 2").fetchall()
        return {f"{k}:{d}": n for k, d, n in rows}


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def machine() -> dict:
    """What else the machine was doing: the figures are only as good as a shared 2-core box."""
    return {"cores": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}
