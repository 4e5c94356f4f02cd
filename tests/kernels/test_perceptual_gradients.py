"""``perceptual``'s gradients through the automatic backward of its extractor (kernels.backward).

* Against torch autograd: tests/golden/extractors/perceptual_gradients.json (written by
  tests/kernels/perceptual_golden.py under the reference environment) holds the loss and its
  gradients through torch twins of the random-weight VGG-style extractor (every operator the
  backward knows) and of the float64 ``pointwise64`` extractor, for reductions mean and sum
  (weighted) and none; both request dtypes are compared with them.
* Against finite differences in float64: the VGG extractor cast to float64 and run by the ONNX
  reference evaluator (onnxruntime has no float64 Conv), with LPIPS's distance in numpy.
* An extractor with an operator without a backward keeps working, without gradients.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx.reference import ReferenceEvaluator

from kernels.features import FEATURE_MODELS, load_feature_models
from kernels.graph import build_model
from kernels.perceptual import PerceptualParams
from kernels.perceptual import perceptual as SPEC
from kernels.runtime import Runtime
from kernels.spec import Registry
from tests.feature_models import pointwise_extractor, softmax_extractor, vgg_extractor

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "extractors" / "perceptual_gradients.json").read_text())
TOLERANCE = {
    ("vgg", "float64"): 1e-5,  # the extractor is float32: its features carry float32 rounding (seen: 1.3e-6)
    ("vgg", "float32"): 1e-5,
    ("pointwise64", "float64"): 1e-12,  # seen: 1.5e-15
    ("pointwise64", "float32"): 1e-5,
}
"""Relative to the largest entry of the golden gradient (or per_sample)."""


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("extractors")
    found = {}
    for name, build in (("vgg", vgg_extractor), ("pointwise64", pointwise_extractor), ("softmax", softmax_extractor)):
        found[name] = directory / f"{name}.onnx"
        onnx.save(build(), found[name])
    return found


@pytest.fixture(scope="module")
def local(paths: dict[str, Path]) -> Iterator[Runtime]:
    registry = Registry()
    registry.add(SPEC)
    yield Runtime(registry, provider="cpu", resources={FEATURE_MODELS: load_feature_models(paths)})


def close(got: np.ndarray, want: np.ndarray, rtol: float, context: str) -> None:
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=context)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("extractor", sorted(GOLDEN["cases"]))
def test_gradients_match_torch_autograd(local: Runtime, extractor: str, dtype: Any) -> None:
    case = GOLDEN["cases"][extractor]
    rtol = TOLERANCE[(extractor, dtype)]
    inputs = {"predictions": np.array(case["predictions"]), "targets": np.array(case["targets"])}
    params = PerceptualParams(feature_model=extractor)
    for reduction, want in case["gradients"].items():
        weights = None if reduction == "none" else case["weights"]
        got = local.evaluate(SPEC, inputs, params, reduction=reduction, weights=weights, dtype=dtype)
        context = f"{extractor} {dtype} {reduction}"
        assert got.gradients["predictions"].dtype == np.dtype(dtype)
        close(got.per_sample, np.array(case["per_sample"]), rtol, context)
        close(got.gradients["predictions"], np.array(want), rtol, context)


def float64_extractor(path: Path) -> onnx.ModelProto:
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.elem_type = TensorProto.DOUBLE
    return model


def lpips(features_p: list[np.ndarray], features_t: list[np.ndarray]) -> np.ndarray:
    total = np.zeros(len(features_p[0]))
    for fp, ft in zip(features_p, features_t, strict=True):
        up, ut = (f / (np.sqrt((f * f).sum(axis=1, keepdims=True)) + 1e-10) for f in (fp, ft))
        total += ((up - ut) ** 2).sum(axis=1).reshape(len(total), -1).mean(axis=1)
    return total


def test_vgg_gradients_match_finite_differences_in_float64(local: Runtime, paths: dict[str, Path]) -> None:
    """Central differences (step 1e-6) of the float64 extractor at 40 random entries, against the
    kernel's float64-request gradient (float32 features: within 1e-4 of the largest entry)."""
    evaluator = ReferenceEvaluator(float64_extractor(paths["vgg"]))
    rng = np.random.default_rng(8)
    predictions = rng.uniform(-1, 1, (2, 3, 7, 10))
    targets = predictions + 0.3 * rng.normal(size=predictions.shape)

    def features(images: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(f) for f in evaluator.run(None, {"images": images})]

    features_t = features(targets)

    def total(images: np.ndarray) -> float:
        return float(lpips(features(images), features_t).sum())

    got = local.evaluate(
        SPEC, {"predictions": predictions, "targets": targets}, PerceptualParams(feature_model="vgg"), reduction="sum"
    ).gradients["predictions"]
    flat = rng.choice(predictions.size, size=40, replace=False)
    h = 1e-6
    numeric, analytic = [], []
    for index in (np.unravel_index(i, predictions.shape) for i in flat):
        up, down = predictions.copy(), predictions.copy()
        up[index] += h
        down[index] -= h
        numeric.append((total(up) - total(down)) / (2 * h))
        analytic.append(got[index])
    close(np.array(analytic), np.array(numeric), 1e-4, "vgg finite differences")


def test_the_gradient_graph_holds_the_backward_and_the_forward_graph_none_of_it(local: Runtime) -> None:
    variant = (("feature_model", "vgg"),)
    for gradients in (False, True):
        key = local.kernel(SPEC, PerceptualParams(feature_model="vgg"), "float32", gradients).key
        assert key.gradients is gradients
        ops = [n.op_type for n in build_model(SPEC, key, local.resources).graph.node]
        assert ("ConvTranspose" in ops) is gradients and ("ScatterElements" in ops) is gradients, ops
        # without gradients the extractor runs once, on [predictions; targets]; with them on each apart
        assert ops.count("Conv") == (6 if gradients else 3)
    assert SPEC.differentiable_for(variant, local.resources) == ("predictions",)


def test_an_extractor_without_a_backward_keeps_working_without_gradients(
    local: Runtime, paths: dict[str, Path]
) -> None:
    variant = (("feature_model", "softmax"),)
    why = SPEC.no_gradients(variant, local.resources)
    assert why is not None and "Softmax" in why and why.startswith("feature_model 'softmax'")
    assert SPEC.differentiable_for(variant, local.resources) == ()
    assert local.no_gradients(SPEC) == (why,)
    assert local.gradients(SPEC) == ("predictions",), "the other extractors have gradients"
    kernel = local.kernel(SPEC, PerceptualParams(feature_model="softmax"), "float32", gradients=True)
    assert not kernel.key.gradients and kernel.outputs == ["loss", "per_sample"]
    rng = np.random.default_rng(2)
    predictions, targets = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 4, 4))
    result = local.evaluate(
        SPEC, {"predictions": predictions, "targets": targets}, PerceptualParams(feature_model="softmax")
    )
    assert result.gradients == {} and np.isfinite(result.loss) and result.loss > 0
