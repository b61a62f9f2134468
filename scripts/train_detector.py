#!/usr/bin/env python3
"""Fine-tune the YOLOX-nano e-bike detector on the CPU, and export it with the daemon's I/O.

Two modes:

- default: the shared licence-clean data (``--shared``: ``two-wheelers/`` and ``people/``, YOLO
  format) composed into elevator-like scenes (drawn walls and floors, top-down squash, any
  rotation, fisheye warp, quilts / bags / baskets / handlebar muffs over part of the bike, people
  as occluders and distractors, pasted decoy patches; the same covers, people and decoys on scenes
  without a bike, so neither a quilt nor a pasted edge is ever a positive). Starts from
  ``models/yolox_nano`` (COCO); e-bikes train the COCO ``motorcycle`` channel (3); objectness,
  boxes and the other 79 classes are distilled from the original model, so person detection stays.
- ``--data DIR``: a site's own YOLO-format folder (``images/`` + ``labels/``, or ``train/``,
  ``valid/`` ... each with both): fine-tunes from the shipped default detector on all but a
  held-aside split (every image whose sha256 falls in the last ``--holdout`` fraction), then prints
  one JSON line comparing the current and the new model on that split (recall on the images with
  an e-bike, false alarms on the others, at the gate's threshold).

Only the backbone stays frozen; the neck and the head train (``--train neck`` / ``head`` to
narrow it). The network is run by a small interpreter of the ONNX graph (its convolutions become
PyTorch parameters), and the export writes the trained weights back into a copy of the same
graph, so the exported file has exactly the input and output of ``yolox_nano.onnx``
(``images`` [1,3,416,416] BGR 0..255, top-left letterbox pad 114 -> ``output`` [1,3549,85]).

Everything random draws from ``--seed``. Writes ``OUT/<name>.onnx`` and ``OUT/manifest.json``
(every data file used with its sha256, the settings, the losses, wall and CPU time); progress goes
to stderr, one JSON line to stdout. Needs the ``[train]`` extra (``pip install -e '.[train]'``).

    nice -n 10 python scripts/train_detector.py --out build/ebike              # the shipped model
    nice -n 10 python scripts/train_detector.py --data site_frames/ --out build/site
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

try:
    import onnx
    import torch
    import torch.nn.functional as F
    from onnx import numpy_helper
except ImportError as e:  # one line, not a traceback: the extra is optional
    sys.exit(f"train_detector: needs the [train] extra (pip install -e '.[train]'): {e}")

import onnxruntime as ort  # noqa: E402

from gatectl.vision.models import _shared_pool  # noqa: E402
from gatectl.vision.objects import PAD, yolox_grid  # noqa: E402

SIZE = 416
MOTORCYCLE = 3  # COCO channel the gate reads as an e-bike
PERSON = 0  # COCO channel the tailgate watch reads as a person
TARGETS = {"ebike": MOTORCYCLE, "person": PERSON}  # --target -> the trained channel
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")


# --------------------------------------------------------------------------- the network


class OnnxYolox(torch.nn.Module):
    """The YOLOX-nano ONNX graph run op by op in PyTorch, its Conv weights as parameters.

    Why an interpreter: the graph has only ten op types, so running it directly keeps the trained
    network identical to the file the daemon runs (no re-implemented architecture to drift), and
    the export is the same graph with new initializers.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.proto = onnx.load(str(path))
        g = self.proto.graph
        self.const = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.params = torch.nn.ParameterDict()
        self.key: dict[str, str] = {}  # initializer name -> parameter key
        self.nodes = list(g.node)
        self.convs: list[str] = []  # weight initializer names in graph order
        for n in self.nodes:
            if n.op_type == "Conv":
                for name in n.input[1:]:
                    k = f"p{len(self.key)}"
                    self.key[name] = k
                    self.params[k] = torch.nn.Parameter(torch.from_numpy(self.const[name].copy()))
                self.convs.append(n.input[1])
        self.input_name = g.input[0].name
        self.output_name = g.output[0].name

    def neck_start(self) -> int:
        """Index (in ``convs``) of the first neck conv: the one whose output the first Resize upsamples."""
        producer = {n.output[0]: n for n in self.nodes}
        node = producer[next(n for n in self.nodes if n.op_type == "Resize").input[0]]
        while node.op_type != "Conv":  # back through the SiLU (x * sigmoid(x))
            node = producer[node.input[0]]
        return self.convs.index(node.input[1])

    def head_start(self) -> int:
        """Index of the first head conv: the stem whose output starts the stride-8 branch."""
        first_pred = next(i for i, c in enumerate(self.convs) if c.startswith("head."))
        return first_pred - 5  # the stem, then 2 x (depthwise + pointwise) cls convs

    def trainable(self, scope: str) -> list[torch.nn.Parameter]:
        """Unfreeze the convs from the neck (``neck``) or the head (``head``) on; freeze the rest."""
        start = self.neck_start() if scope == "neck" else self.head_start()
        train = set(self.convs[start:])
        out = []
        for n in self.nodes:
            if n.op_type == "Conv":
                on = n.input[1] in train
                for name in n.input[1:]:
                    p = self.params[self.key[name]]
                    p.requires_grad_(on)
                    if on:
                        out.append(p)
        self._split(train)
        return out

    def _split(self, train: set[str]) -> None:
        """Nodes downstream of a trained conv run in PyTorch; the tensors they take from frozen
        nodes (``frontier``) come precomputed from onnxruntime, several times faster on the CPU."""
        live: set[str] = set()  # tensors that depend on a trained weight
        self.live_nodes = []
        for n in self.nodes:
            if (n.op_type == "Conv" and n.input[1] in train) or any(i in live for i in n.input):
                live.update(n.output)
                self.live_nodes.append(n)
        self.frontier = sorted({i for n in self.live_nodes for i in n.input
                                if i not in live and i not in self.const and i not in self.key})

    def _attr(self, node, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def forward(self, x: torch.Tensor | None = None, frontier: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``x`` [B,3,416,416] BGR 0..255 -> [B,3549,85] exactly as the ONNX model computes it;
        or, after ``trainable``, from the ``frontier`` tensors through the trained part only."""
        v: dict[str, torch.Tensor] = dict(frontier) if frontier is not None else {self.input_name: x}
        for n in (self.live_nodes if frontier is not None else self.nodes):
            op, ins = n.op_type, n.input
            if op == "Conv":
                w = self.params[self.key[ins[1]]]
                b = self.params[self.key[ins[2]]] if len(ins) > 2 else None
                pads = self._attr(n, "pads", [0, 0, 0, 0])
                out = F.conv2d(v[ins[0]], w, b, stride=tuple(self._attr(n, "strides", [1, 1])),
                               padding=(pads[0], pads[1]), groups=self._attr(n, "group", 1))
            elif op == "Sigmoid":
                out = torch.sigmoid(v[ins[0]])
            elif op in ("Mul", "Add"):
                a, b = v[ins[0]], v[ins[1]]
                out = a * b if op == "Mul" else a + b
            elif op == "Concat":
                out = torch.cat([v[i] for i in ins], self._attr(n, "axis"))
            elif op == "MaxPool":
                k = self._attr(n, "kernel_shape")[0]
                out = F.max_pool2d(v[ins[0]], k, 1, self._attr(n, "pads")[0])
            elif op == "Resize":
                out = F.interpolate(v[ins[0]], scale_factor=float(self.const[ins[2]][2]), mode="nearest")
            elif op == "Slice":
                starts, ends, axes, steps = (int(self.const[i][0]) for i in ins[1:5])
                idx = [slice(None)] * v[ins[0]].dim()
                idx[axes] = slice(starts, min(ends, v[ins[0]].shape[axes]), steps)
                out = v[ins[0]][tuple(idx)]
            elif op == "Reshape":
                shape = [int(s) for s in self.const[ins[1]]]
                out = v[ins[0]].reshape([v[ins[0]].shape[0]] + shape[1:])
            elif op == "Transpose":
                out = v[ins[0]].permute(*self._attr(n, "perm"))
            else:
                raise ValueError(f"unsupported op {op} in the ONNX graph")
            v[n.output[0]] = out
        return v[self.output_name]

    def export(self, path: Path) -> None:
        """The original graph with the trained Conv weights as its initializers."""
        model = onnx.ModelProto()
        model.CopyFrom(self.proto)
        for init in model.graph.initializer:
            if init.name in self.key:
                arr = self.params[self.key[init.name]].detach().numpy().astype(np.float32)
                init.CopyFrom(numpy_helper.from_array(arr, init.name))
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))


# --------------------------------------------------------------------------- data


@dataclass
class Sample:
    path: Path
    boxes: np.ndarray  # [N, 5]: class, cx, cy, w, h (YOLO, normalised)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_yolo(folder: Path) -> list[Sample]:
    """Every image under ``folder`` with a sibling ``labels/`` file (a missing label = no object)."""
    out = []
    for img in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXT and "images" in p.parts):
        parts = list(img.parts)
        parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
        label = Path(*parts).with_suffix(".txt")
        rows = []
        if label.exists():
            for line in label.read_text().splitlines():
                f = line.split()
                if len(f) == 5:
                    vals = [float(x) for x in f]
                    if all(math.isfinite(x) for x in vals) and all(0 <= x <= 1.0001 for x in vals[1:]):
                        rows.append(vals)
        out.append(Sample(img, np.array(rows, np.float32).reshape(-1, 5)))
    return out


def crops(samples: list[Sample], ids: set[int], min_px: int, max_n: int, rng) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image crop with a 10% margin, the object's box inside the crop) for labelled objects."""
    out = []
    for s in samples:
        img = cv2.imread(str(s.path))
        if img is None:
            continue
        h, w = img.shape[:2]
        for c, cx, cy, bw, bh in s.boxes:
            if int(c) not in ids or bw * w < min_px or bh * h < min_px:
                continue
            x0, y0, x1, y1 = (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h
            m = 0.1 * max(x1 - x0, y1 - y0)
            X0, Y0 = int(max(0, x0 - m)), int(max(0, y0 - m))
            X1, Y1 = int(min(w, x1 + m)), int(min(h, y1 + m))
            out.append((img[Y0:Y1, X0:X1].copy(), np.array([x0 - X0, y0 - Y0, x1 - X0, y1 - Y0], np.float32)))
    rng.shuffle(out)
    return out[:max_n]


# --------------------------------------------------------------------------- scene composer


def _noise(rng, h: int, w: int, blur: tuple[int, int]) -> np.ndarray:
    n = rng.normal(0, 1, (h, w)).astype(np.float32)
    return cv2.blur(n, blur)


def _pattern(rng, h: int, w: int) -> np.ndarray:
    """A textile-like fill: solid, stripes, checks or blotches, with fold shading."""
    base = rng.integers(20, 235, 3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == 1:  # stripes
        period = rng.integers(6, 30)
        other = rng.integers(20, 235, 3)
        mask = ((xx * math.cos(rng.uniform(0, 3.14)) + yy * math.sin(rng.uniform(0, 3.14))) // period) % 2 == 0
        img[mask] = other
    elif kind == 2:  # checks
        p = rng.integers(8, 30)
        img[((xx // p + yy // p) % 2) == 0] = rng.integers(20, 235, 3)
    elif kind == 3:  # blotches (florals)
        for _ in range(rng.integers(10, 40)):
            cv2.circle(img, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(2, 12)),
                       rng.integers(0, 255, 3).tolist(), -1)
    folds = _noise(rng, h, w, (max(3, w // 6), max(3, h // 10)))
    img *= 1 + 0.6 * folds[..., None] / (np.abs(folds).max() + 1e-6) * rng.uniform(0.2, 0.6)
    return np.clip(img, 0, 255)


def _blend(canvas: np.ndarray, patch: np.ndarray, alpha: np.ndarray) -> None:
    a = alpha[..., None]
    canvas[:] = (canvas * (1 - a) + patch * a).astype(np.uint8)


def draw_cover(rng, canvas: np.ndarray, box: np.ndarray) -> None:
    """A quilt, bag, basket or handlebar muff over part of ``box`` (x0, y0, x1, y1)."""
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = box
    bw, bh = max(x1 - x0, 8), max(y1 - y0, 8)
    kind = rng.choice(["quilt", "bag", "basket", "muff"], p=[0.35, 0.25, 0.2, 0.2])
    mask = np.zeros((h, w), np.float32)
    if kind == "quilt":  # a draped polygon over 30-70% of the box
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        r = math.sqrt(bw * bh * rng.uniform(0.3, 0.7) / math.pi)
        ang = np.sort(rng.uniform(0, 2 * math.pi, 9))
        pts = np.stack([cx + r * rng.uniform(0.6, 1.5, 9) * np.cos(ang),
                        cy + r * rng.uniform(0.6, 1.5, 9) * np.sin(ang)], 1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1.0)
        fill = _pattern(rng, h, w)
    elif kind == "bag":
        c = (int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1)))
        axes = (int(bw * rng.uniform(0.12, 0.3)), int(bh * rng.uniform(0.12, 0.3)))
        cv2.ellipse(mask, c, axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        fill = _pattern(rng, h, w)
    elif kind == "basket":  # a lattice box at one end
        s = rng.uniform(0.2, 0.35)
        end = rng.integers(4)
        bx = [x0, y0, x0 + bw * s * 1.3, y0 + bh * s * 1.3]
        if end in (1, 3):
            bx[0], bx[2] = x1 - bw * s * 1.3, x1
        if end in (2, 3):
            bx[1], bx[3] = y1 - bh * s * 1.3, y1
        cv2.rectangle(mask, (int(bx[0]), int(bx[1])), (int(bx[2]), int(bx[3])), 1.0, -1)
        fill = np.full((h, w, 3), rng.integers(30, 220, 3), np.float32)
        step = int(rng.integers(4, 9))
        fill[::step] *= 0.4
        fill[:, ::step] *= 0.4
    else:  # two plush muffs at the handlebar ends
        horizontal = bw > bh
        for side in (0, 1):
            if horizontal:
                c = (int(x0 + bw * rng.uniform(0.05, 0.25)), int(y0 + bh * (0.15 + 0.7 * side)))
            else:
                c = (int(x0 + bw * (0.15 + 0.7 * side)), int(y0 + bh * rng.uniform(0.05, 0.25)))
            cv2.ellipse(mask, c, (int(max(bw, bh) * rng.uniform(0.06, 0.12)),) * 2, 0, 0, 360, 1.0, -1)
        fill = np.full((h, w, 3), rng.choice([20, 40, 120, 200], 3), np.float32)
        fill *= 1 + 0.3 * _noise(rng, h, w, (3, 3))[..., None]
    mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.8, 2.5))
    _blend(canvas, np.clip(fill, 0, 255), mask)


def elevator_background(rng, h: int, w: int) -> np.ndarray:
    """Brushed-metal walls, a floor in perspective (checker plate, tiles or plain), door seam,
    button panel and posters: an elevator car as a ceiling-corner camera sees it."""
    wall = np.full((h, w, 3), rng.integers(90, 230), np.float32) * rng.uniform(0.85, 1.15, 3)
    brushed = _noise(rng, h, w, (1, 25) if rng.random() < 0.5 else (25, 1))
    wall *= 1 + 0.15 * brushed[..., None]
    for x in rng.integers(0, w, rng.integers(1, 5)):  # panel seams
        cv2.line(wall, (int(x), 0), (int(x + rng.integers(-40, 40)), h), (40, 40, 40), int(rng.integers(1, 3)))
    floor_src = np.float32([[0, 0], [256, 0], [256, 256], [0, 256]])
    tile = np.full((256, 256, 3), rng.integers(40, 200), np.float32) * rng.uniform(0.8, 1.2, 3)
    kind = rng.integers(3)
    if kind == 0:  # checker plate
        for y in range(0, 256, 12):
            for x in range(0, 256, 12):
                a = 45 if ((x + y) // 12) % 2 else -45
                cv2.ellipse(tile, (x + 6, y + 6), (5, 1), a, 0, 360, (tile[0, 0] * 1.3).tolist(), -1)
    elif kind == 1:  # tiles
        p = int(rng.integers(32, 96))
        tile[::p] = 60
        tile[:, ::p] = 60
    tile *= 1 + 0.1 * _noise(rng, 256, 256, (5, 5))[..., None]
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.4, 0.7)
    fw, fh = w * rng.uniform(0.25, 0.45), h * rng.uniform(0.25, 0.45)
    dst = np.float32([[cx - fw * rng.uniform(0.6, 1), cy - fh * rng.uniform(0.6, 1)],
                      [cx + fw * rng.uniform(0.6, 1), cy - fh * rng.uniform(0.6, 1)],
                      [cx + fw * rng.uniform(1, 1.6), cy + fh * rng.uniform(1, 1.6)],
                      [cx - fw * rng.uniform(1, 1.6), cy + fh * rng.uniform(1, 1.6)]])
    m = cv2.getPerspectiveTransform(floor_src, dst)
    floor = cv2.warpPerspective(tile, m, (w, h))
    fmask = cv2.warpPerspective(np.ones((256, 256), np.float32), m, (w, h))
    img = wall * (1 - fmask[..., None]) + floor * fmask[..., None]
    for _ in range(rng.integers(0, 3)):  # posters / button panel
        px, py = int(rng.integers(0, w - 20)), int(rng.integers(0, h // 2))
        pw, ph = int(rng.integers(15, w // 4)), int(rng.integers(20, h // 3))
        cv2.rectangle(img, (px, py), (px + pw, py + ph), rng.integers(0, 255, 3).tolist(), -1)
        for k in range(rng.integers(0, 6)):
            cv2.circle(img, (px + pw // 2, py + 8 + 10 * k), 3, rng.integers(0, 255, 3).tolist(), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def paste(rng, canvas: np.ndarray, patch: np.ndarray, box: np.ndarray | None, side: float,
          squash: bool, at: tuple[float, float] | None = None) -> np.ndarray | None:
    """Scale ``patch`` so its box's long side is ``side`` px, squash (top-down), rotate, flip,
    paste with a feathered edge. Returns the object's new box (from its inscribed ellipse)."""
    h, w = canvas.shape[:2]
    ph, pw = patch.shape[:2]
    if box is None:
        box = np.array([0, 0, pw, ph], np.float32)
    s = side / max(box[2] - box[0], box[3] - box[1], 1)
    sy = s * (rng.uniform(0.55, 1.0) if squash else 1.0)
    ang = rng.uniform(-180, 180) if rng.random() < 0.6 else rng.uniform(-20, 20)
    if rng.random() < 0.5:
        patch, box = patch[:, ::-1], np.array([pw - box[2], box[1], pw - box[0], box[3]], np.float32)
    c, sn = math.cos(math.radians(ang)), math.sin(math.radians(ang))
    lin = np.array([[c, -sn], [sn, c]]) @ np.diag([s, sy])
    cx, cy = at if at is not None else (rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h)
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    m = np.hstack([lin, (np.array([cx, cy]) - lin @ centre)[:, None]]).astype(np.float32)
    warped = cv2.warpAffine(np.ascontiguousarray(patch), m, (w, h), borderMode=cv2.BORDER_REFLECT)
    alpha = np.zeros((ph, pw), np.float32)
    e = max(2, int(min(ph, pw) * 0.08))
    alpha[e:-e, e:-e] = 1.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), e / 2)
    if rng.random() < 0.5:  # sometimes an elliptical cut-out instead of the rectangle
        ell = np.zeros_like(alpha)
        cv2.ellipse(ell, (pw // 2, ph // 2), (pw // 2, ph // 2), 0, 0, 360, 1.0, -1)
        alpha = cv2.GaussianBlur(ell, (0, 0), e / 2)
    _blend(canvas, warped.astype(np.float32), cv2.warpAffine(alpha, m, (w, h)))
    t = np.linspace(0, 2 * math.pi, 24)
    ell = np.stack([centre[0] + (box[2] - box[0]) / 2 * np.cos(t), centre[1] + (box[3] - box[1]) / 2 * np.sin(t)], 1)
    pts = ell @ m[:, :2].T + m[:, 2]
    out = np.array([*pts.min(0), *pts.max(0)], np.float32)
    out[[0, 2]] = out[[0, 2]].clip(0, w)
    out[[1, 3]] = out[[1, 3]].clip(0, h)
    return out if (out[2] - out[0]) > 12 and (out[3] - out[1]) > 12 else None


def fisheye(rng, img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barrel distortion (a wide-angle lens): the picture bulges, the edges shrink."""
    h, w = img.shape[:2]
    k = rng.uniform(0.1, 0.5)
    cx, cy, norm = w / 2, h / 2, math.hypot(w / 2, h / 2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = (xx - cx) / norm, (yy - cy) / norm
    f = 1 + k * (dx * dx + dy * dy)
    out = cv2.remap(img, cx + dx * f * norm, cy + dy * f * norm, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    rd = np.linspace(0, 1.5, 600)
    ru = rd * (1 + k * rd * rd)
    new = []
    for b in boxes:
        t = np.linspace(0, 1, 8)
        pts = np.concatenate([np.stack([b[0] + (b[2] - b[0]) * t, np.full(8, y)], 1) for y in (b[1], b[3])] +
                             [np.stack([np.full(8, x), b[1] + (b[3] - b[1]) * t], 1) for x in (b[0], b[2])])
        v = (pts - [cx, cy]) / norm
        r = np.hypot(v[:, 0], v[:, 1])
        scale = np.where(r > 0, np.interp(r, ru, rd) / np.maximum(r, 1e-9), 1.0)
        p = v * scale[:, None] * norm + [cx, cy]
        new.append([*p.min(0), *p.max(0)])
    return out, np.array(new, np.float32).reshape(-1, 4)


def photometric(rng, img: np.ndarray) -> np.ndarray:
    """CCTV look: exposure, colour cast, blur, low resolution, noise, JPEG, sometimes grey."""
    f = img.astype(np.float32) * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30)
    f *= rng.uniform(0.85, 1.15, 3)
    if rng.random() < 0.15:
        f[:] = f.mean(2, keepdims=True)
    if rng.random() < 0.4:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.3:
        h, w = f.shape[:2]
        r = rng.uniform(0.35, 0.7)
        f = cv2.resize(cv2.resize(f, (int(w * r), int(h * r))), (w, h))
    f += rng.normal(0, rng.uniform(0, 8), f.shape)
    img = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        img = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])[1], 1)
    return img


def letterbox(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-left letterbox to 416 with pad 114, exactly as the daemon feeds the model."""
    h, w = img.shape[:2]
    r = min(SIZE / h, SIZE / w)
    nw, nh = max(1, int(w * r)), max(1, int(h * r))
    canvas = np.full((SIZE, SIZE, 3), PAD, np.uint8)
    canvas[:nh, :nw] = cv2.resize(img, (nw, nh))
    return canvas, (boxes * r).astype(np.float32)


class Composer:
    """Elevator-like training scenes from the shared crops (see the module docstring)."""

    def __init__(self, bikes, people, decoys, backgrounds: list[Path], real: list[Sample], rng):
        self.bikes, self.people, self.decoys, self.backgrounds, self.rng = bikes, people, decoys, backgrounds, rng
        self.real = [s for s in real if (s.boxes[:, 0] == 0).any()]

    def scene(self, positive: bool) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        if positive and self.real and rng.random() < 0.2:  # a real street photo as it is, distorted
            s = self.real[rng.integers(len(self.real))]
            img = cv2.imread(str(s.path))
            boxes = pixel_boxes(s, {0}, img.shape[1], img.shape[0])
            if rng.random() < 0.5:
                img, boxes = fisheye(rng, img, boxes)
            return letterbox(photometric(rng, img), boxes)
        h = SIZE if rng.random() < 0.5 else int(SIZE * rng.uniform(0.56, 0.9))
        w = SIZE
        if rng.random() < 0.3 and self.backgrounds:
            img = cv2.resize(cv2.imread(str(self.backgrounds[rng.integers(len(self.backgrounds))])), (w, h))
        else:
            img = elevator_background(rng, h, w)
        boxes = []
        for _ in range(rng.integers(0, 3)):  # decoy patches: pasted edges are no cue
            d = self.decoys[rng.integers(len(self.decoys))]
            paste(rng, img, d, None, rng.uniform(0.2, 0.6) * w, True)
        behind = rng.integers(0, 3)
        for _ in range(behind):
            p, pb = self.people[rng.integers(len(self.people))]
            paste(rng, img, p, pb, rng.uniform(0.35, 0.95) * h, True)
        if positive:
            bk, bb = self.bikes[rng.integers(len(self.bikes))]
            box = paste(rng, img, bk, bb, rng.uniform(0.25, 0.7) * w, True)
            if box is not None:
                boxes.append(box)
                for _ in range(rng.choice([0, 1, 1, 2, 3])):
                    draw_cover(rng, img, box)
                if rng.random() < 0.35:  # a person standing over part of the bike
                    p, pb = self.people[rng.integers(len(self.people))]
                    cx = rng.uniform(box[0], box[2])
                    cy = box[3] if rng.random() < 0.5 else box[1]
                    paste(rng, img, p, pb, rng.uniform(0.4, 0.9) * h, True, at=(cx, cy))
        else:
            for _ in range(rng.choice([1, 1, 2, 3])):  # the same covers, no bike under them
                s = rng.uniform(0.25, 0.7) * w
                x, y = rng.uniform(0, w - s * 0.6), rng.uniform(0, h - s * 0.4)
                draw_cover(rng, img, np.array([x, y, x + s, y + s * rng.uniform(0.4, 1.0)]))
            if rng.random() < 0.5:
                p, pb = self.people[rng.integers(len(self.people))]
                paste(rng, img, p, pb, rng.uniform(0.4, 0.95) * h, True)
        boxes = np.array(boxes, np.float32).reshape(-1, 4)
        if rng.random() < 0.6:
            img, boxes = fisheye(rng, img, boxes)
        return letterbox(photometric(rng, img), boxes)


def pixel_boxes(s: Sample, ids: set[int], w: int, h: int) -> np.ndarray:
    """The sample's boxes of classes ``ids`` as x0, y0, x1, y1 in pixels of a w x h image."""
    b = s.boxes[np.isin(s.boxes[:, 0].astype(int), list(ids))][:, 1:]
    return np.stack([(b[:, 0] - b[:, 2] / 2) * w, (b[:, 1] - b[:, 3] / 2) * h,
                     (b[:, 0] + b[:, 2] / 2) * w, (b[:, 1] + b[:, 3] / 2) * h], 1).reshape(-1, 4)


def cut(rng, img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A window of 55-100 % of each side: objects cut by the frame's edge, as a door camera
    sees someone close under it (head above the frame) or half through its field. A box keeps
    its visible part when at least a third of it stays in view and is dropped otherwise; the
    dropped ones' visible parts would be unlabelled positives, so a cut that leaves a sliver of
    8 px or more of one is tried again (or the image kept whole)."""
    h, w = img.shape[:2]
    for _ in range(5):
        cw, ch = int(w * rng.uniform(0.55, 1.0)), int(h * rng.uniform(0.55, 1.0))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        inner = np.clip(boxes - [x0, y0, x0, y0], 0, [cw, ch, cw, ch])
        seen = (inner[:, 2:] - inner[:, :2]).clip(min=0).prod(1)
        whole = (boxes[:, 2:] - boxes[:, :2]).clip(min=1).prod(1)
        keep = seen >= whole / 3
        sliver = ~keep & ((inner[:, 2:] - inner[:, :2]) >= 8).all(1)
        if not sliver.any():
            return img[y0:y0 + ch, x0:x0 + cw].copy(), inner[keep]
    return img, boxes


def site_scene(rng, s: Sample, ids: set[int], crop: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A site's own frame with light augmentation (flip, exposure, blur, JPEG) and, with
    probability ``crop``, a `cut` of it."""
    img = cv2.imread(str(s.path))
    h, w = img.shape[:2]
    boxes = pixel_boxes(s, ids, w, h)
    if rng.random() < 0.5:
        img, boxes = img[:, ::-1].copy(), boxes[:, [2, 1, 0, 3]] * [-1, 1, -1, 1] + [w, 0, w, 0]
    if rng.random() < crop:
        img, boxes = cut(rng, img, boxes)
    return letterbox(photometric(rng, img), boxes)


# --------------------------------------------------------------------------- loss


GRID, STRIDE = (torch.from_numpy(a) for a in yolox_grid(SIZE))
CENTRES = (GRID + 0.5) * STRIDE


def decode(raw: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Raw head rows (all anchors, or the anchors of mask ``rows``) -> x0, y0, x1, y1 in input
    pixels (the daemon's decode)."""
    grid, stride = (GRID, STRIDE) if rows is None else (GRID[rows], STRIDE[rows])
    xy = (raw[..., :2] + grid) * stride
    wh = torch.exp(raw[..., 2:4].clamp(max=10)) * stride
    return torch.cat([xy - wh / 2, xy + wh / 2], -1)


def iou(a: torch.Tensor, b: torch.Tensor, giou: bool = False) -> torch.Tensor:
    lt, rb = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[..., 2:] - x[..., :2]).clamp(min=0).prod(-1)  # noqa: E731
    union = area(a) + area(b) - inter + 1e-6
    out = inter / union
    if giou:
        hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).prod(-1) + 1e-6
        out = out - (hull - union) / hull
    return out


def assign(pred: torch.Tensor, gts: np.ndarray,
           channel: int = MOTORCYCLE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Simplified SimOTA for one image: per labelled box, the anchors inside it and near its
    centre are candidates; the ``k`` cheapest (class ``channel`` + 3 x IoU cost, k from the
    summed top IoUs) are positives. Returns (positive mask, matched box per anchor, candidate
    mask)."""
    boxes = decode(pred[:, :4].detach())
    score = (pred[:, 4] * pred[:, 5 + channel]).detach().clamp(1e-6, 1 - 1e-6)
    pos = torch.zeros(len(pred), dtype=torch.bool)
    cand_all = torch.zeros_like(pos)
    target = torch.zeros(len(pred), 4)
    for g in torch.from_numpy(gts):
        inside = (CENTRES > g[:2]).all(1) & (CENTRES < g[2:]).all(1)
        centre = ((CENTRES - (g[:2] + g[2:]) / 2).abs() < 2.5 * STRIDE).all(1)
        cand = inside & centre
        if not cand.any():
            cand = torch.zeros_like(pos)
            cand[((CENTRES - (g[:2] + g[2:]) / 2) ** 2).sum(1).argmin()] = True
        idx = cand.nonzero().squeeze(1)
        ious = iou(boxes[idx], g[None].expand(len(idx), 4))
        cost = -torch.log(score[idx]) + 3 * (-torch.log(ious + 1e-8))
        k = max(1, int(ious.topk(min(10, len(idx))).values.sum()))
        chosen = idx[cost.topk(min(k, len(idx)), largest=False).indices]
        pos[chosen] = True
        target[chosen] = g
        cand_all |= cand
    return pos, target, cand_all


def bce(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return -(t * torch.log(p) + (1 - t) * torch.log(1 - p))


def kl(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Binary KL(t || p): zero where the student matches the teacher."""
    return bce(p, t) - bce(t, t)


def loss_fn(out: torch.Tensor, teacher: torch.Tensor, gts: list[np.ndarray],
            neg_weight: float = 10.0, channel: int = MOTORCYCLE) -> tuple[torch.Tensor, dict]:
    """The labelled boxes on class ``channel`` (3: e-bikes); hard negatives on that channel
    everywhere else; the teacher's objectness, boxes and the other classes distilled where it
    sees something."""
    parts = {"box": 0.0, "pos": 0.0, "neg": 0.0, "distil": 0.0}
    total, n_pos = out.new_zeros(()), 0
    for i in range(len(out)):
        o, t = out[i], teacher[i]
        pos, target, cand = assign(o, gts[i], channel) if len(gts[i]) else (torch.zeros(len(o), dtype=torch.bool),) * 3
        n_pos += int(pos.sum())
        if pos.any():
            box = (1 - iou(decode(o[pos, :4], pos), target[pos], giou=True)).sum()
            p = (bce(o[pos, 4], torch.ones(1)) + bce(o[pos, 5 + channel], torch.ones(1))).sum()
            total = total + 5 * box + p
            parts["box"] += float(box.detach())
            parts["pos"] += float(p.detach())
        other = ~pos
        s = (o[:, 4] * o[:, 5 + channel])[other & ~cand]
        neg = (bce(s, torch.zeros(1)) * s.detach().clamp(min=0.02)).sum() * neg_weight
        tobj = t[:, 4]
        w = tobj.clamp(min=0.01)
        cls = torch.cat([torch.arange(5, 5 + channel), torch.arange(6 + channel, 85)])
        distil = (kl(o[other, 4], tobj[other]).sum()
                  + (w[:, None] * kl(o[:, cls], t[:, cls])).sum()
                  + (tobj[other, None] * (o[other, :4] - t[other, :4]).abs()).sum())
        total = total + neg + distil
        parts["neg"] += float(neg.detach())
        parts["distil"] += float(distil.detach())
    norm = max(n_pos, len(out))
    return total / norm, {k: round(v / norm, 4) for k, v in parts.items()} | {"n_pos": n_pos}


# --------------------------------------------------------------------------- evaluation


class OrtModel:
    """One ONNX detector (the daemon's file format) run on single letterboxed images."""

    def __init__(self, path: Path, extra: list[str] = ()):
        """``extra``: inner tensors to return too (``features``), e.g. a trainer's frontier."""
        _shared_pool(2, 1)  # the daemon's one pool, no spinning: idle ORT threads would starve torch's
        opts = ort.SessionOptions()
        opts.use_per_session_threads = False
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model = onnx.load(str(path))
        for name in extra:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        self.extra = list(extra)
        self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    def __call__(self, canvas: np.ndarray) -> np.ndarray:
        return self.features(canvas)[0]

    def features(self, canvas: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(the [3549, 85] output, the ``extra`` tensors with their batch axis of 1)."""
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        out = self.session.run(None, {"images": blob})
        return out[0][0], out[1:]


def best_score(raw: np.ndarray, channel: int = MOTORCYCLE) -> float:
    return float((raw[:, 4] * raw[:, 5 + channel]).max())


def shows_two_wheeler(model: OrtModel, path: Path, threshold: float = 0.15) -> bool:
    """The COCO model's bicycle or motorcycle score on the whole image reaches ``threshold``."""
    canvas, _ = letterbox(cv2.imread(str(path)), np.zeros((0, 4)))
    raw = model(canvas)
    return float((raw[:, 4:5] * raw[:, [6, 5 + MOTORCYCLE]]).max()) >= threshold


def compare(models: dict[str, Path], held: list[Sample], ids: set[int], threshold: float,
            channel: int = MOTORCYCLE) -> dict:
    """Recall / false alarms of each model on the held-aside images, whole frame at ``threshold``
    (for people, ``scripts/eval_person_cues.py --held`` counts them box by box)."""
    out = {}
    for name, path in models.items():
        m = OrtModel(path)
        found = fa = pos = 0
        for s in held:
            canvas, _ = letterbox(cv2.imread(str(s.path)), np.zeros((0, 4)))
            hit = best_score(m(canvas), channel) >= threshold
            is_pos = bool(np.isin(s.boxes[:, 0].astype(int), list(ids)).any())
            pos += is_pos
            found += is_pos and hit
            fa += (not is_pos) and hit
        out[name] = {"file": str(path), "positives": pos, "found": found,
                     "recall": round(found / max(pos, 1), 4), "negatives": len(held) - pos, "false_alarms": fa}
    return out


# --------------------------------------------------------------------------- main


def held_aside(s: Sample, fraction: float, digest: str) -> bool:
    """Deterministic split by content: the same file is always on the same side."""
    return int(digest[:8], 16) / 0xFFFFFFFF >= 1 - fraction


def shipped_default(target: str) -> Path:
    """The model a site runs today for ``target``: the registry's default e-bike detector, or
    the tailgate watch's person detector."""
    from gatectl.config.analysis import TailgateConfig
    from gatectl.config.gates import EbikeDetectorConfig
    from gatectl.vision.models import ModelStore

    model = EbikeDetectorConfig().model if target == "ebike" else TailgateConfig(door="d", camera="c").model
    return ModelStore().path(model)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (model + manifest.json)")
    ap.add_argument("--target", choices=sorted(TARGETS), default="ebike",
                    help="the class trained: e-bikes (COCO channel 3) or people (channel 0, --data only)")
    ap.add_argument("--name", help="file name of the exported model (default: yolox_nano_<target>)")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets",
                    help="the shared datasets folder (two-wheelers/, people/)")
    ap.add_argument("--data", type=Path, help="a site's YOLO-format folder: fine-tune the shipped model on it")
    ap.add_argument("--ids", default="0", help="--data: label class ids of the target (comma list)")
    ap.add_argument("--crop", type=float, default=0.0,
                    help="--data: share of frames cut to a window of 55-100%% of each side (objects cut by the edge)")
    ap.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                    help="--data: images whose file name matches are held aside too, never trained on (repeatable)")
    ap.add_argument("--holdout", type=float, default=0.2, help="--data: fraction held aside for the comparison")
    ap.add_argument("--base", type=Path, help="model to start from (default: yolox_nano, or with --data the shipped default)")
    ap.add_argument("--teacher", type=Path, default=REPO / "models/yolox_nano/yolox_nano.onnx",
                    help="model whose objectness and other classes are distilled")
    ap.add_argument("--train", choices=["neck", "head"], default="neck", help="first trained part (backbone frozen)")
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--positive-rate", type=float, default=0.5, help="share of scenes with a bike")
    ap.add_argument("--neg-weight", type=float, default=10.0,
                    help="weight of the e-bike score on everything that is not an e-bike (false alarms)")
    ap.add_argument("--max-files", type=int, default=0, help="use at most this many images per set (0: all)")
    ap.add_argument("--threshold", type=float,
                    help="--data comparison: the gate's threshold (default 0.15 e-bikes, 0.35 people)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    t_wall = time.time()
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    limit = (lambda xs: xs[:args.max_files]) if args.max_files else (lambda xs: xs)
    used: dict[str, str] = {}

    def note(samples: list[Sample]) -> list[Sample]:
        for s in samples:
            used[str(s.path)] = sha256(s.path)
        return samples

    channel = TARGETS[args.target]
    name = args.name or f"yolox_nano_{args.target}"
    threshold = args.threshold if args.threshold is not None else (0.15 if args.target == "ebike" else 0.35)
    ids = {int(x) for x in args.ids.split(",") if x.strip()}
    teacher = OrtModel(args.teacher)
    if args.target != "ebike" and not args.data:
        sys.exit(f"train_detector: --target {args.target} needs --data (the composed scenes are e-bike scenes)")
    if args.data:
        if not args.data.is_dir():
            sys.exit(f"train_detector: --data {args.data}: not a folder")
        site = read_yolo(args.data)
        if not site:
            sys.exit(f"train_detector: --data {args.data}: no images under an images/ folder")
        held = [s for s in site if held_aside(s, args.holdout, sha256(s.path))
                or any(fnmatch.fnmatch(s.path.name, g) for g in args.exclude)]
        aside = {s.path for s in held}
        train_set = note(limit([s for s in site if s.path not in aside]))
        if not held or not train_set:
            sys.exit(f"train_detector: --data {args.data}: {len(site)} images are too few to hold some aside")
        base = args.base or shipped_default(args.target)

        def make_batch(n: int):
            picks = rng.integers(0, len(train_set), n)
            return [site_scene(rng, train_set[i], ids, args.crop) for i in picks]
    else:
        for sub in ("two-wheelers", "people"):
            if not (args.shared / sub).is_dir():
                sys.exit(f"train_detector: --shared {args.shared}: no {sub}/ folder")
        bikes_set = note(limit(read_yolo(args.shared / "two-wheelers" / "train")))
        people_all = read_yolo(args.shared / "people")
        # 20% kept for evaluation; a person-only image in which the COCO model sees a two-wheeler
        # (the README warns of some) is no negative, so it is left out.
        people_set = note(limit([s for s in people_all if not held_aside(s, 0.2, sha256(s.path))
                                 and not shows_two_wheeler(teacher, s.path)]))
        bikes = crops(bikes_set, {0}, 40, 3000, rng)
        people = crops(people_set, {0}, 50, 3000, rng)
        decoys = [c for c, _ in crops(bikes_set, {1, 2, 3, 4}, 40, 500, rng)]
        decoys += [cv2.imread(str(p))[y:y + 160, x:x + 160] for p, x, y in
                   ((s.path, int(rng.integers(0, 400)), int(rng.integers(0, 400))) for s in people_set[:300])]
        decoys = [d for d in decoys if d is not None and d.size and min(d.shape[:2]) > 20]
        composer = Composer(bikes, people, decoys, [s.path for s in people_set], bikes_set, rng)
        base = args.base or REPO / "models/yolox_nano/yolox_nano.onnx"
        print(f"data: {len(bikes)} bike crops, {len(people)} person crops, {len(decoys)} decoys", file=sys.stderr)

        def make_batch(n: int):
            return [composer.scene(rng.random() < args.positive_rate) for _ in range(n)]

    net = OnnxYolox(base)
    params = net.trainable(args.train)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(i, args.steps) / args.steps)))
    print(f"training {sum(p.numel() for p in params)} of {sum(p.numel() for p in net.parameters())} "
          f"parameters from {base}", file=sys.stderr)
    history = []
    frozen = OrtModel(base, net.frontier)
    same = sha256(Path(base)) == sha256(args.teacher)
    for step in range(args.steps):
        batch = make_batch(args.batch)
        runs = [frozen.features(b[0]) for b in batch]
        t = torch.from_numpy(np.stack([r[0] for r in runs] if same else [teacher(b[0]) for b in batch]))
        feats = {name: torch.from_numpy(np.concatenate([r[1][i] for r in runs]))
                 for i, name in enumerate(net.frontier)}
        loss, parts = loss_fn(net(frontier=feats), t, [b[1] for b in batch], args.neg_weight, channel)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        sched.step()
        history.append(float(loss))
        if step % 20 == 0 or step == args.steps - 1:
            print(f"step {step}/{args.steps} loss {float(loss):.3f} {parts} "
                  f"{time.time() - t_wall:.0f}s", file=sys.stderr)
    model_path = args.out / f"{name}.onnx"
    net.export(model_path)
    result = {"model": str(model_path), "sha256": sha256(model_path), "base": str(base),
              "base_sha256": sha256(Path(base)), "teacher_sha256": sha256(args.teacher),
              "mode": "site" if args.data else "shared", "seed": args.seed, "steps": args.steps,
              "batch": args.batch, "lr": args.lr, "train": args.train, "neg_weight": args.neg_weight,
              "positive_rate": args.positive_rate, "target": args.target, "crop": args.crop,
              "exclude": args.exclude, "final_loss": round(float(np.mean(history[-20:])), 4)}
    if args.data:
        result["comparison"] = compare({"current": Path(base), "new": model_path}, held, ids, threshold, channel)
        result["held_aside"] = len(held)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result |= {"wall_s": round(time.time() - t_wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
               "files_used": len(used)}
    manifest = result | {"command": sys.argv, "data": [{"file": os.path.relpath(f, REPO.parent), "sha256": h}
                                                       for f, h in sorted(used.items())]}
    if args.data:  # what the comparison (and scripts/eval_person_cues.py --held) may evaluate on
        manifest["held_aside_files"] = sorted(os.path.relpath(s.path, REPO.parent) for s in held)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
