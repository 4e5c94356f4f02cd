"""Every loss's analytic gradients against central finite differences, in float64.

For each registered loss its test declaration (``tests/kernels/catalog/``, ``LossInfo.gradients``) gives
an input generator that keeps away from the loss's kinks (zero residual for ``mae``, ``|residual| =
delta`` for ``huber``, the probability clip for probability inputs), the params to try, the step and the
tolerances; ``from_logits`` is tried both ways wherever the loss has it. Every combination is checked
for reductions ``mean`` and ``sum`` with and without sample weights, and ``none`` (whose gradient is
that of each sample's own loss, i.e. of ``sum(per_sample)``; with weights, ``none`` gives the weighted
sample losses: tests/service/test_element_weights.py).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest

from kernels import REGISTRY
from tests.kernels.catalog import GRADIENT_CASES, NO_GRADIENTS, GradientCase
from tests.kernels.catalog.base import Frozen
from tests.kernels.harness import evaluate

CONFIGS = (("mean", False), ("mean", True), ("sum", False), ("sum", True), ("none", False))

Arrays = dict[str, np.ndarray]


def param_sets(loss: str, case: GradientCase) -> list[dict[str, Any]]:
    spec = REGISTRY.get(loss)
    assert spec is not None
    if "from_logits" not in spec.params.model_fields:
        return list(case.params)
    return [{**params, "from_logits": logits} for logits in (False, True) for params in case.params]


def scalar(
    loss: str,
    inputs: Arrays,
    params: dict[str, Any],
    reduction: str,
    weights: np.ndarray | None,
    frozen: tuple[Frozen, Arrays] | None = None,
) -> float:
    """The value whose gradient the kernel returns: the loss, or sum(per_sample) for none; with ``frozen``
    (the correction and the base inputs), the loss with the term its gradient holds constant frozen."""
    result = evaluate(loss, inputs, params, reduction=reduction, weights=weights, gradients=False)
    if frozen is None:
        return float(np.sum(result.loss))
    correction, base = frozen
    per_sample = result.per_sample + correction(inputs, base, params)
    w = np.ones(len(per_sample)) if weights is None else weights
    total = float(np.sum(w * per_sample))
    return total / float(np.sum(w)) if reduction == "mean" else total


def finite_difference(
    loss: str,
    inputs: Arrays,
    name: str,
    params: dict[str, Any],
    reduction: str,
    weights: np.ndarray | None,
    h: float,
    frozen: Frozen | None = None,
) -> np.ndarray:
    x = inputs[name]
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        values = []
        for step in (h, -h):
            moved = x.copy()
            moved[index] += step
            hold = None if frozen is None else (frozen, inputs)
            values.append(scalar(loss, {**inputs, name: moved}, params, reduction, weights, hold))
        gradient[index] = (values[0] - values[1]) / (2 * h)
    return gradient


@pytest.mark.parametrize("loss", [spec.name for spec in REGISTRY if spec.name not in NO_GRADIENTS])
def test_gradients_match_finite_differences(loss: str) -> None:
    case = GRADIENT_CASES.get(loss)
    if case is None:
        pytest.fail(f"{loss} declares no GradientCase (tests/kernels/catalog/): add its finite-difference inputs")
    spec = REGISTRY.get(loss)
    assert spec is not None and spec.differentiable, f"{loss} has no differentiable inputs: declare NoGradients"
    rng = np.random.default_rng(zlib.crc32(loss.encode()))
    failures = []
    for params in param_sets(loss, case):
        inputs = case.inputs(rng, params)
        count = next(iter(inputs.values())).shape[0]
        sample_weights = np.asarray(rng.uniform(0.3, 2.0, count), dtype=np.float64)
        batch_level = spec.is_batch_level(spec.params(**params))
        for reduction, weighted in CONFIGS:
            if weighted and batch_level:  # one value per batch: no sample weights
                continue
            weights = sample_weights if weighted else None
            result = evaluate(loss, inputs, params, reduction=reduction, weights=weights)
            for name in spec.differentiable:
                numeric = finite_difference(loss, inputs, name, params, reduction, weights, case.step, case.frozen)
                analytic = result.gradients[name]
                scale = float(np.max(np.abs(numeric)))
                if not np.allclose(analytic, numeric, rtol=case.rtol, atol=case.atol * scale):
                    error = float(np.max(np.abs(analytic - numeric)) / scale)
                    failures.append(f"{params} {reduction} weighted={weighted} d/d{name}: max error {error:.2e}")
    assert not failures, f"{loss}: gradient != finite differences:\n" + "\n".join(failures)


def test_table_names_registered_losses() -> None:
    unknown = sorted((set(GRADIENT_CASES) | set(NO_GRADIENTS)) - {spec.name for spec in REGISTRY})
    assert not unknown, f"gradient declarations for unknown losses: {unknown}"
    assert not set(GRADIENT_CASES) & set(NO_GRADIENTS), "a loss declares both a GradientCase and NoGradients"


def test_losses_without_gradients_say_so() -> None:
    """Exactly the losses without differentiable inputs are declared NoGradients (none today:
    perceptual has gradients since kernels/backward.py), their card says why, and asking for
    gradients gives none."""
    without = sorted(spec.name for spec in REGISTRY if spec.differentiable == ())
    assert without == sorted(NO_GRADIENTS), "declare a NoGradients case for each loss without gradients, and only them"
    for loss in without:
        spec = REGISTRY.get(loss)
        assert spec is not None
        assert "gradient" in spec.card.summary, f"{loss}'s card summary must say why it has no gradients"
        inputs = NO_GRADIENTS[loss].inputs(np.random.default_rng(0), {})
        for reduction in ("mean", "none"):
            assert evaluate(loss, inputs, reduction=reduction, gradients=True).gradients == {}
