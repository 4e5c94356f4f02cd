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


VGG_OUTPUTS = ("relu1", "relu2", "lrelu3", "reshaped", "fc", "clip")
VGG_DIMS: tuple[list[int | str], ...] = (
    ["N", 8, "H", "W"],
    ["N", 12, "h", "w"],
    ["N", 16, "h3", "w3"],
    ["N", 16, "P"],
    ["N", 10],
    ["N", 6],
)


def vgg_weights(seed: int = 23) -> dict[str, np.ndarray]:
    """float32 weights of ``vgg_extractor`` (the torch twin in tests/kernels/perceptual_golden.py
    reads the same ones)."""
    rng = np.random.default_rng(seed)
    shapes = {
        "shift": (1, 3, 1, 1), "w1": (8, 3, 3, 3), "b1": (8,), "w2": (12, 8, 3, 3), "b2": (12,),
        "channel_scale": (1, 12, 1, 1), "w3": (16, 6, 3, 3), "wf": (10, 16), "bf": (10,), "wm": (10, 6), "bm": (6,),
    }  # fmt: skip
    weights = {
        k: rng.normal(size=shape) * (0.1 if k.startswith("b") or k == "shift" else 0.5) for k, shape in shapes.items()
    }
    weights["scale"] = rng.uniform(0.4, 0.6, (1, 3, 1, 1))
    weights["bn_scale"], weights["bn_bias"] = rng.uniform(0.5, 1.5, 8), rng.normal(size=8) * 0.1
    weights["bn_mean"], weights["bn_var"] = rng.normal(size=8) * 0.1, rng.uniform(0.5, 2.0, 8)
    return {k: v.astype(np.float32) for k, v in weights.items()}


def vgg_extractor(seed: int = 23) -> onnx.ModelProto:
    """A random-weight VGG-style float32 extractor with every operator kernels.backward
    differentiates: LPIPS's scaling layer (Sub, Div), Pad, Conv, BatchNormalization, Relu =
    relu1, MaxPool, Conv (pads) Relu = relu2, Concat with a Mul of itself, AveragePool
    (3x3 stride 2, padding counted), grouped Conv, LeakyRelu = lrelu3 (and Reshape of it to
    (N, 16, HW) = reshaped), GlobalAveragePool, Flatten, Gemm, Sigmoid = fc (N, 10),
    MatMul, Add, Clip = clip (N, 6)."""
    weights = vgg_weights(seed)
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    inits += [
        numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
        numpy_helper.from_array(np.array([0, 16, -1], np.int64), "shape"),
        numpy_helper.from_array(np.array(-0.5, np.float32), "lo"),
        numpy_helper.from_array(np.array(0.5, np.float32), "hi"),
    ]
    make = helper.make_node
    nodes = [
        make("Sub", ["images", "shift"], ["shifted"]),
        make("Div", ["shifted", "scale"], ["scaled"]),
        make("Pad", ["scaled", "pads"], ["padded"]),
        make("Conv", ["padded", "w1", "b1"], ["c1"]),
        make("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n1"]),
        make("Relu", ["n1"], ["relu1"]),
        make("MaxPool", ["relu1"], ["m1"], kernel_shape=[2, 2], strides=[2, 2]),
        make("Conv", ["m1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        make("Relu", ["c2"], ["relu2"]),
        make("Mul", ["relu2", "channel_scale"], ["scaled2"]),
        make("Concat", ["relu2", "scaled2"], ["both"], axis=1),
        make("AveragePool", ["both"], ["a2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
             count_include_pad=1),
        make("Conv", ["a2", "w3"], ["c3"], pads=[1, 1, 1, 1], group=4),
        make("LeakyRelu", ["c3"], ["lrelu3"], alpha=0.1),
        make("Reshape", ["lrelu3", "shape"], ["reshaped"]),
        make("GlobalAveragePool", ["lrelu3"], ["pooled"]),
        make("Flatten", ["pooled"], ["flat"]),
        make("Gemm", ["flat", "wf", "bf"], ["linear"], transB=1),
        make("Sigmoid", ["linear"], ["fc"]),
        make("MatMul", ["fc", "wm"], ["projected"]),
        make("Add", ["projected", "bm"], ["shifted_projection"]),
        make("Clip", ["shifted_projection", "lo", "hi"], ["clip"]),
    ]  # fmt: skip
    float_out = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "vgg_extractor",
        [helper.make_tensor_value_info("images", float_out, ["N", 3, "H", "W"])],
        [
            helper.make_tensor_value_info(name, float_out, dims)
            for name, dims in zip(VGG_OUTPUTS, VGG_DIMS, strict=True)
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION)


def softmax_extractor() -> onnx.ModelProto:
    """Conv -> Softmax over channels: an operator without a backward here (no gradients)."""
    w = np.random.default_rng(3).normal(size=(4, 3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Softmax", ["c"], ["soft"], axis=1)]
    graph = helper.make_graph(
        nodes,
        "softmax_extractor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("soft", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION)


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
