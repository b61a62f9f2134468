"""Still images and media files: decoding for enrollment, replay and the image-folder camera.

Every failure is a :class:`MediaError` whose message is one line naming the file, so a batch
tool can print it and carry on; nothing here returns ``None`` for a bad image or lets an OpenCV
traceback escape.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gatectl.core.errors import GatectlError

#: Suffixes (lower case, with the dot, as ``Path.suffix`` gives them) decoded as still images.
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
#: Suffixes opened as video files.
VIDEO_EXTS = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mjpeg", ".mjpg", ".h264", ".264", ".h265",
     ".hevc", ".ts", ".webm", ".mpg", ".mpeg", ".flv", ".wmv"}
)

#: Still images replayed through iter_media look like a camera running at this rate.
STILL_FPS = 10.0

FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ffmpeg_env_lock = threading.Lock()


class MediaError(GatectlError):
    """A media file that cannot be used; the message is one line: ``<path>: <what is wrong>``."""


@dataclass(frozen=True)
class MediaFrame:
    """One frame of a media file: ``t`` is seconds from the start of that file."""

    source: str
    index: int
    t: float
    image: np.ndarray


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file into a BGR uint8 HxWx3 array.

    ``np.fromfile`` + ``cv2.imdecode`` instead of ``cv2.imread`` because imread cannot open
    non-ASCII names on every platform (residents' photos are often named in Chinese) and
    returns ``None`` instead of saying what went wrong. ``IMREAD_COLOR`` turns grayscale,
    alpha and 16-bit images into 8-bit BGR and applies the EXIF orientation of phone photos.
    """
    p = Path(path)
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except FileNotFoundError:
        raise MediaError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise MediaError(f"{p}: is a folder, not an image") from None
    except OSError as exc:
        raise MediaError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise MediaError(f"{p}: empty file")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise MediaError(f"{p}: not a decodable image")
    return image


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder`` (not recursive), sorted by file name."""
    p = Path(folder)
    if not p.is_dir():
        raise MediaError(f"{p}: no such folder")
    return sorted((f for f in p.iterdir() if f.is_file() and is_image(f)), key=lambda f: f.name)


def iter_media(
    paths: Iterable[str | Path], still_frames: int = 1
) -> Iterator[MediaFrame | MediaError]:
    """Frames of every image, folder of images and video in ``paths``, in order.

    A still image is repeated ``still_frames`` times with ``t = i / 10`` so replay code sees it
    the way a 10 fps camera would. A file that cannot be used is *yielded* as a MediaError
    (not raised) so the caller can report it on one line and go on with the rest.
    """
    if still_frames < 1:
        raise ValueError("still_frames must be at least 1")
    for path in paths:
        p = Path(path)
        if p.is_dir():
            images = list_images(p)
            if not images:
                yield MediaError(f"{p}/: no images found")
            for image_path in images:
                yield from _iter_still(image_path, still_frames)
        elif not p.exists():
            yield MediaError(f"{p}: no such file or folder")
        elif is_video(p):
            yield from _iter_video(p)
        elif is_image(p):
            yield from _iter_still(p, still_frames)
        else:
            yield MediaError(f"{p}: unsupported file type '{p.suffix}' (not an image or video)")


def open_capture(
    target: str,
    api: int = cv2.CAP_ANY,
    params: Sequence[int] = (),
    ffmpeg_options: str | None = None,
) -> cv2.VideoCapture:
    """A ``cv2.VideoCapture`` whose FFmpeg open sees ``ffmpeg_options`` and nothing else.

    FFmpeg takes its options from the process-wide OPENCV_FFMPEG_CAPTURE_OPTIONS when a capture
    opens. Left set, RTSP's ``fflags;nobuffer`` makes every later video *file* lose its first
    frame(s), so the variable is set only for this open, under a lock every open here takes,
    and removed again. A value the operator exported is never touched and applies to all opens.
    Cost: an open may wait for a concurrent network open (at most that open's timeout).
    """
    with _ffmpeg_env_lock:
        scoped = ffmpeg_options is not None and FFMPEG_OPTIONS_ENV not in os.environ
        if scoped and ffmpeg_options is not None:
            os.environ[FFMPEG_OPTIONS_ENV] = ffmpeg_options
        try:
            return cv2.VideoCapture(target, api, list(params))
        finally:
            if scoped:
                del os.environ[FFMPEG_OPTIONS_ENV]


def _iter_still(path: Path, count: int) -> Iterator[MediaFrame | MediaError]:
    try:
        image = read_image(path)
    except MediaError as exc:
        yield exc
        return
    for i in range(count):
        yield MediaFrame(str(path), i, i / STILL_FPS, image)


def _iter_video(path: Path) -> Iterator[MediaFrame | MediaError]:
    cap = open_capture(str(path))
    try:
        if not cap.isOpened():
            yield MediaError(f"{path}: cannot open video")
            return
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if 0 < fps <= 1000 else STILL_FPS
        index, last_t = 0, -1.0
        while True:
            ok, image = cap.read()
            if not ok or image is None:
                break
            # POS_MSEC is the container timestamp of the frame just read; some streams
            # (raw .h264) have none, then the frame number at the nominal rate stands in.
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if t < 0 or t <= last_t:
                t = max(index / fps, last_t + 1e-6)
            yield MediaFrame(str(path), index, t, image)
            index, last_t = index + 1, t
        if index == 0:
            yield MediaError(f"{path}: cannot decode video (no frames)")
    finally:
        cap.release()
