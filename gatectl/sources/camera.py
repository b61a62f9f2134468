"""Live frame sources and the latest-frame grabber.

Why a grabber thread that keeps only the newest frame: ``VideoCapture.read()`` hands out
buffered frames in order, so when recognition is slower than the camera the decision is made
on a picture that is seconds old. At a gate that is a security bug -- whoever stood in front of
the camera *earlier* would open the door *now*. The grabber therefore reads continuously,
keeps one frame (a newer one replaces an unconsumed older one), stamps it with its capture
time and refuses to hand out anything older than ``max_frame_age_ms``. Nothing is queued.

What can and cannot be interrupted (OpenCV offers no way to cancel a blocked call):

* pacing sleeps of the video-file and image-folder sources wait on an Event, so
  :meth:`CameraGrabber.stop` ends them at once;
* URL sources: FFmpeg's open/read timeouts (5 s, passed with ``CAP_FFMPEG`` -- without it
  they are ignored; ``stimeout`` backs them up on FFmpeg <= 4) bound a blocked read; a
  half-open stream then fails the read and the source is reopened;
* V4L2 reads are bounded by OpenCV's ``select()`` timeout, ``OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT``
  (OpenCV's default is 10 s; set to 5 s here unless already set);
* anything else (a driver hung inside ``release()``) cannot be interrupted from Python. The
  watchdog then only *reports* the stall (``stats()['state'] == 'reconnecting'``), the reopen
  happens when the backend returns, and ``stop()`` gives up joining after a short wait and
  leaves the daemon thread behind. The real cure for such hardware is running the capture in a
  child process that can be killed (what Frigate does); see docs section 7.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from gatectl.config.hardware import CameraConfig
from gatectl.core.errors import GatectlError, InvariantError
from gatectl.sources.media import MediaError, list_images, open_capture, read_image

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("gatectl.camera")

#: Low-latency RTSP over TCP (Wi-Fi drops UDP). ``stimeout`` (socket timeout, us) is the
#: FFmpeg <= 4 name; FFmpeg 5+ ignores it (the pip wheel bundles FFmpeg 8) and the READ_TIMEOUT
#: interrupt bounds reads instead. ``timeout`` is not used: FFmpeg 4 reads it as "listen".
FFMPEG_CAPTURE_OPTIONS = "rtsp_transport;tcp|fflags;nobuffer|flags;low_delay|stimeout;5000000"
NETWORK_TIMEOUT_MS = 5000
V4L2_SELECT_TIMEOUT_S = "5"
BACKOFF_START_S = 0.5
DEFAULT_VIDEO_FPS = 25.0
DEFAULT_IMAGES_FPS = 5.0
FPS_WINDOW_S = 2.0
STOP_JOIN_S = 1.0


class SourceError(GatectlError):
    """A frame source cannot open or read; the message is one line naming the source."""


class FrameSource(ABC):
    """A camera-like source of BGR frames.

    Not thread-safe: the thread that opens a source is the only one that may use it, because
    OpenCV captures are not safe to share. The exception is :meth:`interrupt`, which any thread
    may call to end a pacing wait so the owner can shut down promptly.
    """

    #: Seconds that read() itself waits between frames (file sources replay in real time);
    #: 0 for live cameras, which deliver at the device's pace.
    period_s: float = 0.0

    def __init__(self, cfg: CameraConfig) -> None:
        self.cfg = cfg
        self.skipped = 0  # unusable items passed over, e.g. corrupt images of a folder
        self._wake = threading.Event()

    @abstractmethod
    def open(self) -> None:
        """Open, or reopen after close(); raise SourceError on failure."""

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """Next BGR frame; None at the end of a finite stream; SourceError if the stream broke."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; safe to call repeatedly."""

    def describe(self) -> str:
        return f"{self.cfg.kind} {self.cfg.source}"

    def interrupt(self) -> None:
        """Cut short any pacing wait, for good: the source is being shut down."""
        self._wake.set()


class _Pacer:
    """Spaces frames ``period`` apart in real time, as a camera would deliver them.

    A late frame restarts the schedule instead of bursting to catch up, so a slow disk or a
    paused process never produces a flood of frames with near-identical capture times.
    """

    def __init__(self, wake: threading.Event) -> None:
        self._wake = wake
        self._next: float | None = None

    def wait(self, period: float) -> bool:
        """Sleep until the next frame is due; False if interrupted."""
        now = time.monotonic()
        if self._next is None or now > self._next + period:
            self._next = now
        if self._wake.wait(max(0.0, self._next - now)):
            return False
        self._next += period
        return True


class _CaptureSource(FrameSource):
    """A source backed by one ``cv2.VideoCapture``; live by default: a failed read is an error."""

    def __init__(self, cfg: CameraConfig) -> None:
        super().__init__(cfg)
        self._cap: cv2.VideoCapture | None = None

    @abstractmethod
    def _create(self) -> cv2.VideoCapture:
        """Construct the capture (it may come back not opened)."""

    def open(self) -> None:
        self.close()
        cap = self._create()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.describe()}: cannot open")
        self._cap = cap

    def _grab(self) -> np.ndarray | None:
        if self._cap is None:
            raise SourceError(f"{self.describe()}: not open")
        ok, image = self._cap.read()
        return image if ok and image is not None else None

    def read(self) -> np.ndarray | None:
        image = self._grab()
        if image is None:
            raise SourceError(f"{self.describe()}: read failed (stream lost)")
        return image

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class V4L2Source(_CaptureSource):
    """USB/CSI camera via V4L2, ``source`` an index ("0") or a device path.

    MJPG is requested *before* the size and rate: many cameras offer 720p30 only in MJPG, and
    640x480@30 YUYV alone needs ~147 Mbit/s, so two such cameras saturate a Pi's USB 2.0.
    What the driver actually granted is read back and every difference logged, because a
    camera silently falling back to 640x480@5 otherwise looks like a recognition problem.
    """

    def _create(self) -> cv2.VideoCapture:
        os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", V4L2_SELECT_TIMEOUT_S)
        src = self.cfg.source
        cap = cv2.VideoCapture(int(src) if src.isdigit() else src, cv2.CAP_V4L2)
        if cap.isOpened():
            self._configure(cap)
        return cap

    def _configure(self, cap: cv2.VideoCapture) -> None:
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        wanted = (
            ("width", cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width),
            ("height", cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height),
            ("fps", cv2.CAP_PROP_FPS, self.cfg.fps),
        )
        for _, prop, value in wanted:
            if value is not None:
                cap.set(prop, value)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # honoured by V4L2: fewer queued, stale frames
        code = int(cap.get(cv2.CAP_PROP_FOURCC))
        fourcc = "".join(chr((code >> 8 * i) & 0xFF) for i in range(4))
        if fourcc != "MJPG":
            log.warning("camera '%s' (%s): format is %r, not MJPG; USB bandwidth may limit it",
                        self.cfg.name, self.describe(), fourcc)
        for name, prop, value in wanted:
            got = cap.get(prop)
            if value is not None and abs(got - value) > 0.5:
                log.warning("camera '%s' (%s): %s is %g, configured %g",
                            self.cfg.name, self.describe(), name, got, value)


class UrlSource(_CaptureSource):
    """RTSP/HTTP stream via FFmpeg with bounded open/read times and low-latency options."""

    def _create(self) -> cv2.VideoCapture:
        # The timeouts only count with CAP_FFMPEG given explicitly; the options apply to this
        # open only unless the operator exported OPENCV_FFMPEG_CAPTURE_OPTIONS (see open_capture).
        return open_capture(
            self.cfg.source,
            cv2.CAP_FFMPEG,
            [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS,
             cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS],
            ffmpeg_options=FFMPEG_CAPTURE_OPTIONS,
        )

    def describe(self) -> str:
        """The URL with any password masked: describe() ends up in logs and status reports."""
        parts = urlsplit(self.cfg.source)
        userinfo, at, host = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}")
        return f"url {urlunsplit(parts)}"


class VideoFileSource(_CaptureSource):
    """A video file played in real time (cfg.fps, else the file's rate) so it stands in for
    a live camera; at the end read() returns None, or starts over when cfg.loop is set."""

    def __init__(self, cfg: CameraConfig) -> None:
        super().__init__(cfg)
        self._pacer = _Pacer(self._wake)
        self._frames_since_open = 0

    def _create(self) -> cv2.VideoCapture:
        if not Path(self.cfg.source).is_file():
            raise SourceError(f"{self.describe()}: no such file")
        return open_capture(self.cfg.source)

    def open(self) -> None:
        super().open()
        if self._cap is None:  # super().open() sets it or raises
            raise InvariantError(f"{self.describe()}: opened without a capture")
        file_fps = self._cap.get(cv2.CAP_PROP_FPS)
        fps = self.cfg.fps or (file_fps if 0 < file_fps <= 240 else DEFAULT_VIDEO_FPS)
        self.period_s = 1.0 / fps
        self._frames_since_open = 0

    def read(self) -> np.ndarray | None:
        image = self._grab()
        if image is None:
            if self._frames_since_open == 0:
                raise SourceError(f"{self.describe()}: no decodable frames")
            if not self.cfg.loop:
                return None
            self.open()  # rewinding by reopening works for every container, seeking does not
            return self.read()
        self._frames_since_open += 1
        return image if self._pacer.wait(self.period_s) else None


class ImageFolderSource(FrameSource):
    """The images of a folder in name order at cfg.fps (default 5). A corrupt image is skipped,
    counted in ``skipped`` and logged once; only a pass without one good image is an error."""

    def __init__(self, cfg: CameraConfig) -> None:
        super().__init__(cfg)
        self.period_s = 1.0 / (cfg.fps or DEFAULT_IMAGES_FPS)
        self._pacer = _Pacer(self._wake)
        self._files: list[Path] = []
        self._pos = 0
        self._good = 0
        self._warned: set[Path] = set()

    def open(self) -> None:
        try:
            files = list_images(self.cfg.source)
        except MediaError:
            raise SourceError(f"{self.describe()}: no such folder") from None
        if not files:
            raise SourceError(f"{self.describe()}: no images found")
        self._files, self._pos, self._good = files, 0, 0

    def read(self) -> np.ndarray | None:
        while True:
            if self._pos >= len(self._files):
                if self._good == 0:
                    raise SourceError(f"{self.describe()}: no decodable images")
                if not self.cfg.loop:
                    return None
                self.open()  # list again: images added meanwhile join the next pass
            path = self._files[self._pos]
            self._pos += 1
            try:
                image = read_image(path)
            except MediaError as exc:
                self.skipped += 1
                if path not in self._warned:
                    self._warned.add(path)
                    log.warning("camera '%s': skipping %s", self.cfg.name, exc)
                continue
            self._good += 1
            return image if self._pacer.wait(self.period_s) else None

    def close(self) -> None:
        self._files, self._pos = [], 0


_SOURCES: dict[str, type[FrameSource]] = {
    "v4l2": V4L2Source,
    "url": UrlSource,
    "video": VideoFileSource,
    "images": ImageFolderSource,
}


def open_source(cfg: CameraConfig) -> FrameSource:
    """The source for ``cfg``, not yet opened: the thread that will own it calls open()."""
    return _SOURCES[cfg.kind](cfg)


@dataclass(frozen=True)
class Frame:
    """A captured image; ``t_capture`` is the grabber's clock() when it was read."""

    image: np.ndarray
    seq: int
    t_capture: float
    camera: str


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


class FrameReader:
    """One consumer's view of a shared grabber: every gate on a camera has its own, so the
    camera is opened once whatever the number of gates watching it, and each gate gets the
    newest frame it has not had yet. Frames published meanwhile that this reader never took
    (it was busy analysing, or pacing itself to its ``max_fps``) are counted in ``missed``."""

    def __init__(self, grabber: CameraGrabber, seen: int) -> None:
        self._grabber = grabber
        self.seen = seen  # seq of the last frame this reader took (or passed over)
        self.missed = 0

    @property
    def camera(self) -> CameraGrabber:
        return self._grabber

    def get(self, timeout: float) -> Frame | None:
        """As :meth:`CameraGrabber.get`, for this reader alone."""
        return self._grabber._take(self, timeout)


class CameraGrabber:
    """Owns one camera: a daemon thread reads it continuously and keeps only the newest frame.

    Any number of consumers: each has a :class:`FrameReader` (``reader()``), and :meth:`get`
    is a default one; no reader is given the same frame twice. Failures of the source never
    kill the thread: a failed open, a failed read or a stall starts an outage, and the source
    is reopened with exponential backoff until frames flow again. A bug that does kill it is
    seen by :meth:`crashed`, and :meth:`restart` starts a new thread (the runner's supervisor).
    """

    def __init__(
        self,
        cfg: CameraConfig,
        source_factory: Callable[[CameraConfig], FrameSource] = open_source,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        """``on_event(kind, detail)`` is told ``camera_lost`` at the start of each outage and
        ``camera_recovered`` when frames flow again (the runner records them as ``camera``
        events); it runs on the grab thread, and an exception in it is logged, not raised."""
        self.cfg = cfg
        self._factory = source_factory
        self._clock = clock
        self._on_event = on_event
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: FrameSource | None = None
        self._slot: Frame | None = None
        self._state = "starting"
        self._seq = 0
        self._counts = dict.fromkeys(
            ("frames", "dropped_stale", "dropped_overwritten", "outages", "reopen_attempts"), 0
        )
        self._last_t: float | None = None
        self._recent: deque[float] = deque(maxlen=512)  # capture times for the fps estimate
        self._last_error: str | None = None
        self._backoff_start = min(BACKOFF_START_S, cfg.reconnect_max_s)
        self._default = FrameReader(self, 0)

    def reader(self) -> FrameReader:
        """A new consumer of this camera, starting with the next frame published."""
        with self._cond:
            return FrameReader(self, self._seq)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"camera '{self.cfg.name}': grabber already started")
        self._source = self._factory(self.cfg)
        self._thread = threading.Thread(
            target=self._run, args=(self._source,), name=f"camera-{self.cfg.name}", daemon=True
        )
        self._thread.start()

    def crashed(self) -> bool:
        """The capture thread died without being stopped and without the stream ending: a bug
        (source failures are outages the thread survives). The frames have stopped for good."""
        thread = self._thread
        return (
            thread is not None
            and not thread.is_alive()
            and not self._stop.is_set()
            and self._state != "ended"
        )

    def restart(self) -> None:
        """A new capture thread and source after :meth:`crashed`; no-op while one runs."""
        if self._thread is None or self._thread.is_alive() or self._stop.is_set():
            return
        with self._cond:
            self._state = "starting"
        self._thread = None
        self.start()

    @property
    def finished(self) -> bool:
        """Stopped, or a finite stream at its end: no frame will come any more."""
        return self._state in ("ended", "stopped")

    def stop(self) -> None:
        """Stop the thread and close the source; returns within ~STOP_JOIN_S even if the
        backend is stuck (the thread then closes the source whenever it gets control back)."""
        self._stop.set()
        if self._source is not None:
            self._source.interrupt()
        if self._thread is not None:
            self._thread.join(STOP_JOIN_S)
            if self._thread.is_alive():
                log.warning("camera '%s': capture thread blocked in the backend; left behind",
                            self.cfg.name)
        with self._cond:
            if self._state != "ended":
                self._state = "stopped"
            self._slot = None  # a stopped camera delivers nothing, not even a leftover frame
            self._cond.notify_all()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def get(self, timeout: float) -> Frame | None:
        """The newest frame not yet returned, waiting up to ``timeout`` s; None if there is none.

        A frame older than max_frame_age_ms is discarded (counted ``dropped_stale``), never
        returned: acting on an old picture is worse than acting on none. Returns None at once
        when the stream has ended or the grabber is stopped.
        """
        return self._default.get(timeout)

    def _take(self, reader: FrameReader, timeout: float) -> Frame | None:
        """``reader``'s next frame: the newest one, if newer than what it had (see get())."""
        deadline = time.monotonic() + timeout
        max_age_s = self.cfg.max_frame_age_ms / 1000.0
        with self._cond:
            while True:
                frame = self._slot
                if frame is not None and frame.seq > reader.seen:
                    passed_over = frame.seq - reader.seen - 1
                    reader.seen = frame.seq
                    reader.missed += passed_over
                    self._counts["dropped_overwritten"] += passed_over
                    if self._clock() - frame.t_capture <= max_age_s:
                        return frame
                    self._counts["dropped_stale"] += 1
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._state in ("ended", "stopped"):
                    return None
                self._cond.wait(remaining)

    def health(self) -> dict[str, object]:
        """Counters and health. ``state`` reads 'reconnecting' also while a read has been
        blocked past the stall timeout: the reopen follows as soon as the backend returns."""
        with self._cond:
            now = self._clock()
            while self._recent and now - self._recent[0] > FPS_WINDOW_S:
                self._recent.popleft()
            span = self._recent[-1] - self._recent[0] if len(self._recent) > 1 else 0.0
            age = None if self._last_t is None else now - self._last_t
            state = self._state
            if state == "running" and age is not None and age > self._stall_limit():
                state = "reconnecting"
            return {
                "camera": self.cfg.name,
                "source": self._source.describe() if self._source else None,
                "state": state,
                **self._counts,
                "skipped": self._source.skipped if self._source else 0,
                "last_frame_age_s": age,
                "fps": (len(self._recent) - 1) / span if span > 0 else 0.0,
                "last_error": self._last_error,
            }

    def _stall_limit(self) -> float:
        period = self._source.period_s if self._source else 0.0
        return max(self.cfg.stall_timeout_s, 2 * period)

    def _run(self, source: FrameSource) -> None:
        """The grab loop; the only code that touches ``source`` (besides interrupt())."""
        outage_since: float | None = None
        delay = self._backoff_start
        is_open = False
        mark = self._clock()  # when the last frame arrived or the source was (re)opened
        try:
            while not self._stop.is_set():
                try:
                    if not is_open:
                        if outage_since is not None:
                            self._bump("reopen_attempts")
                        source.open()
                        is_open, mark = True, self._clock()
                    image = source.read()
                    now = self._clock()
                    if self._stop.is_set():
                        break
                    if image is None:
                        self._end(source)
                        break
                    if now - mark > self._stall_limit():
                        raise SourceError(f"no frame for {now - mark:.1f} s (read stalled)")
                except Exception as exc:  # noqa: BLE001 - any source failure is an outage
                    self._close(source)
                    is_open = False
                    if outage_since is None:
                        outage_since = self._clock()
                        self._begin_outage(_one_line(exc))
                    else:
                        log.debug("camera '%s': reopen failed: %s", self.cfg.name, _one_line(exc))
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.cfg.reconnect_max_s)
                    continue
                if outage_since is not None:
                    log.info("camera '%s': frames flowing again after %.1f s outage",
                             self.cfg.name, now - outage_since)
                    self._tell("camera_recovered", f"frames again after {now - outage_since:.1f} s")
                    outage_since, delay = None, self._backoff_start
                mark = now
                self._publish(image, now)
        finally:
            self._close(source)
            with self._cond:
                if self._state != "ended":
                    self._state = "stopped"
                self._cond.notify_all()

    def _publish(self, image: np.ndarray, t: float) -> None:
        with self._cond:
            self._seq += 1
            self._slot = Frame(image, self._seq, t, self.cfg.name)
            self._counts["frames"] += 1
            self._last_t = t
            self._recent.append(t)
            self._state = "running"
            self._cond.notify_all()

    def _begin_outage(self, reason: str) -> None:
        with self._cond:
            self._counts["outages"] += 1
            self._state = "reconnecting"
            self._last_error = reason
        log.warning("camera '%s': %s; reconnecting (backoff %.1f s doubling up to %g s)",
                    self.cfg.name, reason, self._backoff_start, self.cfg.reconnect_max_s)
        self._tell("camera_lost", reason)

    def _tell(self, kind: str, detail: str) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, detail)
        except Exception:  # recording an outage must not end the grab loop
            log.exception("camera '%s': %s not recorded", self.cfg.name, kind)

    def _end(self, source: FrameSource) -> None:
        with self._cond:
            self._state = "ended"
            self._cond.notify_all()
        log.info("camera '%s': %s ended", self.cfg.name, source.describe())

    def _bump(self, counter: str) -> None:
        with self._cond:
            self._counts[counter] += 1

    def _close(self, source: FrameSource) -> None:
        try:
            source.close()
        except Exception as exc:  # noqa: BLE001 - a failing release must not kill the thread
            log.warning("camera '%s': close failed: %s", self.cfg.name, _one_line(exc))
