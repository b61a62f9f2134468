"""`gatectl replay` and the demo: files through the very gate `run` builds, one loop for every kind.

Each input file is one pass: the gate is reset before it, flushed after it (vehicles still in
view are decided), and the kind's `ReplayReport` (its package's ``KIND.replay``) turns decisions
into rows, plus one row for an input where nothing was decided, saying why.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from gatectl.config import Config
from gatectl.config.gates import GateConfigBase
from gatectl.core.errors import UsageError
from gatectl.core.safe_text import shown
from gatectl.gates.registry import gate_kind
from gatectl.runtime.app import App
from gatectl.sources.media import MediaError, MediaFrame, iter_media

FLUSH_AFTER_S = 1e6  # the end of a file: later than any track's timeout


def replay_gate(cfg: Config, name: str | None) -> GateConfigBase:
    gates = [g for g in cfg.gates if name is None or g.name == name]
    if not gates:
        raise UsageError(
            f"--gate: no gate named '{shown(name, 40)}'" if name else "replay: config has no gate"
        )
    return gates[0]


def walk_media(
    paths: list[str],
    still_frames: int,
    begin: Callable[[str], None],
    end: Callable[[], None],
    frame: Callable[[MediaFrame], None],
) -> int:
    """Every frame of every input, with ``begin(source)`` / ``end()`` around each input file;
    unreadable inputs are reported on stderr and skipped. Returns 1 if there was one (the exit
    code: a script replaying a folder must notice a file that was never looked at), else 0."""
    current: str | None = None
    failed = 0
    for item in iter_media(paths, still_frames=still_frames):
        if isinstance(item, MediaError):
            if current is not None:
                end()
            current = None
            failed = 1
            print(f"gatectl: {item}", file=sys.stderr)
            continue
        if item.source != current or item.index == 0:
            if current is not None:
                end()
            current = item.source
            begin(current)
        frame(item)
    if current is not None:
        end()
    return failed


def replay(
    app: App,
    paths: list[str],
    gate_name: str | None,
    emit: Callable[[dict[str, Any]], None],
    still_frames: int = 3,
) -> int:
    """Feed files through the same gate as `run`; ``emit`` gets one dict per row. A still is
    shown for ``still_frames`` frames, as a camera would."""
    gate_cfg = replay_gate(app.cfg, gate_name)
    gate = app.gate(gate_cfg)
    report = gate_kind(gate_cfg).replay(gate)
    last_t = 0.0

    def begin(source: str) -> None:
        gate.reset()
        report.begin(source)

    def end() -> None:
        for row in report.frame(None, gate.flush(last_t + FLUSH_AFTER_S)) + report.end():
            emit(row)

    def frame(item: MediaFrame) -> None:
        nonlocal last_t
        last_t = item.t
        for row in report.frame(item, gate.process(item.image, item.t)):
            emit(row)

    return walk_media(paths, still_frames, begin, end, frame)
