"""media.py on real photos and a real video written at test time."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from gatectl.sources.media import (
    FFMPEG_OPTIONS_ENV,
    MediaError,
    MediaFrame,
    is_image,
    is_video,
    iter_media,
    list_images,
    open_capture,
    read_image,
)

DATA = Path(__file__).parent / "data"
FACES = DATA / "faces"
JPG = FACES / "obama_01.jpg"  # 910x1137 colour JPEG
RGBA_PNG = FACES / "alex_lacamoire_03.png"  # 424x394 PNG with an alpha channel
PHOTOS = sorted(p for p in FACES.iterdir() if is_image(p))


def write_video(
    path: Path, frames: int, fps: float = 10.0, size: tuple[int, int] = (320, 240)
) -> Path:
    """An MJPG .avi made of the real test photos, resized to ``size`` (w, h), in turn."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(cv2.resize(cv2.imread(str(PHOTOS[i % len(PHOTOS)])), size))
    writer.release()
    return path


def test_read_image_jpeg_and_rgba_png_give_bgr_uint8() -> None:
    jpg = read_image(JPG)
    assert jpg.shape == (1137, 910, 3) and jpg.dtype == np.uint8
    assert np.array_equal(jpg, cv2.imread(str(JPG)))

    png = read_image(RGBA_PNG)
    assert png.shape == (394, 424, 3) and png.dtype == np.uint8
    assert np.array_equal(png, cv2.imread(str(RGBA_PNG), cv2.IMREAD_UNCHANGED)[:, :, :3])


def test_read_image_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray_path = tmp_path / "gray.png"
    gray = cv2.cvtColor(cv2.imread(str(JPG)), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(gray_path), gray)
    image = read_image(gray_path)
    assert image.shape == (*gray.shape, 3)
    assert all(np.array_equal(image[:, :, c], gray) for c in range(3))


def test_read_image_non_ascii_name(tmp_path: Path) -> None:
    target = tmp_path / "京A12345.jpg"
    shutil.copy(JPG, target)
    assert np.array_equal(read_image(target), read_image(JPG))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        (b"", "empty file"),
        (b"not an image at all, just text\n" * 10, "not a decodable image"),
        ("head", "not a decodable image"),  # the first 300 bytes of a real JPEG
    ],
)
def test_read_image_bad_files_raise_one_line_media_error(
    tmp_path: Path, content: bytes | str | None, expected: str
) -> None:
    path = tmp_path / "照片 bad.jpg"
    if content == "head":
        path.write_bytes(JPG.read_bytes()[:300])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError) as info:
        read_image(path)
    message = str(info.value)
    assert "照片 bad.jpg" in message and expected in message
    assert "\n" not in message


def test_read_image_on_a_folder_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="is a folder"):
        read_image(tmp_path)


def test_list_images_sorted_non_recursive_images_only(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", "c.webp", "notes.txt", "clip.avi"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "0.jpg").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "c.webp"]
    with pytest.raises(MediaError, match="no such folder"):
        list_images(tmp_path / "missing")


def test_suffix_helpers() -> None:
    assert is_image("x/Photo.JPEG") and not is_image("x/clip.mp4")
    assert is_video("clip.MKV") and is_video("cam.h264") and not is_video("a.jpg")


def test_iter_media_still_image_repeats_as_a_10fps_camera() -> None:
    frames = list(iter_media([JPG], still_frames=3))
    assert all(isinstance(f, MediaFrame) for f in frames)
    assert [(f.index, f.t) for f in frames] == [(0, 0.0), (1, 0.1), (2, 0.2)]
    assert {f.source for f in frames} == {str(JPG)}
    assert frames[0].image.shape == (1137, 910, 3)


def test_iter_media_folder_yields_every_image_sorted(tmp_path: Path) -> None:
    names = ["c.jpg", "a.png", "b.jpeg"]
    for name, photo in zip(names, PHOTOS):
        shutil.copy(photo, tmp_path / name)
    (tmp_path / "readme.txt").write_text("not media")
    frames = list(iter_media([tmp_path], still_frames=2))
    assert [(Path(f.source).name, f.index) for f in frames] == [
        ("a.png", 0), ("a.png", 1), ("b.jpeg", 0), ("b.jpeg", 1), ("c.jpg", 0), ("c.jpg", 1)
    ]


def test_iter_media_empty_folder_is_an_error(tmp_path: Path) -> None:
    (items,) = list(iter_media([tmp_path]))
    assert isinstance(items, MediaError) and "no images found" in str(items)


def test_iter_media_video_frames_with_increasing_time(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", frames=12, fps=10.0)
    frames = list(iter_media([video]))
    assert len(frames) == 12
    assert [f.index for f in frames] == list(range(12))
    times = [f.t for f in frames]
    assert times[0] == 0.0 and all(b > a for a, b in zip(times, times[1:]))
    assert times[-1] == pytest.approx(1.1, abs=0.01)
    assert frames[5].image.shape == (240, 320, 3)


def test_iter_media_bad_entries_yield_errors_and_iteration_continues(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(JPG.read_bytes()[:300])
    fake_video = tmp_path / "fake.mp4"
    fake_video.write_bytes(b"\x00" * 4096)
    notes = tmp_path / "notes.txt"
    notes.write_text("not media")
    items = list(iter_media([corrupt, tmp_path / "gone.jpg", fake_video, notes, JPG]))
    errors = [str(i) for i in items if isinstance(i, MediaError)]
    assert len(errors) == 4
    assert "corrupt.jpg: not a decodable image" in errors[0]
    assert "gone.jpg: no such file" in errors[1]
    assert "fake.mp4" in errors[2]
    assert "notes.txt: unsupported file type '.txt'" in errors[3]
    assert all("\n" not in e for e in errors)
    assert isinstance(items[-1], MediaFrame) and items[-1].source == str(JPG)


def test_iter_media_rejects_zero_still_frames() -> None:
    with pytest.raises(ValueError):
        next(iter_media([JPG], still_frames=0))


def count_frames(cap: cv2.VideoCapture) -> int:
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_open_capture_scopes_ffmpeg_options_to_one_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(FFMPEG_OPTIONS_ENV, raising=False)
    video = str(write_video(tmp_path / "clip.avi", frames=10))
    # fflags;nobuffer (wanted for RTSP) discards what FFmpeg probed: a file loses frame 0
    assert count_frames(open_capture(video, ffmpeg_options="fflags;nobuffer")) == 9
    assert FFMPEG_OPTIONS_ENV not in os.environ
    assert count_frames(open_capture(video)) == 10


def test_open_capture_keeps_operator_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FFMPEG_OPTIONS_ENV, "flags;low_delay")
    video = str(write_video(tmp_path / "clip.avi", frames=10))
    assert count_frames(open_capture(video, ffmpeg_options="fflags;nobuffer")) == 10
    assert os.environ[FFMPEG_OPTIONS_ENV] == "flags;low_delay"
