"""The announcement display: where `display.announce` and the e-bike gate's announcement are
shown (a door panel or a lift's LED text display).

Announcements are always stored (the status topic echoes them); this drives the device that
shows them, and says whether it did. Two kinds, one payload (JSON ``{"text", "door",
"until"}``, ``until`` a Unix time or null):

- ``kind = "http"``: POSTed to ``url`` (the door panel's endpoint); shown when it answers 2xx.
- ``kind = "command"``: ``command`` (an argv, no shell) run with the payload on stdin; shown
  when it exits 0. The hook for anything else: a serial LED text display's protocol, a TTS box.

``show`` waits for the answer (at most ``timeout_s``): the centre's command reply must say
what really happened. ``show_later`` is for a gate worker, which must not wait: one thread
shows queued announcements in turn and logs what came of them.

`PrivacyNotice` puts the notice the 2025 Measures require on the display of every door a face
gate serves - that face recognition is in use, and the other way in (`[privacy] notice_text`) -
at start and every ``notice_every_s`` after, so it is back after any announcement.
"""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from gatectl.config.hardware import DisplayConfig
from gatectl.config.readers import PrivacyConfig
from gatectl.core.safe_text import shown

log = logging.getLogger("gatectl.display")

QUEUE_SIZE = 8  # announcements are rare; more waiting means the display is down
REPLY_LIMIT = 4096  # bytes of a display's answer read for the error message


@dataclass(frozen=True)
class Shown:
    ok: bool
    detail: str  # "shown on ..." or why not, one line


class Display:
    def __init__(self, cfg: DisplayConfig):
        self.cfg = cfg
        self._queue: queue.Queue[tuple[str, str | None, float | None]] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return self.cfg.kind != "none"

    def show(self, text: str, door: str | None = None, until: float | None = None) -> Shown:
        """Put ``text`` on the display now; never raises."""
        body = json.dumps({"text": text, "door": door, "until": until}, ensure_ascii=False).encode()
        if self.cfg.kind == "http":
            return self._post(body)
        if self.cfg.kind == "command":
            return self._run(body)
        return Shown(False, "no display configured ([display] kind in the config)")

    def _post(self, body: bytes) -> Shown:
        url = str(self.cfg.url)
        req = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                resp.read(REPLY_LIMIT)
                return Shown(True, f"shown on {url}")
        except urllib.error.HTTPError as exc:
            return Shown(False, f"display {url} answered HTTP {exc.code}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return Shown(False, f"display {url} unreachable: {shown(reason)}")

    def _run(self, body: bytes) -> Shown:
        argv = list(self.cfg.command or [])
        try:
            done = subprocess.run(
                argv, input=body, capture_output=True, timeout=self.cfg.timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return Shown(
                False, f"display command {shown(argv[0])} took longer than {self.cfg.timeout_s:g} s"
            )
        except OSError as exc:
            return Shown(
                False, f"display command {shown(argv[0])} failed: {shown(exc.strerror or exc)}"
            )
        if done.returncode != 0:
            err = done.stderr[:REPLY_LIMIT].decode("utf-8", "replace").strip().splitlines()
            return Shown(False, f"display command {shown(argv[0])} exited {done.returncode}"
                                + (f": {shown(err[-1])}" if err else ""))
        return Shown(True, f"shown by {shown(argv[0])}")

    def show_later(self, text: str, door: str | None = None, until: float | None = None) -> None:
        """Queue ``text`` for the display thread; a full queue drops it with one line."""
        if not self.configured:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="display", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((text, door, until))
        except queue.Full:
            log.warning("display: %d announcements waiting; this one is not shown", QUEUE_SIZE)

    def _serve(self) -> None:
        while True:
            text, door, until = self._queue.get()
            result = self.show(text, door, until)
            if result.ok:
                log.info("announcement %s", result.detail)
            else:
                log.warning("announcement not shown: %s", result.detail)


class PrivacyNotice:
    """The face-recognition notice on the doors' display; ``tick`` from a slow loop."""

    def __init__(self, display: Display, cfg: PrivacyConfig, doors: list[str],
                 clock: Callable[[], float]):
        self.display = display
        self.cfg = cfg
        self.doors = doors
        self.clock = clock
        self._due = float("-inf")
        self.shown = 0  # notices queued for the display

    def tick(self) -> int:
        """Queue the notice for every door when it is due; how many were queued."""
        now = self.clock()
        if not (self.cfg.notice and self.display.configured and self.doors) or now < self._due:
            return 0
        self._due = now + self.cfg.notice_every_s
        for door in self.doors:
            self.display.show_later(self.cfg.notice_text, door)
        self.shown += len(self.doors)
        return len(self.doors)
