"""Face analysis for one frame: detect, quality gate, align, liveness, embed.

Expensive stages run only on faces that passed the cheap ones: a face too small or blurred is
never sent to liveness or the embedder, nor is a face too near for liveness to be judged. A
face liveness doubts is still embedded: the gate decides on p(real) fused over the frames of
its track, not on one frame. Stage times are kept so
the benchmark can report them from the same code path the gate runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from gatectl.config.gates import FaceQuality
from gatectl.core.metrics import inference_ms
from gatectl.vision.face.align import align_face
from gatectl.vision.face.detect import Face, FaceDetector
from gatectl.vision.face.embedder import Embedder
from gatectl.vision.face.liveness import LivenessModel
from gatectl.vision.face.quality import QualityReport, assess


@dataclass
class FaceObservation:
    face: Face
    quality: QualityReport
    p_real: float | None = None  # None: liveness off, or not reached (poor quality, too close)
    too_close: bool = False  # the frame does not show enough around the face to judge liveness
    p_real_track: float | None = None  # set by a gate: p(real) fused over the face's track
    embedding: np.ndarray | None = None  # None: not reached (poor quality or spoof)
    aligned: np.ndarray | None = None


@dataclass
class StageTimes:
    """Milliseconds per stage for the last analysed frame."""

    detect: float = 0.0
    liveness: float = 0.0
    embed: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class FaceAnalyzer:
    def __init__(self, detector: FaceDetector, embedder: Embedder, liveness: LivenessModel | None,
                 quality: FaceQuality, liveness_threshold: float):
        self.detector = detector
        self.embedder = embedder
        self.liveness = liveness
        self.quality = quality
        self.liveness_threshold = liveness_threshold
        self.times = StageTimes()

    def analyze(self, image: np.ndarray) -> list[FaceObservation]:
        t0 = time.perf_counter()
        faces = self.detector.detect(image)
        t1 = time.perf_counter()
        live_ms = embed_ms = 0.0
        out = []
        for face in faces:
            aligned = align_face(image, face.landmarks)
            obs = FaceObservation(face, assess(face, aligned, self.quality), aligned=aligned)
            out.append(obs)
            if not obs.quality.ok:
                continue
            if self.liveness is not None:
                ta = time.perf_counter()
                obs.p_real = self.liveness.judge(image, face.box, self.liveness_threshold)
                live_ms += (time.perf_counter() - ta) * 1000
                if obs.p_real is None:
                    obs.too_close = True
                    continue
            tb = time.perf_counter()
            obs.embedding = self.embedder.embed(aligned)
            embed_ms += (time.perf_counter() - tb) * 1000
        self.times = StageTimes((t1 - t0) * 1000, live_ms, embed_ms)
        inference_ms("face_detect", self.times.detect)
        if faces and self.liveness is not None:
            inference_ms("face_liveness", live_ms)
        if faces:
            inference_ms("face_embed", embed_ms)
        return out

    def is_live(self, obs: FaceObservation) -> bool:
        """The track's fused p(real) when a gate set it, else this frame's."""
        if obs.too_close:
            return False
        p = obs.p_real if obs.p_real_track is None else obs.p_real_track
        return p is None or p >= self.liveness_threshold
