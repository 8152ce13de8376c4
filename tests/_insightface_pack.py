"""A tiny InsightFace model pack, built in InsightFace's own layout for the tests.

``<root>/models/<name>/`` gets two ONNX files with the input and output signatures of buffalo_l's,
which ``insightface.app.FaceAnalysis`` recognises by shape alone:

- ``det_tiny.onnx``, an SCRFD-shaped detector: input ``input.1`` (1, 3, H, W), nine outputs (scores,
  box distances and 5 key points at strides 8, 16 and 32, two anchors per cell, rank 2, as det_10g).
  It "detects" bright squares: a stride-32 cell scores ``sigmoid(20 (mean - 0.5))`` of its normalised
  grey level, so a white 32 px cell on black scores ~1; every box is the cell's centre +- 48 px
  (distances 1, 1, 2, 2 strides from the anchor at the cell's corner).
- ``lmk_tiny.onnx``, a 2d106det-shaped landmark model: input ``data`` (1, 3, 192, 192), output ``fc1``
  (1, 212). It returns a fixed 106-point template, except that the lower lip (points 63-71 of the lips
  52-71) drops as the centre of the crop gets darker: a dark bar painted in a white square reads as an
  open mouth (a bar over 1/8 of the square moves the lip about 10 px).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LOWER_LIP = np.arange(63, 72)


def _template() -> np.ndarray:
    """(106, 2) points in the model's [-1, 1] crop coordinates: a contour, and lips as an ellipse."""
    pts = np.zeros((106, 2), np.float32)
    angle = np.linspace(0.0, np.pi, 33)
    pts[:33] = np.stack([0.6 * np.cos(angle), 0.6 * np.sin(angle)], 1)  # chin-side contour
    lips = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    pts[52:72] = np.stack([0.15 * np.cos(lips), 0.2 + 0.03 * np.sin(lips)], 1)
    rest = [i for i in range(33, 106) if not 52 <= i < 72]
    pts[rest] = np.stack([np.linspace(-0.4, 0.4, len(rest)), np.full(len(rest), -0.3)], 1)
    return pts


def _detector(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["input.1"], ["grey"], axes=[1], keepdims=1, name="grey")]
    inits = [helper.make_tensor(n, TensorProto.FLOAT, [1, k], v) for n, k, v in [
        ("box_d", 4, [1.0, 1.0, 2.0, 2.0]), ("kps_d", 10, [0.0] * 10)]]
    inits += [helper.make_tensor("flat", TensorProto.INT64, [2], [-1, 1]),
              helper.make_tensor("k", TensorProto.FLOAT, [], [20.0]),
              helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
              helper.make_tensor("off", TensorProto.FLOAT, [], [-100.0])]
    outputs = {"score": [], "bbox": [], "kps": []}
    for s in (8, 16, 32):
        nodes += [
            helper.make_node("AveragePool", ["grey"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s], name=f"pool{s}"),
            helper.make_node("Reshape", [f"pool{s}", "flat"], [f"cell{s}"], name=f"cell{s}"),
            helper.make_node("Concat", [f"cell{s}", f"cell{s}"], [f"anch{s}"], axis=1, name=f"anch{s}"),
            helper.make_node("Reshape", [f"anch{s}", "flat"], [f"m{s}"], name=f"m{s}"),
            helper.make_node("Sub", [f"m{s}", "half"], [f"c{s}"], name=f"c{s}"),
            helper.make_node("Mul", [f"c{s}", "k"], [f"z{s}"], name=f"z{s}"),
        ]
        if s != 32:  # only the coarsest level fires
            nodes.append(helper.make_node("Add", [f"z{s}", "off"], [f"zz{s}"], name=f"zz{s}"))
        nodes += [
            helper.make_node("Sigmoid", [f"zz{s}" if s != 32 else f"z{s}"], [f"score_{s}"], name=f"score{s}"),
            helper.make_node("Mul", [f"m{s}", "off"], [f"zero{s}"], name=f"zero{s}"),
            helper.make_node("Mul", [f"zero{s}", "half"], [f"zero2{s}"], name=f"zero2{s}"),
            helper.make_node("Sub", [f"zero2{s}", f"zero2{s}"], [f"nil{s}"], name=f"nil{s}"),
            helper.make_node("Add", [f"nil{s}", "box_d"], [f"bbox_{s}"], name=f"bbox{s}"),
            helper.make_node("Add", [f"nil{s}", "kps_d"], [f"kps_{s}"], name=f"kps{s}"),
        ]
        for key, width in (("score", 1), ("bbox", 4), ("kps", 10)):
            outputs[key].append(helper.make_tensor_value_info(f"{key}_{s}", TensorProto.FLOAT, [None, width]))
    graph = helper.make_graph(nodes, "scrfd_tiny",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, None, None])],
                              outputs["score"] + outputs["bbox"] + outputs["kps"], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def _landmarks(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    template = _template().reshape(1, 212)
    drop = np.zeros((106, 2), np.float32)
    drop[LOWER_LIP, 1] = 0.5  # darker centre (1 - mean > 0) -> lower lip further down
    nodes = [helper.make_node("Slice", ["data", "lo", "hi"], ["centre"], name="centre"),
             helper.make_node("ReduceMean", ["centre"], ["mean"], axes=[1, 2, 3], keepdims=0, name="mean"),
             helper.make_node("Reshape", ["mean", "one"], ["m"], name="m"),
             helper.make_node("Sub", ["unit", "m"], ["dark"], name="dark"),
             helper.make_node("MatMul", ["dark", "drop"], ["delta"], name="delta"),
             helper.make_node("Add", ["delta", "template"], ["fc1"], name="fc1")]
    inits = [helper.make_tensor("one", TensorProto.INT64, [2], [1, 1]),
             helper.make_tensor("unit", TensorProto.FLOAT, [1, 1], [1.0]),
             helper.make_tensor("lo", TensorProto.INT64, [4], [0, 0, 76, 76]),
             helper.make_tensor("hi", TensorProto.INT64, [4], [1, 3, 116, 116]),
             helper.make_tensor("drop", TensorProto.FLOAT, [1, 212], drop.reshape(-1).tolist()),
             helper.make_tensor("template", TensorProto.FLOAT, [1, 212], template.reshape(-1).tolist())]
    graph = helper.make_graph(nodes, "lmk106_tiny",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 192, 192])],
                              [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 212])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def build_pack(root: Path, name: str = "tiny_pack") -> Path:
    """Write the pack under ``root/models/name`` and return ``root`` (InsightFace's home)."""
    pack = root / "models" / name
    pack.mkdir(parents=True, exist_ok=True)
    _detector(pack / "det_tiny.onnx")
    _landmarks(pack / "lmk_tiny.onnx")
    return root
