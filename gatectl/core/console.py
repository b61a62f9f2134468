"""The operator console of a simulator (`board-sim`, `reader-sim`): lines typed on stdin are
answered until ``quit`` or a stop; a closed stdin (the simulator run in the background) ends the
console but not the simulator."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable


def serve_console(lines: Iterable[str], answer: Callable[[str], str | None],
                  stop: threading.Event, name: str) -> None:
    """Answer each line (``answer`` returns the reply, "" for none, None to quit) on a thread
    of its own, and block until ``stop`` is set (by ``quit``, SIGTERM or the caller)."""

    def console() -> None:
        for line in lines:
            reply = answer(line)
            if reply is None:
                break
            if reply:
                print(reply, flush=True)
        else:
            return  # stdin closed: keep serving
        stop.set()

    threading.Thread(target=console, name=name, daemon=True).start()
    while not stop.wait(0.2):
        pass
