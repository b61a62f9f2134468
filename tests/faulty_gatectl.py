"""`python tests/faulty_gatectl.py ARGS...` is `python -m gatectl ARGS...` with faults injected,
for the supervision tests on a real daemon process (nothing of this is in gatectl itself):

* ``FAULT_READS=N``: the image-folder camera's reads raise ``OSError`` N times in a row after
  its first 3 frames (a camera source that fails: the grabber's outage and reopen);
* ``FAULT_GATE=name`` and ``FAULT_FRAMES=N``: that gate's first N frames raise (a gate worker
  that raises repeatedly: the supervisor's restart).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatectl.cli.main import main  # noqa: E402
from gatectl.runtime.app import App  # noqa: E402
from gatectl.sources.camera import ImageFolderSource  # noqa: E402

reads = {"done": 0, "failed": 0}
frames = {"failed": 0}
real_read = ImageFolderSource.read
real_gate = App.gate


def faulty_read(self):
    if reads["done"] >= 3 and reads["failed"] < int(os.environ.get("FAULT_READS", "0")):
        reads["failed"] += 1
        raise OSError("injected camera read fault")
    reads["done"] += 1
    return real_read(self)


def faulty_gate(self, cfg):
    gate = real_gate(self, cfg)
    if cfg.name == os.environ.get("FAULT_GATE"):
        process = gate.process

        def flaky(image, t):
            if frames["failed"] < int(os.environ.get("FAULT_FRAMES", "0")):
                frames["failed"] += 1
                raise RuntimeError("injected gate fault")
            return process(image, t)

        gate.process = flaky
    return gate


ImageFolderSource.read = faulty_read
App.gate = faulty_gate
sys.exit(main(sys.argv[1:]))
