"""Small feature extractors built with onnx.helper (fixed random weights), and an
independent reference for the perceptual loss: the extractor run on its own by
onnxruntime, then LPIPS's normalisation and distance in float64 numpy.

* ``conv``: float32, opset 13 (converted to 18 on loading): Conv 3x3 (3 -> 4, bias) ->
  Relu = output 1; Conv 3x3 stride 2 (4 -> 6, bias) -> Relu = output 2. The shape of a
  typical image backbone's first stages.
* ``pointwise64``: float64, opset 18: 1x1 convolutions as Transpose/MatMul/Add (ORT has
  no float64 Conv): (2 -> 4) -> Relu = output 1, (4 -> 3) -> Relu = output 2. A float64
  extractor makes the whole loss float64-exact, which the property checks need (they
  take central differences of the loss), and its first-layer kinks are known in closed
  form (``pointwise_kinks``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8
"""onnx.helper writes the newest IR version by default, newer than onnxruntime reads."""
CONV_NAMES = {"input": "input", "c1": "conv1", "r1": "relu1", "c2": "conv2", "r2": "relu2"}


def conv_weights(seed: int = 11) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": (rng.normal(size=(4, 3, 3, 3)) * 0.4).astype(np.float32),
        "b1": (rng.normal(size=4) * 0.1).astype(np.float32),
        "w2": (rng.normal(size=(6, 4, 3, 3)) * 0.4).astype(np.float32),
        "b2": (rng.normal(size=6) * 0.1).astype(np.float32),
    }


def conv_extractor(
    seed: int = 11, opset: int = 13, names: Mapping[str, str] = CONV_NAMES, padding: int = 1
) -> onnx.ModelProto:
    """``names`` renames its values (e.g. to names the loss graph itself uses)."""
    n = dict(names)
    weights = conv_weights(seed)
    inits = [numpy_helper.from_array(v, f"{n['input']}_{k}") for k, v in weights.items()]
    w1, b1, w2, b2 = (i.name for i in inits)
    pads = [padding] * 4
    nodes = [
        helper.make_node("Conv", [n["input"], w1, b1], [n["c1"]], pads=pads, name="conv1"),
        helper.make_node("Relu", [n["c1"]], [n["r1"]], name="relu1"),
        helper.make_node("Conv", [n["r1"], w2, b2], [n["c2"]], pads=pads, strides=[2, 2], name="conv2"),
        helper.make_node("Relu", [n["c2"]], [n["r2"]], name="relu2"),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_extractor",
        [helper.make_tensor_value_info(n["input"], TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [
            helper.make_tensor_value_info(n["r1"], TensorProto.FLOAT, ["N", 4, "H", "W"]),
            helper.make_tensor_value_info(n["r2"], TensorProto.FLOAT, ["N", 6, "h", "w"]),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)


def pointwise_weights(seed: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(size=(2, 4)),
        "b1": rng.normal(size=4) * 0.3,
        "w2": rng.normal(size=(4, 3)),
        "b2": rng.normal(size=3) * 0.3,
    }


def pointwise_extractor(seed: int = 5) -> onnx.ModelProto:
    weights = pointwise_weights(seed)
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    nodes = [
        helper.make_node("Transpose", ["images"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["nhwc", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["h1"]),
        helper.make_node("Transpose", ["h1"], ["relu1"], perm=[0, 3, 1, 2]),
        helper.make_node("MatMul", ["h1", "w2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["a2"]),
        helper.make_node("Relu", ["a2"], ["h2"]),
        helper.make_node("Transpose", ["h2"], ["relu2"], perm=[0, 3, 1, 2]),
    ]
    graph = helper.make_graph(
        nodes,
        "pointwise_extractor",
        [helper.make_tensor_value_info("images", TensorProto.DOUBLE, ["N", 2, "H", "W"])],
        [
            helper.make_tensor_value_info("relu1", TensorProto.DOUBLE, ["N", 4, "H", "W"]),
            helper.make_tensor_value_info("relu2", TensorProto.DOUBLE, ["N", 3, "H", "W"]),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION)


def pointwise_kinks(target: np.ndarray, direction: np.ndarray, seed: int = 5) -> tuple[float, ...]:
    """Where a first-layer unit of ``pointwise64`` switches along ``target + t direction``
    (images (2, H, W)): a_k(t) = (y_p + t v_p) . w1[:, k] + b1[k] = 0 at some pixel p."""
    weights = pointwise_weights(seed)
    y = target.reshape(2, -1).T @ weights["w1"] + weights["b1"]
    v = direction.reshape(2, -1).T @ weights["w1"]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -y / v
    kinks = t[np.isfinite(t) & (np.abs(t) < 1e6)]
    return tuple(sorted({float(k) for k in kinks.ravel()}))


EXTRACTORS = {"conv": conv_extractor, "pointwise64": pointwise_extractor}


def write_extractors(directory: Path) -> dict[str, Path]:
    """Every test extractor as ``<name>.onnx`` in ``directory``, by name (conv first)."""
    paths = {}
    for name, build in EXTRACTORS.items():
        paths[name] = directory / f"{name}.onnx"
        onnx.save(build(), str(paths[name]))
    return paths


def feature_maps(path: Path | str, images: np.ndarray) -> list[np.ndarray]:
    """The extractor's outputs on ``images``, by onnxruntime on the extractor alone."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (image_input,) = session.get_inputs()
    dtype = np.float64 if image_input.type == "tensor(double)" else np.float32
    outputs: list[np.ndarray] = session.run(None, {image_input.name: np.asarray(images, dtype=dtype)})
    return outputs


def reference_per_sample(path: Path | str, predictions: Any, targets: Any) -> np.ndarray:
    """LPIPS without learned heads (lpips ``lpips=False``): per layer, features divided by
    their L2 norm over channels + 1e-10, squared differences summed over channels and
    averaged over the other axes; summed over layers. float64 after the extractor."""
    total = np.zeros(np.shape(predictions)[0])
    for fp, ft in zip(feature_maps(path, predictions), feature_maps(path, targets), strict=True):
        features = (f.astype(np.float64) for f in (fp, ft))
        up, ut = (f / (np.sqrt((f * f).sum(axis=1, keepdims=True)) + 1e-10) for f in features)
        total += ((up - ut) ** 2).sum(axis=1).reshape(len(total), -1).mean(axis=1)
    return total
