"""Every loss's analytic gradients against central finite differences, in float64.

For each registered loss the table below gives an input generator that keeps away from
the loss's kinks (zero residual for ``mae``, ``|residual| = delta`` for ``huber``, the
probability clip for probability inputs) and the params to try; ``from_logits`` is
tried both ways wherever the loss has it. Every combination is checked for reductions
``mean`` and ``sum`` with and without sample weights, and ``none`` (whose gradient is
that of each sample's own loss, i.e. of ``sum(per_sample)``; the service refuses
weights with ``none``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from kernels import REGISTRY
from tests.kernels.harness import evaluate

H = 1e-6
RTOL = 1e-6
ATOL = 1e-7
"""Absolute tolerance relative to the largest gradient entry (for entries near zero)."""
CONFIGS = (("mean", False), ("mean", True), ("sum", False), ("sum", True), ("none", False))

Arrays = dict[str, np.ndarray]
Generator = Callable[[np.random.Generator, dict[str, Any]], Arrays]


@dataclass(frozen=True)
class GradientCase:
    inputs: Generator
    params: tuple[dict[str, Any], ...] = field(default=({},))


def signed(rng: np.random.Generator, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, shape)


def regression(low: float, high: float, avoid: float | None = None) -> Generator:
    """Residuals with |d| in [low, high], and at least 0.15 away from ``avoid`` (huber's delta)."""

    def make(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
        shape = (3, 4)
        targets = rng.normal(0.0, 2.0, shape)
        residual = signed(rng, shape, low, high)
        if avoid is not None:
            delta = params.get("delta", avoid)
            near = np.abs(np.abs(residual) - delta) < 0.15
            residual[near] = np.sign(residual[near]) * (delta + 0.3)
        return {"predictions": targets + residual, "targets": targets}

    return make


def binary(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    shape = (3, 2, 4)
    # probabilities stay far from the clip at eps
    x = rng.normal(0.0, 2.0, shape) if params.get("from_logits") else rng.uniform(0.05, 0.95, shape)
    y = rng.integers(0, 2, shape).astype(np.float64)
    y[0, 0, :2] = [0.3, 0.8]  # soft targets too
    return {"predictions": x, "targets": y}


def class_scores(rng: np.random.Generator, params: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
    if params.get("from_logits"):
        return rng.normal(0.0, 2.0, shape)
    return rng.uniform(0.05, 1.0, shape)  # renormalised rows stay well inside the clip


def categorical(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    shape = (3, 2, 4)
    y = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    y[0, 0] = np.eye(shape[-1])[1]
    return {"predictions": class_scores(rng, params, shape), "targets": y}


def sparse(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    shape = (3, 2, 4)
    labels = rng.integers(0, shape[-1], shape[:-1])
    labels[1, 0] = params.get("ignore_index", -100)
    labels[2, 1] = 1  # a label equal to ignore_index=1, where that is tried
    return {"predictions": class_scores(rng, params, shape), "targets": labels}


def masks(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Channel-first maps (N, C, H, W): probabilities inside (0, 1), or logits; masks with soft values and a
    class absent from one sample (its loss stays smooth while sum p is far from 0)."""
    shape = (2, 3, 2, 3)
    logits = params.get("activation", "none") != "none"
    x = rng.normal(0.0, 2.0, shape) if logits else rng.uniform(0.05, 0.95, shape)
    y = (rng.random(shape) < 0.4).astype(np.float64)
    y[0, 0, 0, :2] = [0.3, 0.8]
    y[1, 2] = 0.0
    return {"predictions": x, "targets": y}


def images(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """(N, C, H, W) images in [0, data_range]: a smooth target, a noisy prediction."""
    shape = (2, 1, 11, 12)
    scale = params.get("data_range", 1.0)
    u = np.linspace(0.0, 1.0, shape[2])[:, None] + np.linspace(0.0, 0.5, shape[3])[None, :]
    target = np.clip(0.3 + 0.3 * u + rng.normal(0.0, 0.05, shape), 0.0, 1.0)
    prediction = target + rng.normal(0.0, 0.1, shape)
    return {"predictions": prediction * scale, "targets": target * scale}


CLASS_WEIGHTS = [0.5, 2.0, 1.0, 1.5]
OVERLAP: tuple[dict[str, Any], ...] = (
    {},
    {"activation": "sigmoid", "squared_pred": True},
    {"activation": "softmax", "include_background": False},
    {"activation": "softmax", "squared_pred": True, "smooth_nr": 0.5, "smooth_dr": 1.0},
    {"squared_pred": True, "include_background": False},
)

TABLE: dict[str, GradientCase] = {
    "mse": GradientCase(regression(0.0, 3.0)),
    "mae": GradientCase(regression(0.1, 3.0)),
    "huber": GradientCase(regression(0.05, 3.0, avoid=1.0), ({}, {"delta": 0.5}, {"delta": 2.0})),
    "log_cosh": GradientCase(regression(0.0, 4.0)),
    "binary_cross_entropy": GradientCase(
        binary,
        ({}, {"pos_weight": 2.0, "label_smoothing": 0.1}, {"pos_weight": CLASS_WEIGHTS}),
    ),
    "cross_entropy": GradientCase(
        categorical,
        ({}, {"label_smoothing": 0.1}, {"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.2}),
    ),
    "sparse_cross_entropy": GradientCase(
        sparse,
        ({}, {"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.1}, {"ignore_index": 1, "label_smoothing": 0.1}),
    ),
    "focal": GradientCase(
        binary,
        ({}, {"alpha": -1.0, "gamma": 0.5}, {"gamma": 0.0, "label_smoothing": 0.1}, {"alpha": 0.7, "gamma": 3.0}),
    ),
    "dice": GradientCase(masks, OVERLAP),
    "iou": GradientCase(masks, OVERLAP),
    "tversky": GradientCase(
        masks,
        (
            {},
            {"alpha": 0.3, "beta": 0.7, "activation": "sigmoid"},
            {"alpha": 0.8, "beta": 0.2, "activation": "softmax", "include_background": False},
        ),
    ),
    "ssim": GradientCase(
        images,
        ({}, {"window_size": 7, "sigma": 2.0}, {"window_size": 3, "sigma": 5.0, "data_range": 2.0, "k2": 0.1}),
    ),
}


def param_sets(loss: str, case: GradientCase) -> list[dict[str, Any]]:
    spec = REGISTRY.get(loss)
    assert spec is not None
    if "from_logits" not in spec.params.model_fields:
        return list(case.params)
    return [{**params, "from_logits": logits} for logits in (False, True) for params in case.params]


def scalar(loss: str, inputs: Arrays, params: dict[str, Any], reduction: str, weights: np.ndarray | None) -> float:
    """The value whose gradient the kernel returns: the loss, or sum(per_sample) for none."""
    result = evaluate(loss, inputs, params, reduction=reduction, weights=weights, gradients=False)
    return float(np.sum(result.loss))


def finite_difference(
    loss: str, inputs: Arrays, name: str, params: dict[str, Any], reduction: str, weights: np.ndarray | None
) -> np.ndarray:
    x = inputs[name]
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        values = []
        for step in (H, -H):
            moved = x.copy()
            moved[index] += step
            values.append(scalar(loss, {**inputs, name: moved}, params, reduction, weights))
        gradient[index] = (values[0] - values[1]) / (2 * H)
    return gradient


@pytest.mark.parametrize("loss", [spec.name for spec in REGISTRY])
def test_gradients_match_finite_differences(loss: str) -> None:
    case = TABLE.get(loss)
    if case is None:
        pytest.fail(f"{loss} has no entry in tests/kernels/test_gradients.py TABLE: add an input generator")
    spec = REGISTRY.get(loss)
    assert spec is not None and spec.differentiable, loss
    rng = np.random.default_rng(zlib.crc32(loss.encode()))
    failures = []
    for params in param_sets(loss, case):
        inputs = case.inputs(rng, params)
        count = next(iter(inputs.values())).shape[0]
        sample_weights = np.asarray(rng.uniform(0.3, 2.0, count), dtype=np.float64)
        for reduction, weighted in CONFIGS:
            if weighted and spec.batch_level:  # one value per batch: no sample weights
                continue
            weights = sample_weights if weighted else None
            result = evaluate(loss, inputs, params, reduction=reduction, weights=weights)
            for name in spec.differentiable:
                numeric = finite_difference(loss, inputs, name, params, reduction, weights)
                analytic = result.gradients[name]
                scale = float(np.max(np.abs(numeric)))
                if not np.allclose(analytic, numeric, rtol=RTOL, atol=ATOL * scale):
                    error = float(np.max(np.abs(analytic - numeric)) / scale)
                    failures.append(f"{params} {reduction} weighted={weighted} d/d{name}: max error {error:.2e}")
    assert not failures, f"{loss}: gradient != finite differences:\n" + "\n".join(failures)


def test_table_names_registered_losses() -> None:
    unknown = sorted(set(TABLE) - {spec.name for spec in REGISTRY})
    assert not unknown, f"gradient table entries for unknown losses: {unknown}"
