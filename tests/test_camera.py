"""camera.py against real sources: video files and image folders built from the test photos."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gatectl.sources.camera import (
    CameraGrabber,
    Frame,
    ImageFolderSource,
    SourceError,
    UrlSource,
    V4L2Source,
    VideoFileSource,
    open_source,
)
from gatectl.config.hardware import CameraConfig
from gatectl.sources.media import FFMPEG_OPTIONS_ENV, iter_media, read_image
from test_media import PHOTOS, write_video


Start = Callable[..., CameraGrabber]


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture
def grabbers() -> Iterator[Start]:
    """Start grabbers for a test and always stop them, even when an assert fails."""
    started: list[CameraGrabber] = []

    def start(cfg: CameraConfig, **kwargs: Any) -> CameraGrabber:
        grabber = CameraGrabber(cfg, **kwargs)
        grabber.start()
        started.append(grabber)
        return grabber

    yield start
    for grabber in started:
        grabber.stop()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.avi", frames=20)


def cam(source: Path | str, **kwargs: Any) -> CameraConfig:
    return CameraConfig(name="lobby", source=str(source), **kwargs)


def test_kind_dispatch(video: Path, tmp_path: Path) -> None:
    assert isinstance(open_source(cam(video)), VideoFileSource)
    assert isinstance(open_source(cam(tmp_path)), ImageFolderSource)
    assert isinstance(open_source(cam("rtsp://10.0.0.5/stream")), UrlSource)
    assert isinstance(open_source(cam("0")), V4L2Source)


def test_frames_arrive_with_increasing_seq(grabbers: Start, video: Path) -> None:
    grabber = grabbers(cam(video, fps=50, loop=True))
    frames = [grabber.get(timeout=2.0) for _ in range(8)]
    assert all(isinstance(f, Frame) for f in frames)
    seqs = [f.seq for f in frames]
    assert all(b > a for a, b in zip(seqs, seqs[1:]))
    assert frames[0].image.shape == (240, 320, 3) and frames[0].image.dtype == np.uint8
    assert {f.camera for f in frames} == {"lobby"}
    stats = grabber.health()
    assert stats["state"] == "running" and stats["frames"] >= 8 and stats["outages"] == 0


def test_video_plays_in_real_time(grabbers: Start, video: Path) -> None:
    grabber = grabbers(cam(video, fps=20, loop=True))
    wait_for(lambda: grabber.health()["frames"] >= 1)
    time.sleep(1.0)
    stats = grabber.health()
    assert 14 <= stats["frames"] <= 25  # ~21 at 20 fps; a file is not read as fast as it decodes
    assert 15 <= stats["fps"] <= 25


def test_slow_consumer_gets_newest_frame(grabbers: Start, video: Path) -> None:
    grabber = grabbers(cam(video, fps=50, loop=True))
    seqs = []
    for _ in range(5):
        time.sleep(0.12)
        produced_before = grabber.health()["frames"]
        frame = grabber.get(timeout=1.0)
        assert frame is not None
        assert frame.seq >= produced_before  # the newest frame, not an old buffered one
        seqs.append(frame.seq)
    assert all(b - a > 1 for a, b in zip(seqs, seqs[1:]))
    assert grabber.health()["dropped_overwritten"] > 0


def test_get_never_returns_a_frame_twice(grabbers: Start, video: Path) -> None:
    grabber = grabbers(cam(video, fps=50, loop=True))
    seqs = []
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        frame = grabber.get(timeout=0.05)
        if frame is not None:
            seqs.append(frame.seq)
    assert len(seqs) >= 10
    assert all(b > a for a, b in zip(seqs, seqs[1:]))  # strictly increasing: no repeats
    assert seqs[-1] <= grabber.health()["frames"]


def test_stale_frames_are_dropped_and_counted(grabbers: Start, video: Path) -> None:
    grabber = grabbers(cam(video, fps=2, max_frame_age_ms=50, loop=True))  # a frame every 0.5 s
    wait_for(lambda: grabber.health()["frames"] >= 1)
    time.sleep(0.2)  # the first frame is now ~200 ms old; the next one is due in ~300 ms
    assert grabber.get(timeout=0.0) is None
    assert grabber.health()["dropped_stale"] == 1
    fresh = grabber.get(timeout=1.0)
    assert fresh is not None and fresh.seq == 2
    assert time.monotonic() - fresh.t_capture < 0.05


def test_stale_check_uses_the_injected_clock(grabbers: Start, video: Path) -> None:
    offset = [0.0]
    grabber = grabbers(cam(video, fps=50, loop=True), clock=lambda: time.monotonic() + offset[0])
    wait_for(lambda: grabber.health()["frames"] >= 1)
    offset[0] = 5.0  # every frame already captured is now 5 s old
    fresh = grabber.get(timeout=1.0)
    assert fresh is not None and fresh.t_capture >= time.monotonic() + 4.0
    assert grabber.health()["dropped_stale"] >= 1


def test_non_looping_video_ends(grabbers: Start, tmp_path: Path) -> None:
    short = write_video(tmp_path / "short.avi", frames=6)
    grabber = grabbers(cam(short, fps=100))
    wait_for(lambda: grabber.health()["state"] == "ended")
    assert grabber.health()["frames"] == 6
    grabber.get(timeout=0.0)  # drain the last frame, if still there
    t0 = time.monotonic()
    assert grabber.get(timeout=5.0) is None
    assert time.monotonic() - t0 < 0.5  # an ended stream does not make the caller wait


def test_looping_video_keeps_delivering(grabbers: Start, tmp_path: Path) -> None:
    short = write_video(tmp_path / "short.avi", frames=6)
    grabber = grabbers(cam(short, fps=100, loop=True))
    wait_for(lambda: grabber.health()["frames"] >= 20)
    stats = grabber.health()
    assert stats["state"] == "running" and stats["outages"] == 0


def test_reconnects_when_the_file_appears(
    grabbers: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatectl.camera")
    target = tmp_path / "late.avi"
    grabber = grabbers(cam(target, fps=50, loop=True, reconnect_max_s=0.5))
    wait_for(lambda: grabber.health()["reopen_attempts"] >= 2)
    stats = grabber.health()
    assert stats["state"] == "reconnecting" and stats["outages"] == 1 and stats["frames"] == 0
    assert "no such file" in stats["last_error"]
    assert grabber.get(timeout=0.1) is None

    write_video(tmp_path / "staging.avi", frames=10)
    os.replace(tmp_path / "staging.avi", target)
    assert grabber.get(timeout=3.0) is not None
    stats = grabber.health()
    assert stats["state"] == "running" and stats["outages"] == 1

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one line per outage, not one per attempt
    assert "'lobby'" in warnings[0].getMessage() and "late.avi" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    assert any("frames flowing again" in r.getMessage() and r.levelno == logging.INFO
               for r in caplog.records)


class StallingVideo(VideoFileSource):
    """A real video source whose 5th read blocks for 0.8 s, like a camera that froze."""

    def __init__(self, cfg: CameraConfig) -> None:
        super().__init__(cfg)
        self.reads = 0

    def read(self) -> np.ndarray | None:
        self.reads += 1
        if self.reads == 5:
            time.sleep(0.8)
        return super().read()


def test_stalled_read_leads_to_reopen(grabbers: Start, video: Path) -> None:
    cfg = cam(video, fps=50, loop=True, stall_timeout_s=0.3, reconnect_max_s=0.5)
    grabber = grabbers(cfg, source_factory=StallingVideo)
    wait_for(lambda: grabber.health()["frames"] >= 4)
    # while the read is still blocked the watchdog already reports the stall
    wait_for(lambda: grabber.health()["state"] == "reconnecting", timeout=1.0)
    wait_for(lambda: grabber.health()["outages"] == 1, timeout=2.0)
    assert "stalled" in grabber.health()["last_error"]
    frames_after_stall = grabber.health()["frames"]
    wait_for(lambda: grabber.health()["frames"] > frames_after_stall + 5, timeout=3.0)
    stats = grabber.health()
    assert stats["state"] == "running" and stats["reopen_attempts"] >= 1 and stats["outages"] == 1


def test_image_folder_skips_a_corrupt_image(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = {"a.jpg": PHOTOS[0], "c.png": PHOTOS[2], "d.jpg": PHOTOS[3]}
    for name, photo in good.items():
        shutil.copy(photo, tmp_path / name)
    (tmp_path / "b.jpg").write_bytes(PHOTOS[1].read_bytes()[:300])
    source = ImageFolderSource(cam(tmp_path, fps=200))
    source.open()
    images = [source.read() for _ in range(3)]
    for image, photo in zip(images, good.values()):
        assert image is not None and np.array_equal(image, read_image(photo))
    assert source.read() is None
    assert source.skipped == 1
    assert any("b.jpg" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    source.close()


def test_image_folder_camera_keeps_delivering(
    grabbers: Start, tmp_path: Path
) -> None:
    for photo in PHOTOS[:2]:
        shutil.copy(photo, tmp_path / photo.name)
    (tmp_path / "0_broken.jpg").write_bytes(b"garbage")
    grabber = grabbers(cam(tmp_path, fps=100, loop=True))
    wait_for(lambda: grabber.health()["frames"] >= 10)
    stats = grabber.health()
    assert stats["state"] == "running" and stats["outages"] == 0 and stats["skipped"] >= 5


def test_image_folder_without_images_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no images found"):
        ImageFolderSource(cam(tmp_path)).open()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_url_to_closed_port_fails_fast(
    grabbers: Start, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(FFMPEG_OPTIONS_ENV, raising=False)
    url = f"rtsp://127.0.0.1:{closed_port()}/x"
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=f"url {url}: cannot open"):
        UrlSource(cam(url)).open()
    assert time.monotonic() - t0 < 6.0
    # the RTSP options were scoped to that open: a video file read afterwards keeps frame 0
    assert FFMPEG_OPTIONS_ENV not in os.environ
    assert len(list(iter_media([video]))) == 20

    grabber = grabbers(cam(url, reconnect_max_s=0.5))
    wait_for(lambda: grabber.health()["state"] == "reconnecting", timeout=6.0)
    assert grabber.health()["outages"] == 1


def test_url_password_is_masked() -> None:
    source = UrlSource(cam("rtsp://admin:s3cret@10.0.0.5:554/Streaming/101"))
    assert source.describe() == "url rtsp://admin:***@10.0.0.5:554/Streaming/101"


def test_missing_v4l2_device_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="v4l2 /dev/video97: cannot open"):
        V4L2Source(cam("/dev/video97")).open()


@pytest.mark.parametrize("kind", ["pacing", "backoff"])
def test_stop_is_prompt(tmp_path: Path, video: Path, kind: str) -> None:
    if kind == "pacing":  # blocked in a 4 s pacing sleep between frames
        cfg = cam(video, fps=0.25, loop=True)
    else:  # blocked in a long reconnect backoff
        cfg = cam(tmp_path / "missing.avi", reconnect_max_s=30)
    grabber = CameraGrabber(cfg)
    grabber.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    grabber.stop()
    assert time.monotonic() - t0 < 1.0
    assert grabber.health()["state"] == "stopped"
    t0 = time.monotonic()
    assert grabber.get(timeout=2.0) is None
    assert time.monotonic() - t0 < 0.1
