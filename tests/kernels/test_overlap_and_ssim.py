"""Overlap (dice, iou, tversky) and SSIM specifics: their curves, the absent-class caveat on the overlap
cards, and the accuracy of the softmax gradient at saturated pixels."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
from hypothesis import strategies as st

from kernels import REGISTRY
from kernels.imbalance import FocalParams
from kernels.segmentation import DiceParams
from tests.kernels.harness import evaluate
from tests.kernels.properties import PROPERTY_CHECKS, ChannelMasks, Line, kernel_evaluator

CURVED = ["dice", "iou", "tversky", "ssim"]


@pytest.mark.parametrize("loss", CURVED)
def test_curve_slope_is_the_derivative_of_the_loss(loss: str) -> None:
    """The curve's loss is finite and its slope (the kernel's gradient on the curve's direction) is the
    derivative of the loss along x."""
    spec = REGISTRY.get(loss)
    assert spec is not None and spec.curve is not None
    curve, h = spec.curve, 1e-6
    x = curve.sample(9)[1:-1]
    result = evaluate(loss, curve.inputs(x), curve.params, reduction="none")
    assert np.isfinite(result.per_sample).all()
    (name,) = spec.differentiable
    slope = (result.gradients[name] * curve.direction(x)[name]).reshape(x.size, -1).sum(axis=1)
    up = evaluate(loss, curve.inputs(x + h), curve.params, reduction="none", gradients=False).per_sample
    down = evaluate(loss, curve.inputs(x - h), curve.params, reduction="none", gradients=False).per_sample
    np.testing.assert_allclose(slope, (up - down) / (2 * h), rtol=1e-6, atol=1e-8)


def test_dice_curve_has_the_closed_form() -> None:
    """Uniform p on an all-foreground target of R pixels: 1 - (2 R p + s) / (R p + R + s)."""
    spec = REGISTRY.get("dice")
    assert spec is not None and spec.curve is not None
    x = spec.curve.sample(5)
    inputs = spec.curve.inputs(x)
    pixels = inputs["predictions"].shape[-1]
    s = DiceParams().smooth_nr
    expected = 1 - (2 * pixels * x + s) / (pixels * x + pixels + s)
    np.testing.assert_allclose(evaluate("dice", inputs, reduction="none").per_sample, expected, rtol=1e-12)


class AbsentClass(ChannelMasks):
    """ChannelMasks, but class 0 is absent from the target."""

    def target(self) -> np.ndarray:
        target = self.canonical_target()
        target[0] = 0.0
        return target

    def canonical_lines(self) -> tuple[Line, ...]:
        return (self.line(self.target(), np.zeros(self.shape), np.ones(self.shape)),)

    def lines(self) -> st.SearchStrategy[Line]:
        return st.just(self.canonical_lines()[0])


@pytest.mark.parametrize("loss", ["dice", "iou", "tversky"])
def test_a_class_absent_from_the_target_is_a_near_step(loss: str) -> None:
    """The caveat on the overlap cards: with a class absent from the target, the loss is a step of height ~1
    at sum p ~ s_dr, so its gradient is Lipschitz only with a constant ~1/s_dr^2 (the smooth_gradient claim
    holds on targets where every class is present)."""
    spec = REGISTRY.get(loss)
    assert spec is not None
    domain = AbsentClass()
    assert PROPERTY_CHECKS["smooth_gradient"].counterexample(kernel_evaluator(spec), domain) is not None
    # one absent class on its own: its loss goes from 0 ((0 + s_dr - s_nr) / s_dr) at p = 0 to above 0.9
    # at p = 1e-4 on each of 3 pixels
    empty = np.zeros((1, 1, 3))
    at_zero, near_zero = (
        evaluate(loss, {"predictions": np.full((1, 1, 3), p), "targets": empty}, reduction="none").per_sample[0]
        for p in (0.0, 1e-4)
    )
    assert at_zero == 0.0
    assert near_zero > 0.9


@pytest.mark.parametrize("loss", ["dice", "tversky"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_gradient_is_accurate_at_saturated_pixels(loss: str, dtype: Literal["float32", "float64"]) -> None:
    """Two channels with logit gaps up to 60: d loss / d logits = p0 p1 (g0 - g1) (channel 0; the negative
    for channel 1), with g = d loss / d p. The kernel keeps every entry to its own relative precision,
    where p (g - sum g p) would leave rounding noise ~1e-16 |g| (1e-8 |g| in float32) instead."""
    gaps = np.array([-60.0, -30.0, -8.0, 0.0, 8.0, 30.0, 60.0])
    logits = np.stack([gaps / 2, -gaps / 2])[None]  # (1, 2, 7): x0 - x1 = gap
    targets = np.zeros_like(logits)
    targets[0, 0, :4] = 1.0
    targets[0, 1, 4:] = 1.0
    params = {"activation": "softmax"}
    result = evaluate(loss, {"predictions": logits, "targets": targets}, params, reduction="sum", dtype=dtype)
    grad = np.asarray(result.gradients["predictions"], np.float64)

    # float64 reference: p and dL/dp at the same point (a probability-form evaluation of the same loss)
    p0 = 1.0 / (1.0 + np.exp(-gaps))
    p1 = 1.0 / (1.0 + np.exp(gaps))
    probabilities = np.stack([p0, p1])[None]
    g = evaluate(loss, {"predictions": probabilities, "targets": targets}, reduction="sum").gradients["predictions"]
    expected0 = p0 * p1 * (g[0, 0] - g[0, 1])
    np.testing.assert_allclose(grad[0, 0], expected0, rtol=1e-5 if dtype == "float32" else 1e-12)
    np.testing.assert_allclose(grad[0, 1], -expected0, rtol=1e-5 if dtype == "float32" else 1e-12)


def test_ssim_of_identical_images_is_zero_with_zero_gradient() -> None:
    rng = np.random.default_rng(3)
    image = rng.random((2, 3, 12, 14))
    result = evaluate("ssim", {"predictions": image, "targets": image}, reduction="none")
    np.testing.assert_allclose(result.per_sample, 0.0, atol=1e-15)
    np.testing.assert_allclose(result.gradients["predictions"], 0.0, atol=1e-12)


# --- the declarations these losses added to the framework ---------------------------------------


def test_probabilities_when_names_the_deciding_param() -> None:
    spec = REGISTRY.get("dice")
    assert spec is not None
    predictions = spec.inputs[0]
    assert predictions.holds_probabilities(DiceParams())
    assert not predictions.holds_probabilities(DiceParams(activation="sigmoid"))
    focal = REGISTRY.get("focal")
    assert focal is not None  # the default condition: from_logits false
    assert focal.inputs[0].holds_probabilities(FocalParams())
    assert not focal.inputs[0].holds_probabilities(FocalParams(from_logits=True))


def test_a_size_rule_must_name_a_declared_symbol_and_params() -> None:
    from kernels.image import ssim_gaussian
    from kernels.segmentation import TARGETS
    from kernels.spec import Card, KernelFunction, MinSize, Properties, loss

    def factory() -> KernelFunction:
        return ssim_gaussian

    card = Card("t", "s", "f", ("u",), {"x": "y"}, ("r",))
    properties = Properties(
        robust_to_outliers=False,
        smooth_gradient=False,
        convex=False,
        differentiable=False,
        bounded_below=False,
        probabilistic_interpretation=None,
    )
    for rule in (MinSize("Q", 2, "targets", "no such axis"), MinSize("C", "window", "targets", "no such param")):
        with pytest.raises(ValueError, match="size rule"):
            loss(
                name="bad", task="segmentation", inputs=(TARGETS,), properties=properties, card=card, min_sizes=(rule,)
            )(factory)
