"""The live view's picture: a gate's last frame with its marks drawn, as a JPEG no wider than
MAX_WIDTH (a 4K camera must not cost a 4K encode per page refresh)."""

from __future__ import annotations

import unicodedata

import cv2
import numpy as np

from gatectl.gates.base import GateView

MAX_WIDTH = 960
JPEG_QUALITY = 75
COLOURS = {  # BGR
    "face_known": (60, 200, 60),
    "face_unknown": (40, 170, 255),
    "plate": (255, 200, 0),
    "ebike": (40, 40, 230),
}
REGION = (200, 200, 200)


def ascii_label(text: str) -> str:
    """OpenCV's fonts are ASCII: accents folded, other scripts become '?' (the page lists every
    mark's full label as text beside the picture)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    folded = "".join(c if c.isprintable() else "?" for c in folded)
    return folded[:40] if folded.strip() else "?"


def annotate(view: GateView) -> bytes:
    """The JPEG of ``view``: the car region as a polygon, each mark as a box with its label."""
    image = view.image
    h, w = image.shape[:2]
    scale = min(1.0, MAX_WIDTH / max(w, 1))
    out = cv2.resize(image, (round(w * scale), round(h * scale))) if scale < 1 else image.copy()
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    if view.region:
        poly = (np.array(view.region, np.float32) * scale).astype(np.int32)
        cv2.polylines(out, [poly], True, REGION, 2)
    for m in view.marks:
        colour = COLOURS.get(m.what, (255, 255, 255))
        x1, y1, x2, y2 = (round(v * scale) for v in m.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        label = ascii_label(m.label)
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(y1 - th - 6, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 4, top + th + 6), colour, -1)
        cv2.putText(out, label, (x1 + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return jpeg.tobytes()
