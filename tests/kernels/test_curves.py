"""Each declared curve (kernels/curves.py) draws its loss: valid inputs for the kernel, a finite loss at
every point, and a slope (the kernel's gradient projected on the curve's direction) that is the
derivative of the drawn loss along x wherever the loss is smooth there."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import REGISTRY
from kernels.curves import Curve
from kernels.spec import LossSpec
from tests.kernels.harness import evaluate

CURVES = [spec for spec in REGISTRY if spec.curve is not None]
H = 1e-6


def draw(spec: LossSpec, curve: Curve, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The loss at each x and its slope along the curve; a batch-level loss evaluates each row of the
    curve's inputs as its own batch."""
    inputs, direction = curve.inputs(x), curve.direction(x)
    if spec.batch_level:
        rows = [evaluate(spec.name, {k: v[i] for k, v in inputs.items()}, curve.params) for i in range(x.size)]
        values = np.array([float(r.loss) for r in rows])
        gradients = {name: np.stack([r.gradients[name] for r in rows]) for name in direction}
    else:
        result = evaluate(spec.name, inputs, curve.params, reduction="none")
        values, gradients = result.per_sample, result.gradients
    slope = sum((gradients[name] * d).reshape(x.size, -1).sum(axis=1) for name, d in direction.items())
    return values, np.asarray(slope)


@pytest.mark.parametrize("spec", CURVES, ids=[spec.name for spec in CURVES])
def test_curve_draws_the_loss_and_its_slope(spec: LossSpec) -> None:
    curve = spec.curve
    assert curve is not None
    x = curve.sample(41)
    inputs = curve.inputs(x)
    assert set(inputs) == {i.name for i in spec.required}, "a curve gives every required input of the loss"
    assert set(curve.direction(x)) <= set(spec.differentiable), "a curve moves differentiable inputs only"
    values, slope = draw(spec, curve, x)
    assert np.isfinite(values).all() and np.isfinite(slope).all()
    assert np.ptp(values) > 0, "the curve shows a constant loss"
    if spec.configured:  # through the float32 test extractor, differences of 1e-6 are rounding noise
        assert not slope[0] and np.ptp(slope) > 0, "perceptual's slope is 0 at the target, then not constant"
        return  # its gradients are checked against torch and float64 differences in test_perceptual_gradients
    ahead, _ = draw(spec, curve, x + H)
    behind, _ = draw(spec, curve, x - H)
    forward, backward = (ahead - values) / H, (values - behind) / H
    smooth = np.abs(forward - backward) < 1e-3 * (1 + np.abs(forward))
    assert smooth.sum() > x.size // 2
    np.testing.assert_allclose(slope[smooth], ((ahead - behind) / (2 * H))[smooth], rtol=1e-5, atol=1e-5)
