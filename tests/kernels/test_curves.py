"""Every declared curve (kernels/curves.py) evaluates on its loss: finite values, and the
derivative along the curve's variable (the kernel's gradient projected on ``direction``)
agrees with a central difference of the per-sample losses."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import REGISTRY
from kernels.curves import Curve
from kernels.spec import LossSpec
from tests.kernels.harness import evaluate

CURVED = [spec for spec in REGISTRY if spec.curve is not None]
H = 1e-6


def along(spec: LossSpec, curve: Curve, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    result = evaluate(spec.name, curve.inputs(x), curve.params, reduction="none")
    directions = curve.direction(x)
    slope = sum((result.gradients[name] * d).reshape(x.size, -1).sum(axis=1) for name, d in directions.items())
    return result.per_sample, np.asarray(slope)


@pytest.mark.parametrize("spec", CURVED, ids=[spec.name for spec in CURVED])
def test_curve_evaluates_with_consistent_slope(spec: LossSpec) -> None:
    curve = spec.curve
    assert curve is not None
    x = curve.sample(23)
    if not spec.differentiable:  # a value-only loss (perceptual): finite values are all there is
        result = evaluate(spec.name, curve.inputs(x), curve.params, reduction="none", gradients=False)
        assert np.all(np.isfinite(result.per_sample)) and not curve.direction(x)
        return
    values, slope = along(spec, curve, x)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(slope)), spec.name
    assert set(curve.direction(x)) <= set(spec.differentiable)
    # central differences, away from kinks: points where the slope is continuous on both sides
    plus, _ = along(spec, curve, x + H)
    minus, _ = along(spec, curve, x - H)
    _, slope_plus = along(spec, curve, x + 1e-3)
    _, slope_minus = along(spec, curve, x - 1e-3)
    smooth = np.abs(slope_plus - slope_minus) < 1e-2 * (1 + np.abs(slope))
    numeric = (plus - minus) / (2 * H)
    np.testing.assert_allclose(slope[smooth], numeric[smooth], rtol=1e-5, atol=1e-6)
