"""float32 reductions over 10M elements stay within 1e-6 relative of a float64 reference.

API.md, "Conventions": "a float32 mean over 10M elements within 1e-6 relative of a
float64 reference". The reference is numpy in float64 on the same float32 inputs
(upcast), so only the kernel's float32 arithmetic and its accumulation are measured.
Each shape puts the 10M elements either in a few long samples (per-sample means over
1M elements) or in many samples (a batch sum over 1M-10M samples).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from kernels import REGISTRY
from tests.kernels.harness import evaluate

ELEMENTS = 10_000_000
RTOL = 1e-6

Reference = Callable[[dict[str, np.ndarray], dict[str, Any]], np.ndarray]
"""float64 element losses (class-wise losses summed over the last axis), shape (N, ...)."""


def mse_inputs(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {
        "predictions": rng.standard_normal(shape, dtype=np.float32),
        "targets": rng.standard_normal(shape, dtype=np.float32),
    }


def mse_reference(inputs: dict[str, np.ndarray], params: dict[str, Any]) -> np.ndarray:
    d = inputs["predictions"].astype(np.float64) - inputs["targets"].astype(np.float64)
    return d * d


def focal_inputs(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    logits = rng.standard_normal(shape, dtype=np.float32)
    logits *= np.float32(3.0)
    targets = (rng.random(shape, dtype=np.float32) < np.float32(0.3)).astype(np.float32)
    return {"predictions": logits, "targets": targets}


def focal_reference(inputs: dict[str, np.ndarray], params: dict[str, Any]) -> np.ndarray:
    """torchvision sigmoid_focal_loss in a cancellation-free float64 form."""
    x = inputs["predictions"].astype(np.float64)
    y = inputs["targets"].astype(np.float64)
    alpha, gamma = params["alpha"], params["gamma"]
    # ce = y softplus(-x) + (1-y) softplus(x); 1 - p_t = y sigmoid(-x) + (1-y) sigmoid(x)
    ce = y * np.logaddexp(0.0, -x) + (1.0 - y) * np.logaddexp(0.0, x)
    one_minus_pt = y / (1.0 + np.exp(x)) + (1.0 - y) / (1.0 + np.exp(-x))
    alpha_t = alpha * y + (1.0 - alpha) * (1.0 - y)
    result: np.ndarray = alpha_t * ce * one_minus_pt**gamma
    return result


def cross_entropy_inputs(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    logits = rng.standard_normal(shape, dtype=np.float32)
    logits *= np.float32(2.0)
    classes = shape[-1]
    labels = rng.integers(0, classes, shape[:-1])
    targets = np.zeros(shape, dtype=np.float32)
    np.put_along_axis(targets, labels[..., None], np.float32(1.0), axis=-1)
    return {"predictions": logits, "targets": targets}


def cross_entropy_reference(inputs: dict[str, np.ndarray], params: dict[str, Any]) -> np.ndarray:
    x = inputs["predictions"].astype(np.float64)
    peak = x.max(axis=-1, keepdims=True)
    log_softmax = x - peak - np.log(np.exp(x - peak).sum(axis=-1, keepdims=True))
    result: np.ndarray = -(inputs["targets"].astype(np.float64) * log_softmax).sum(axis=-1)
    return result


def msle_inputs(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    targets = rng.lognormal(0.0, 2.0, shape).astype(np.float32)
    relative = rng.lognormal(0.0, 0.1, shape).astype(np.float32)  # predictions near the targets
    return {"predictions": targets * relative, "targets": targets}


def msle_reference(inputs: dict[str, np.ndarray], params: dict[str, Any]) -> np.ndarray:
    eps = float(np.float32(1e-7))
    x = np.maximum(inputs["predictions"].astype(np.float64), eps)
    y = np.maximum(inputs["targets"].astype(np.float64), eps)
    result: np.ndarray = (np.log1p(x) - np.log1p(y)) ** 2
    return result


def gaussian_inputs(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {
        "predictions": rng.standard_normal(shape, dtype=np.float32),
        "targets": rng.standard_normal(shape, dtype=np.float32),
        "variance": rng.uniform(0.05, 3.0, shape).astype(np.float32),
    }


def gaussian_reference(inputs: dict[str, np.ndarray], params: dict[str, Any]) -> np.ndarray:
    d = inputs["predictions"].astype(np.float64) - inputs["targets"].astype(np.float64)
    v = np.maximum(inputs["variance"].astype(np.float64), float(np.float32(1e-6)))
    result: np.ndarray = 0.5 * (np.log(v) + d * d / v)
    return result


def mask_inputs(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {
        "predictions": rng.random(shape, dtype=np.float32),
        "targets": (rng.random(shape, dtype=np.float32) < np.float32(0.3)).astype(np.float32),
    }


def dice_reference(inputs: dict[str, np.ndarray], params: dict[str, Any]) -> np.ndarray:
    """MONAI's soft Dice per (sample, class), float64, spatial sums over the last axis."""
    p = inputs["predictions"].astype(np.float64)
    y = inputs["targets"].astype(np.float64)
    tp, total = (p * y).sum(-1), p.sum(-1) + y.sum(-1)
    result: np.ndarray = 1.0 - (2.0 * tp + 1e-5) / (total + 1e-5)
    return result


Inputs = Callable[[np.random.Generator, tuple[int, ...]], dict[str, np.ndarray]]
CASES: list[tuple[str, tuple[int, ...], dict[str, Any], Inputs, Reference]] = [
    ("mse", (10, 1_000_000), {}, mse_inputs, mse_reference),
    ("mse", (10_000_000, 1), {}, mse_inputs, mse_reference),
    ("focal", (10, 1_000_000), {"from_logits": True}, focal_inputs, focal_reference),
    ("focal", (10_000_000,), {"from_logits": True}, focal_inputs, focal_reference),
    ("cross_entropy", (10, 100_000, 10), {"from_logits": True}, cross_entropy_inputs, cross_entropy_reference),
    ("cross_entropy", (1_000_000, 10), {"from_logits": True}, cross_entropy_inputs, cross_entropy_reference),
    ("msle", (10, 1_000_000), {}, msle_inputs, msle_reference),
    ("gaussian_nll", (10, 1_000_000), {}, gaussian_inputs, gaussian_reference),
    ("dice", (10, 2, 500_000), {}, mask_inputs, dice_reference),
    ("dice", (1_000_000, 2, 5), {}, mask_inputs, dice_reference),
]


def relative_error(actual: Any, expected: Any) -> float:
    expected_array = np.asarray(expected, dtype=np.float64)
    error = np.abs(np.asarray(actual, dtype=np.float64) - expected_array) / np.abs(expected_array)
    return float(np.max(error))


@pytest.mark.parametrize(
    ("loss", "shape", "params", "make_inputs", "reference"),
    CASES,
    ids=[f"{case[0]}-{'x'.join(map(str, case[1]))}" for case in CASES],
)
def test_float32_reduction_over_10m_elements(
    loss: str, shape: tuple[int, ...], params: dict[str, Any], make_inputs: Inputs, reference: Reference
) -> None:
    assert int(np.prod(shape)) == ELEMENTS
    rng = np.random.default_rng(sum(shape))
    inputs = make_inputs(rng, shape)
    count = shape[0]
    weights = rng.uniform(0.5, 1.5, count).astype(np.float32)

    elements = reference(inputs, {"alpha": 0.25, "gamma": 2.0, **params})
    per_sample = elements.reshape(count, -1).mean(axis=1)
    del elements
    w = weights.astype(np.float64)
    expected = {
        ("mean", False): per_sample.mean(),
        ("mean", True): (w * per_sample).sum() / w.sum(),
        ("sum", False): per_sample.sum(),
        ("sum", True): (w * per_sample).sum(),
    }
    for (reduction, weighted), value in expected.items():
        result = evaluate(
            loss,
            inputs,
            params,
            reduction=reduction,
            weights=weights if weighted else None,
            dtype="float32",
            gradients=False,
        )
        assert result.loss.dtype == np.float32
        error = relative_error(result.loss, value)
        assert error <= RTOL, f"{loss} {shape} {reduction} weighted={weighted}: relative error {error:.2e}"
        if count <= 10 and (reduction, weighted) == ("mean", False):  # per-sample means over 1M elements
            error = relative_error(result.per_sample, per_sample)
            assert error <= RTOL, f"{loss} {shape} per_sample: relative error {error:.2e}"


def softplus(x: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.logaddexp(0.0, x)
    return result


BATCH_LEVEL: list[tuple[str, dict[str, Any], Callable[[np.ndarray, np.ndarray], float]]] = [
    ("wasserstein", {"mode": "critic"}, lambda real, fake: float(fake.mean() - real.mean())),
    ("adversarial", {}, lambda real, fake: float(softplus(-real).mean() + softplus(fake).mean())),
]


@pytest.mark.parametrize(("loss", "params", "reference"), BATCH_LEVEL, ids=[case[0] for case in BATCH_LEVEL])
def test_float32_batch_level_means_over_10m_scores(
    loss: str, params: dict[str, Any], reference: Callable[[np.ndarray, np.ndarray], float]
) -> None:
    """Batch-level losses average each batch inside the kernel: 4M real and 6M fake float32 scores."""
    rng = np.random.default_rng(10)
    real = rng.standard_normal(4_000_000, dtype=np.float32) * np.float32(3.0) + np.float32(1.0)
    fake = rng.standard_normal(6_000_000, dtype=np.float32) * np.float32(3.0) - np.float32(0.5)
    spec = REGISTRY.get(loss)
    assert spec is not None and spec.batch_level
    inputs = dict(zip([i.name for i in spec.required], (real, fake), strict=True))
    result = evaluate(loss, inputs, params, dtype="float32", gradients=False)
    assert result.loss.dtype == np.float32
    expected = reference(real.astype(np.float64), fake.astype(np.float64))
    error = relative_error(result.loss, expected)
    assert error <= RTOL, f"{loss}: relative error {error:.2e}"
