"""The perceptual kernel against an independent reference, its graphs, and the loading of
feature extractors (tests/feature_models.py builds them with onnx.helper).

This is the golden test of ``perceptual`` (test_golden.GOLDEN_ELSEWHERE): no library computes
an LPIPS-style distance through an arbitrary ONNX extractor, so the reference is the
extractor run on its own by onnxruntime, then LPIPS's normalisation and distance in float64
numpy (``reference_per_sample``). Tolerances (relative to the largest value): float64 requests
1e-12 through the float64 extractor and 1e-6 through the float32 one (its features are float32
in both; onnxruntime may round a batch of 2N images differently from N), float32 requests
1e-5.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from kernels import REGISTRY
from kernels.features import FEATURE_MODELS, FeatureModelError, load_feature_model, load_feature_models
from kernels.graph import DTYPES, build_model
from kernels.perceptual import PerceptualParams
from kernels.runtime import OperatorModelError, Runtime, all_keys, export
from kernels.spec import LossSpec, NotConfigured, Registry, UnknownChoice
from tests.feature_models import (
    CONV_NAMES,
    IR_VERSION,
    conv_extractor,
    pointwise_extractor,
    reference_per_sample,
    write_extractors,
)
from tests.kernels.catalog import CATALOG
from tests.kernels.harness import evaluate, runtime
from tests.kernels.properties import Images, _difference_slopes


def _spec(name: str) -> LossSpec:
    spec = REGISTRY.get(name)
    assert spec is not None
    return spec


SPEC = _spec("perceptual")
CHANNELS = {"conv": 3, "pointwise64": 2}
TOLERANCE = {("float64", "pointwise64"): 1e-12, ("float64", "conv"): 1e-6, ("float32", "pointwise64"): 1e-5}
REDUCTIONS = (("mean", False), ("mean", True), ("sum", False), ("sum", True), ("none", False))


@pytest.fixture(scope="module")
def extractors() -> Iterator[dict[str, Path]]:
    with tempfile.TemporaryDirectory() as directory:
        yield write_extractors(Path(directory))


def images(kind: str, model: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and targets of one kind of case for an extractor's channel count."""
    rng = np.random.default_rng(seed)
    c = CHANNELS[model]
    if kind == "random":
        return rng.normal(size=(4, c, 7, 5)), rng.normal(size=(4, c, 7, 5))
    if kind == "close":  # small perturbations: distances far below 1
        y = rng.uniform(-1, 1, (3, c, 8, 8))
        return y + 1e-3 * rng.normal(size=y.shape), y
    if kind == "pixel":  # 1x1 images, a batch of one
        return rng.normal(size=(1, c, 1, 1)), rng.normal(size=(1, c, 1, 1))
    if kind == "large":  # far outside [-1, 1]: the normalisation keeps the distance bounded
        return rng.normal(size=(2, c, 4, 6)) * 1e4, rng.normal(size=(2, c, 4, 6)) * 1e-3
    if kind == "identical":
        y = rng.normal(size=(2, c, 5, 5))
        return y.copy(), y
    raise ValueError(kind)


KINDS = ("random", "close", "pixel", "large", "identical")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", ["conv", "pointwise64"])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_the_reference(extractors: dict[str, Path], kind: str, model: str, dtype: str) -> None:
    predictions, targets = images(kind, model, seed=len(kind) + len(model))
    if dtype == "float32":  # the reference sees what the kernel sees
        predictions, targets = predictions.astype(np.float32), targets.astype(np.float32)
    expected = reference_per_sample(extractors[model], predictions, targets)
    rtol = TOLERANCE.get((dtype, model), 1e-5)
    weights = np.linspace(0.5, 2.0, len(expected))
    for reduction, weighted in REDUCTIONS:
        w = weights if weighted else np.ones_like(weights)
        want = {"mean": (w * expected).sum() / w.sum(), "sum": (w * expected).sum(), "none": expected}[reduction]
        gradients = weighted or reduction == "none"  # the graphs with and without gradients
        got = evaluate(
            "perceptual",
            {"predictions": predictions, "targets": targets},
            {"feature_model": model},
            reduction=reduction,
            weights=weights if weighted else None,
            dtype=dtype,  # type: ignore[arg-type]
            gradients=gradients,
        )
        assert got.per_sample.dtype == np.dtype(dtype)
        assert list(got.gradients) == (["predictions"] if gradients else [])
        context = f"{kind} {model} {dtype} {reduction} weighted={weighted}"
        scale = max(float(np.max(np.abs(want))), 1e-300)
        np.testing.assert_allclose(got.loss, want, rtol=rtol, atol=rtol * scale, err_msg=context)
        np.testing.assert_allclose(got.per_sample, expected, rtol=rtol, atol=rtol * scale, err_msg=context)
    if kind == "identical":
        assert not got.per_sample.any(), "identical images are at distance exactly 0"
    assert np.all(got.per_sample <= 4.0 * 2 + 1e-9), "bounded by 4 x the number of outputs"


def test_the_default_is_the_first_configured_model() -> None:
    predictions, targets = images("random", "conv", 0)
    inputs = {"predictions": predictions, "targets": targets}
    assert evaluate("perceptual", inputs).loss == evaluate("perceptual", inputs, {"feature_model": "conv"}).loss


def test_dead_feature_vectors_use_the_epsilon(tmp_path: Path) -> None:
    """Where every channel of a feature map is 0 (ReLU of negative pixels), LPIPS's +1e-10 makes the
    unit vector 0, not 0/0; outputs of rank 2 (no spatial axes) are compared directly."""
    nodes = [helper.make_node("Relu", ["x"], ["relu"]), helper.make_node("Flatten", ["relu"], ["flat"], axis=1)]
    graph = helper.make_graph(
        nodes,
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, "H", "W"])],
        [
            helper.make_tensor_value_info("relu", TensorProto.FLOAT, ["N", 2, "H", "W"]),
            helper.make_tensor_value_info("flat", TensorProto.FLOAT, ["N", "D"]),
        ],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION), path)
    models = load_feature_models({"relu": path})
    local = Runtime(Registry_of("perceptual"), provider="cpu", resources={FEATURE_MODELS: models})
    predictions = np.array([[[[-1.0, 2.0]], [[-3.0, 1.0]]], [[[-1.0, -2.0]], [[-1.0, -5.0]]]])
    targets = np.array([[[[-2.0, 1.0]], [[-1.0, 1.0]]], [[[-1.0, -1.0]], [[-1.0, -1.0]]]])
    expected = reference_per_sample(path, predictions, targets)
    for dtype in ("float32", "float64"):
        got = local.evaluate(SPEC, {"predictions": predictions, "targets": targets}, reduction="none", dtype=dtype)
        assert np.all(np.isfinite(got.per_sample))
        np.testing.assert_allclose(got.per_sample, expected, rtol=1e-6)
    # first image: pixel 0 is dead in both (distance 0 there), pixel 1 differs in direction
    assert expected[1] == 0.0 and expected[0] > 0.0


def Registry_of(*names: str) -> Registry:
    registry = Registry()
    for name in names:
        registry.add(_spec(name))
    return registry


CLASHING = {"input": "predictions", "c1": "images", "r1": "elements", "c2": "feature_0", "r2": "distance"}


@pytest.mark.parametrize(
    ("opset", "names"), [(13, CLASHING), (18, CLASHING), (21, CLASHING), (13, None)], ids=["13", "18", "21", "plain"]
)
def test_any_opset_and_any_value_names(tmp_path: Path, opset: int, names: dict[str, str] | None) -> None:
    """The extractor is converted to the loss graph's opset, and its values are renamed: names the
    loss graph itself uses (``predictions``, ``elements``, ...) do not clash."""
    path = tmp_path / "clash.onnx"
    onnx.save(conv_extractor(opset=opset, names=names or CONV_NAMES), path)
    model = load_feature_model("clash", path)
    assert model.source_opset == opset
    local = Runtime(Registry_of("perceptual"), provider="cpu", resources={FEATURE_MODELS: {"clash": model}})
    predictions, targets = images("random", "conv", 1)
    expected = reference_per_sample(path, predictions, targets)
    got = local.evaluate(SPEC, {"predictions": predictions, "targets": targets}, reduction="none")
    np.testing.assert_allclose(got.per_sample, expected, rtol=1e-6)


def test_graphs_are_one_checked_session_per_model_and_dtype() -> None:
    resources = runtime().resources
    keys = [key for spec, key in all_keys(REGISTRY, resources) if spec is SPEC]
    stems = [
        f"perceptual.feature_model={m}.{dtype}.{kind}" for m in ("conv", "pointwise64") for dtype in DTYPES
        for kind in ("fwd", "grad")
    ]  # fmt: skip
    assert sorted(key.stem for key in keys) == sorted(stems)
    for key in keys:
        model = build_model(SPEC, key, resources)
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        grads = ["grad_predictions"] if key.gradients else []
        assert [o.name for o in inferred.graph.output] == ["loss", "per_sample", *grads]
        assert not model.functions
        ops = [n.op_type for n in model.graph.node]
        if key.gradients:  # the extractor on the targets, and on the predictions with its backward
            assert ops.count("Relu") == 4
            assert ops.count("ConvTranspose") == (2 if "conv" in key.stem else 0)
        else:  # the extractor runs once, on the concatenated batch
            assert ops.count("Concat") == 1
            assert ops.count("Relu") == 2
    assert [key for key in runtime()._kernels if key.loss == "perceptual"] == keys


def test_fixed_sizes_reach_the_graph_inputs() -> None:
    kernel = runtime().kernel(SPEC, PerceptualParams(feature_model="conv"), "float32", gradients=True)
    assert kernel.key.gradients, "the conv extractor has a backward"
    assert kernel.fixed_dims == (("predictions", ((1, 3),)), ("targets", ((1, 3),)))
    assert kernel.operator_model


def test_configuration_errors_are_typed() -> None:
    empty = Runtime(Registry_of("perceptual", "mse"), provider="cpu")
    with pytest.raises(NotConfigured, match="LOSSD_FEATURE_MODELS"):
        empty.kernel(SPEC, SPEC.params(), "float32", False)
    with pytest.raises(NotConfigured):
        empty.variants(SPEC)
    assert empty.choices(SPEC) == (("feature_model", ()),)
    with pytest.raises(UnknownChoice, match="configured: conv, pointwise64"):
        runtime().kernel(SPEC, PerceptualParams(feature_model="vgg"), "float32", False)


def test_an_extractor_failing_on_the_inputs_is_the_inputs_fault(tmp_path: Path) -> None:
    """3x3 convolutions without padding cannot run on 1x1 images: a typed error, not a crash."""
    path = tmp_path / "valid.onnx"
    onnx.save(conv_extractor(padding=0), path)
    local = Runtime(
        Registry_of("perceptual"), provider="cpu", resources={FEATURE_MODELS: load_feature_models({"valid": path})}
    )
    tiny = np.zeros((1, 3, 1, 1))
    with pytest.raises(OperatorModelError, match="feature_model"):
        local.evaluate(SPEC, {"predictions": tiny, "targets": tiny})
    ok = np.zeros((1, 3, 9, 9))
    assert local.evaluate(SPEC, {"predictions": ok, "targets": ok}).loss == 0.0


# --- loading: every problem is a clear error naming the entry -----------------------------------------


def _model(inputs: list[onnx.ValueInfoProto], nodes: list[onnx.NodeProto], output: str = "y") -> onnx.ModelProto:
    out = helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", 2, "H", "W"])
    graph = helper.make_graph(nodes, "bad", inputs, [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION)


def _image(name: str = "x", dims: list[Any] | None = None, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, dims if dims is not None else ["N", 2, "H", "W"])


BAD: dict[str, tuple[Any, str]] = {
    "missing": (None, "no such file"),
    "not-onnx": (b"definitely not protobuf", "not a valid ONNX model"),
    "two-inputs": (
        _model([_image("a"), _image("b")], [helper.make_node("Add", ["a", "b"], ["y"])]),
        "takes 2 inputs (a, b)",
    ),
    "rank-2": (_model([_image(dims=["N", 2])], [helper.make_node("Relu", ["x"], ["y"])]), "has rank 2"),
    "fixed-batch": (_model([_image(dims=[1, 2, 4, 4])], [helper.make_node("Relu", ["x"], ["y"])]), "fixed batch"),
    "integer-input": (
        _model([_image(elem=TensorProto.INT64)], [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)]),
        "not a floating-point tensor",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_extractor_is_refused_with_the_reason(tmp_path: Path, case: str) -> None:
    content, words = BAD[case]
    path = tmp_path / f"{case}.onnx"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        onnx.save(content, path)
    with pytest.raises(FeatureModelError, match="LOSSD_FEATURE_MODELS entry") as raised:
        load_feature_model("bad", path)
    assert words in str(raised.value)
    assert f"bad={path}" in str(raised.value)


def test_names_must_be_simple(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(pointwise_extractor(), path)
    with pytest.raises(FeatureModelError, match="letters, digits"):
        load_feature_model("a.b", path)


def test_model_local_functions_are_inlined(tmp_path: Path) -> None:
    """Exporters (torch.onnx dynamo) emit model-local functions: they are inlined on loading."""
    body = helper.make_function(
        "custom", "Features", ["x"], ["y"], [helper.make_node("Relu", ["x"], ["y"])], [helper.make_opsetid("", 18)]
    )
    graph = helper.make_graph(
        [helper.make_node("Features", ["x"], ["y"], domain="custom")], "f", [_image()], [_image("y")]
    )
    model = helper.make_model(
        graph,
        functions=[body],
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("custom", 1)],
        ir_version=IR_VERSION,
    )
    path = tmp_path / "functions.onnx"
    onnx.save(model, path)
    loaded = load_feature_model("functions", path)
    assert not loaded.model.functions
    assert [n.op_type for n in loaded.model.graph.node] == ["Relu"]


# --- exported model repositories --------------------------------------------------------------------


def test_export_embeds_the_extractors_and_ties_them_to_hashes(extractors: dict[str, Path], tmp_path: Path) -> None:
    registry = Registry_of("perceptual", "mse")
    resources = {FEATURE_MODELS: load_feature_models(extractors)}
    manifest = json.loads(export(registry, tmp_path / "repo", resources).read_text())
    perceptual = [g for g in manifest["graphs"] if g["loss"] == "perceptual"]
    assert len(perceptual) == 8 and sorted(g["gradients"] for g in perceptual) == [False] * 4 + [True] * 4
    assert {g["configured_sha256"]["feature_model"] for g in perceptual} == {
        m.sha256 for m in resources[FEATURE_MODELS].values()
    }
    served = Runtime(registry, provider="cpu", model_repository=tmp_path / "repo", resources=resources)
    predictions, targets = images("random", "conv", 3)
    got = served.evaluate(SPEC, {"predictions": predictions, "targets": targets}, reduction="none")
    np.testing.assert_allclose(got.per_sample, reference_per_sample(extractors["conv"], predictions, targets), 1e-6)

    # the same name now stands for other weights: the exported graph is stale
    other = tmp_path / "other.onnx"
    onnx.save(conv_extractor(seed=99), other)
    changed = {FEATURE_MODELS: {**resources[FEATURE_MODELS], "conv": load_feature_model("conv", other)}}
    with pytest.raises(ValueError, match="different feature_model"):
        Runtime(registry, provider="cpu", model_repository=tmp_path / "repo", resources=changed)
    # a model configured now that the repository lacks
    plain = tmp_path / "plain"
    export(registry, plain)
    with pytest.raises(FileNotFoundError, match="LOSSD_FEATURE_MODELS"):
        Runtime(registry, provider="cpu", model_repository=plain, resources=resources)
    # and a repository exported with extractors serves fine without them (perceptual then answers 409)
    assert Runtime(registry, provider="cpu", model_repository=tmp_path / "repo").choices(SPEC) == (
        ("feature_model", ()),
    )


# --- the curve and the (non-)differentiability the card claims ------------------------------------------


def test_curve_starts_at_zero_and_grows_with_the_noise() -> None:
    curve = SPEC.curve
    assert curve is not None
    x = curve.sample(6)
    inputs = curve.inputs(x)
    result = evaluate("perceptual", inputs, reduction="none")
    distance = result.per_sample
    # the direction is d(inputs)/dx (the inputs are linear in x), and the slope at the target is 0
    moved = [curve.inputs(x + s)["predictions"] for s in (0.5, -0.5)]
    np.testing.assert_allclose(curve.direction(x)["predictions"], moved[0] - moved[1], atol=1e-12)
    slope = (result.gradients["predictions"] * curve.direction(x)["predictions"]).reshape(len(x), -1).sum(axis=1)
    assert slope[0] == 0.0 and np.all(np.isfinite(slope))
    assert distance[0] == 0.0
    assert np.all(np.diff(distance) > 0), distance


def test_a_relu_kink_is_a_real_gradient_jump() -> None:
    """The counterexample behind ``differentiable: false``: along the property checks' first line, at a
    first-layer kink of the ReLU extractor, the one-sided slopes (central differences 1e-7 wide, on
    each side at 1e-5) differ by far more than the differences' error, and agree at smooth points."""
    domain = CATALOG["perceptual"].domain
    assert isinstance(domain, Images)
    line = domain.canonical_lines()[0]
    evaluator = domain.evaluator(SPEC)

    def slopes(ts: list[float]) -> np.ndarray:
        points = line.points(ts)
        return _difference_slopes(
            evaluator, line, points, np.broadcast_to(np.asarray(line.target), points.shape).copy()
        )

    kink = min(line.kinks, key=abs)
    left, right = slopes([kink - 1e-5, kink + 1e-5])
    smooth_left, smooth_right = slopes([kink - 0.5e-2, kink - 0.5e-2 + 2e-5])
    assert abs(right - left) > 1e-5 and abs(right - left) > 100 * abs(smooth_right - smooth_left)
