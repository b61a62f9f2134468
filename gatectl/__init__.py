"""gatectl: edge daemon for the gates of a residential compound."""

import os

# OpenCV prints its own multi-line warnings (e.g. for an unplugged V4L2 camera) straight to
# stderr; gatectl reports those conditions itself, once, in one line.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

__version__ = "0.1.0"
