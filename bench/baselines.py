"""Straightforward vectorised numpy versions of the registered losses, the kernels' floor.

Each baseline maps the inputs at their natural shapes (and the loss's params) to the
element losses and, when asked, their derivative in ``predictions``; ``evaluate`` applies
the API's reduction (per-sample mean over non-batch axes, weighted mean over samples).
A loss missing from ``NUMPY`` has no baseline and is reported as "n/a".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels.spec import Params

Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Elements:
    """Element losses ``(N, ...)``, ``dE/dpredictions`` (or None), the mean's mass ``(N, ...)``."""

    losses: np.ndarray
    gradient: np.ndarray | None
    mass: np.ndarray | None = None


@dataclass(frozen=True)
class Outputs:
    loss: np.ndarray
    per_sample: np.ndarray
    gradient: np.ndarray | None


Baseline = Callable[[Arrays, Params, bool], Elements]


def param(params: Params, name: str) -> Any:
    return getattr(params, name)


def per_sample_mean(x: np.ndarray) -> np.ndarray:
    mean: np.ndarray = x.reshape(x.shape[0], -1).mean(axis=1)
    return mean


def evaluate(baseline: Baseline, arrays: Arrays, params: Params, weights: np.ndarray, gradients: bool) -> Outputs:
    """Loss (weighted mean), per-sample losses and d(loss)/d(predictions)."""
    e = baseline(arrays, params, gradients)
    per_sample = per_sample_mean(e.losses)
    mass = weights if e.mass is None else weights * per_sample_mean(e.mass)
    denominator = mass.sum()
    loss = np.asarray((weights * per_sample).sum() / denominator)
    if not gradients:
        return Outputs(loss, per_sample, None)
    assert e.gradient is not None
    count = e.losses.size // e.losses.shape[0]
    coef = weights / (denominator * count)
    gradient = e.gradient * coef.reshape(-1, *([1] * (e.gradient.ndim - 1)))
    return Outputs(loss, per_sample, gradient)


def clip(p: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """p clipped to [eps, 1 - eps], and 1 where the clip let p through."""
    return np.clip(p, eps, 1 - eps), ((p >= eps) & (p <= 1 - eps)).astype(p.dtype)


def mse(x: Arrays, params: Params, gradients: bool) -> Elements:
    d = x["predictions"] - x["targets"]
    return Elements(d * d, 2 * d if gradients else None)


def mae(x: Arrays, params: Params, gradients: bool) -> Elements:
    d = x["predictions"] - x["targets"]
    return Elements(np.abs(d), np.sign(d) if gradients else None)


def huber(x: Arrays, params: Params, gradients: bool) -> Elements:
    delta = param(params, "delta")
    d = x["predictions"] - x["targets"]
    z = np.abs(d)
    losses = np.where(z < delta, 0.5 * d * d, delta * (z - 0.5 * delta))
    return Elements(losses, np.clip(d, -delta, delta) if gradients else None)


def log_cosh(x: Arrays, params: Params, gradients: bool) -> Elements:
    d = x["predictions"] - x["targets"]
    losses = d + np.logaddexp(np.zeros_like(d), -2 * d) - math.log(2)
    return Elements(losses, np.tanh(d) if gradients else None)


def binary_cross_entropy(x: Arrays, params: Params, gradients: bool) -> Elements:
    if param(params, "from_logits"):
        raise NotImplementedError("logits")
    y, eps = x["targets"], param(params, "eps")
    pos_weight = param(params, "pos_weight")
    w = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=y.dtype)
    p, inside = clip(x["predictions"], eps)
    losses = -(w * y * np.log(p) + (1 - y) * np.log1p(-p))
    return Elements(losses, inside * ((1 - y) / (1 - p) - w * y / p) if gradients else None)


def focal(x: Arrays, params: Params, gradients: bool) -> Elements:
    if param(params, "from_logits") or param(params, "label_smoothing") or param(params, "alpha") < 0:
        raise NotImplementedError("only the default variant")
    y, alpha, gamma = x["targets"], param(params, "alpha"), param(params, "gamma")
    p, inside = clip(x["predictions"], param(params, "eps"))
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    ce = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    q = y + p * (1 - 2 * y)
    modulator = q**gamma
    losses = alpha_t * ce * modulator
    if not gradients:
        return Elements(losses, None)
    d_ce = (1 - y) / (1 - p) - y / p
    d_modulator = gamma * np.maximum(q, 1e-30) ** (gamma - 1) * (1 - 2 * y)
    return Elements(losses, inside * alpha_t * (d_ce * modulator + ce * d_modulator))


def _categorical(p_raw: np.ndarray, u: np.ndarray, eps: float, gradients: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """-sum_c u_c log q_c over the last axis, q = p renormalised and clipped (Keras)."""
    total = p_raw.sum(axis=-1, keepdims=True)
    q = p_raw / total
    clipped, inside = clip(q, eps)
    losses = -(u * np.log(clipped)).sum(axis=-1)
    if not gradients:
        return losses, None
    g = -u * inside / clipped
    return losses, (g - (g * q).sum(axis=-1, keepdims=True)) / total


def cross_entropy(x: Arrays, params: Params, gradients: bool) -> Elements:
    if param(params, "from_logits") or param(params, "label_smoothing") or param(params, "class_weights"):
        raise NotImplementedError("only the default variant")
    losses, gradient = _categorical(x["predictions"], x["targets"], param(params, "eps"), gradients)
    return Elements(losses, gradient)


def sparse_cross_entropy(x: Arrays, params: Params, gradients: bool) -> Elements:
    if param(params, "from_logits") or param(params, "label_smoothing") or param(params, "class_weights"):
        raise NotImplementedError("only the default variant")
    p, labels = x["predictions"], x["targets"]
    keep = labels != param(params, "ignore_index")
    mass = keep.astype(p.dtype)
    safe = np.where(keep, labels, 0)[..., None]
    total = p.sum(axis=-1, keepdims=True)
    q_y = np.take_along_axis(p, safe, axis=-1) / total
    clipped, inside = clip(q_y, param(params, "eps"))
    losses = -np.log(clipped)[..., 0] * mass
    if not gradients:
        return Elements(losses, None, mass)
    g_y = -mass[..., None] * inside / clipped
    one_hot = safe == np.arange(p.shape[-1])
    return Elements(losses, g_y * (one_hot - q_y) / total, mass)


NUMPY: dict[str, Baseline] = {
    "mse": mse,
    "mae": mae,
    "huber": huber,
    "log_cosh": log_cosh,
    "binary_cross_entropy": binary_cross_entropy,
    "focal": focal,
    "cross_entropy": cross_entropy,
    "sparse_cross_entropy": sparse_cross_entropy,
}
