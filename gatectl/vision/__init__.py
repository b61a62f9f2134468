"""ONNX model wrappers, one file per task; they know pixels, never doors or residents.

Thread pools: onnxruntime owns the cores (one shared pool, see models.py). OpenCV's and
OpenBLAS's own pools spin-wait after each call, stealing those cores from the next model; with
them the 1280x720 frame took 32 ms instead of 17. Pixel work and the gallery product are small,
so both run on the calling thread (the gallery splits very large products itself).
"""

import cv2
from threadpoolctl import threadpool_limits

cv2.setNumThreads(1)
threadpool_limits(1, user_api="blas")
