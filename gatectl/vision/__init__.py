"""ONNX model wrappers, one file per task; they know pixels, never doors or residents."""
