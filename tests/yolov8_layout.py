"""Build a detector with the yolov8 output layout from the real YOLOX-nano, for the family tests.

No model of that layout with a usable licence can be fetched here, so the test model is the
bundled YOLOX-nano with its pre- and post-processing moved into the graph: it takes RGB 0..1 and
gives ``[1, 4 + 80, A]`` (decoded centre/size in input pixels, obj x class scores). Same weights,
different layout: the yolov8 decoder must then find what the yolox decoder finds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from gatectl.vision.objects import yolox_grid


def build(yolox_path: Path, out_path: Path) -> Path:
    inner = onnx.load(str(yolox_path))
    size = inner.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    anchors = inner.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    width = inner.graph.output[0].type.tensor_type.shape.dim[2].dim_value
    opset = [helper.make_opsetid("", inner.opset_import[0].version)]

    pre = helper.make_model(helper.make_graph(
        [helper.make_node("Gather", ["rgb", "bgr_order"], ["bgr"], axis=1),
         helper.make_node("Mul", ["bgr", "to_255"], ["pixels"])],
        "pre", [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3, size, size])],
        [numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr_order"),
         numpy_helper.from_array(np.array(255, np.float32), "to_255")]), opset_imports=opset)

    grid, stride = (a[None] for a in yolox_grid(size))
    post = helper.make_model(helper.make_graph(
        [helper.make_node("Split", ["raw"], ["xy", "wh", "obj", "cls"], axis=2, split=[2, 2, 1, width - 5]),
         helper.make_node("Add", ["xy", "grid"], ["xy_g"]),
         helper.make_node("Mul", ["xy_g", "stride"], ["centre"]),
         helper.make_node("Exp", ["wh"], ["wh_e"]),
         helper.make_node("Mul", ["wh_e", "stride"], ["size"]),
         helper.make_node("Mul", ["obj", "cls"], ["scores"]),
         helper.make_node("Concat", ["centre", "size", "scores"], ["rows"], axis=2),
         helper.make_node("Transpose", ["rows"], ["output0"], perm=[0, 2, 1])],
        "post", [helper.make_tensor_value_info("raw", TensorProto.FLOAT, [1, anchors, width])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, width - 1, anchors])],
        [numpy_helper.from_array(grid, "grid"), numpy_helper.from_array(stride, "stride")]), opset_imports=opset)
    for m in (pre, post):
        m.ir_version = inner.ir_version

    model = compose.merge_models(pre, inner, io_map=[("pixels", inner.graph.input[0].name)], prefix2="yolox/")
    model = compose.merge_models(model, post, io_map=[("yolox/" + inner.graph.output[0].name, "raw")])
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return out_path
