"""QR codes in camera frames (zxing-cpp, a maintained C++ port of ZXing): the texts of the QR
codes in an image, and QR images for the centre to hand out.

Cost, measured on a 1280x720 frame (scripts/bench_credentials.py): a few milliseconds with or
without a code, so the face gate reads one frame in ``access.qr.every_n_frames`` and passes the
grey image only. Only QR codes are searched (no 1D symbologies, no 90-degree retries: a QR
finder pattern is found at any rotation), and inverted (light-on-dark) codes are skipped: phone
screens show dark-on-light. Texts longer than ``max_text`` are dropped unread, like anything
else a camera can be shown.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import zxingcpp

QR_ONLY = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
MAX_CODES = 4  # per frame: a door camera is shown one phone at a time


class QrReader:
    def __init__(self, max_text: int = 1024):
        self.max_text = max_text
        self.too_long = 0

    def read(self, image: np.ndarray) -> list[str]:
        """The texts of the QR codes found in ``image`` (BGR or grey), at most MAX_CODES."""
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        found = zxingcpp.read_barcodes(grey, formats=QR_ONLY,
                                       try_rotate=False, try_invert=False)
        out = []
        for code in found[:MAX_CODES]:
            if len(code.text) > self.max_text:
                self.too_long += 1
                continue
            out.append(code.text)
        return out


def qr_image(text: str, scale: int = 8) -> np.ndarray:
    """A grey QR image of ``text`` with its 4-module quiet zone, ``scale`` pixels per module."""
    code = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode)
    return np.asarray(code.to_image(scale=scale))


def write_qr_png(text: str, path: Path, scale: int = 8) -> None:
    if not cv2.imwrite(str(path), qr_image(text, scale)):
        raise OSError(f"{path}: cannot write the PNG")
