"""Kernel rows of ``perceptual``: a 4x3x64x64 float32 batch through a random-weight VGG-style
extractor, the loss alone and with its gradient (the extractor's automatic backward,
kernels.backward), run as the service runs it. The extractor is built here (no weights are
downloaded): three stages of 3x3 Conv + BatchNormalization + Relu with 16, 32 and 64
channels (two convolutions in the first two stages), MaxPool 2x2 between them, each stage's
last Relu a feature map (LPIPS-VGG's layout at a quarter of its widths)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bench.stats import Spread, time_calls
from kernels.features import FEATURE_MODELS, load_feature_models
from kernels.perceptual import PerceptualParams
from kernels.perceptual import perceptual as SPEC
from kernels.runtime import Kernel, Runtime
from kernels.spec import Registry

LOSS = SPEC.name
SHAPE = (4, 3, 64, 64)
STAGES = ((16, 16), (32, 32), (64,))
EXTRACTOR = "vgg16-32-64: Conv3x3+BN+Relu x (2, 2, 1), MaxPool 2x2 between stages, 3 outputs"


def vgg_style(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    outputs, value, channels = [], "images", 3
    for s, widths in enumerate(STAGES):
        if s:
            nodes.append(helper.make_node("MaxPool", [value], [f"pool{s}"], kernel_shape=[2, 2], strides=[2, 2]))
            value = f"pool{s}"
        for k, width in enumerate(widths):
            name = f"s{s}c{k}"
            weights = {
                "w": rng.normal(size=(width, channels, 3, 3)) * np.sqrt(2.0 / (9 * channels)),
                "b": rng.normal(size=width) * 0.1,
                "scale": rng.uniform(0.5, 1.5, width),
                "bias": rng.normal(size=width) * 0.1,
                "mean": rng.normal(size=width) * 0.1,
                "var": rng.uniform(0.5, 2.0, width),
            }
            inits += [numpy_helper.from_array(v.astype(np.float32), f"{name}_{key}") for key, v in weights.items()]
            bn = [f"{name}_{key}" for key in ("scale", "bias", "mean", "var")]
            nodes += [
                helper.make_node("Conv", [value, f"{name}_w", f"{name}_b"], [f"{name}_conv"], pads=[1, 1, 1, 1]),
                helper.make_node("BatchNormalization", [f"{name}_conv", *bn], [f"{name}_bn"]),
                helper.make_node("Relu", [f"{name}_bn"], [f"{name}_relu"]),
            ]
            value, channels = f"{name}_relu", width
        outputs.append((value, channels))
    graph = helper.make_graph(
        nodes,
        "vgg_style",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(v, TensorProto.FLOAT, ["N", c, f"h{v}", f"w{v}"]) for v, c in outputs],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def measure(threads: int, repeats: int) -> dict[bool, tuple[Spread, np.ndarray | None]]:
    """Seconds per run without and with gradients, and the gradient (for a sanity check)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "vgg_style.onnx"
        onnx.save(vgg_style(), str(path))
        models = load_feature_models({"vgg": path})
    registry = Registry()
    registry.add(SPEC)
    runtime = Runtime(registry, provider="cpu", intra_op_threads=threads, resources={FEATURE_MODELS: models})
    rng = np.random.default_rng(0)
    targets = rng.uniform(-1, 1, SHAPE).astype(np.float32)
    arrays = {"predictions": targets + 0.1 * rng.standard_normal(SHAPE, dtype=np.float32), "targets": targets}
    params, weights = PerceptualParams(), np.ones(SHAPE[0], np.float32)
    found: dict[bool, tuple[Spread, np.ndarray | None]] = {}
    for gradients in (False, True):
        kernel = runtime.kernel(SPEC, params, "float32", gradients)
        names = kernel.outputs
        outputs: list[np.ndarray] = []

        def run(names: list[str] = names, kernel: Kernel = kernel, outputs: list[np.ndarray] = outputs) -> None:
            outputs[:] = runtime.run(kernel, params, arrays, weights, True, names)

        spread = time_calls(run, repeats)
        found[gradients] = (spread, outputs[2] if gradients else None)
    return found
