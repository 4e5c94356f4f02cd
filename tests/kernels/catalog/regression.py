"""Test declarations of the regression losses (kernels/regression.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.regression import GaussianNLLParams, HuberParams, SmoothL1Params
from tests.kernels.catalog.base import BOTH, ELEMENT_SHAPES, ONE, Arrays, FdData, Golden, GradientCase, LossInfo
from tests.kernels.catalog.reference import KERAS_EPS, Ctx, F, Tensor, Tensors, in_dtype, keras, torch
from tests.kernels.properties import LogRate, MeanVariance, Real

# -- references (run by the golden generator only) -------------------------------------------------


def ref_mse(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, y = t["predictions"], t["targets"]
    c.check(
        "torch mse_loss(reduction='mean') = our unweighted mean",
        F.mse_loss(x, y).reshape(1),
        F.mse_loss(x, y, reduction="none").mean().reshape(1),
    )
    return F.mse_loss(x, y, reduction="none"), None


def ref_mae(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    return F.l1_loss(t["predictions"], t["targets"], reduction="none"), None


def ref_huber(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    delta = c.f("delta", 1.0)
    x, y = t["predictions"], t["targets"]
    smooth = F.smooth_l1_loss(x, y, reduction="none", beta=delta) * delta
    c.check("huber = delta * smooth_l1_loss(beta=delta)", F.huber_loss(x, y, reduction="none", delta=delta), smooth)
    return F.huber_loss(x, y, reduction="none", delta=delta), None


def ref_log_cosh(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """log(cosh(d)) in float64 torch, accurate everywhere: log1p(2 sinh(d/2)^2) for |d| < 1,
    |d| + log1p(exp(-2|d|)) - log 2 beyond. Keras is only a cross-check: on the torch
    backend its ops.mean (the last-axis mean in keras.losses.log_cosh) computes float64
    inputs in float32, and its softplus (torch's, threshold 20) drops exp(-20) terms."""
    x, y = t["predictions"], t["targets"]
    d = x - y
    a = d.abs()
    small = a < 1
    ds = torch.where(small, d, torch.zeros_like(d))
    out = torch.where(small, torch.log1p(2 * torch.sinh(ds / 2) ** 2), a + torch.log1p(torch.exp(-2 * a)) - np.log(2))
    k = keras.losses.log_cosh(y, x)
    c.check("keras.losses.log_cosh (its last-axis mean runs in float32)", out.mean(-1), k, rtol=1e-6)
    c.check(
        "keras LogCosh() (sum_over_batch_size, float32) = our unweighted mean",
        keras.losses.LogCosh()(y, x).reshape(1),
        out.mean().reshape(1),
        rtol=1e-6,
    )
    return out, None


def ref_smooth_l1(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    beta = c.f("beta", 1.0)
    x, y = t["predictions"], t["targets"]
    out = F.smooth_l1_loss(x, y, reduction="none", beta=beta)
    if beta > 0:
        c.check(
            "huber(delta=beta) = beta * smooth_l1_loss(beta)",
            F.huber_loss(x, y, reduction="none", delta=beta),
            out * beta,
        )
    else:
        c.check("smooth_l1_loss(beta=0) = l1_loss", F.l1_loss(x, y, reduction="none"), out)
    c.check(
        "torch smooth_l1_loss(reduction='mean') = our unweighted mean",
        F.smooth_l1_loss(x, y, beta=beta).reshape(1),
        out.mean().reshape(1),
    )
    return out, None


def ref_msle(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """Keras's formula in torch float64 with its epsilon in the case dtype; Keras itself only
    cross-checks: it converts this loss's epsilon without a dtype, and on the torch backend
    maximum(float64 input, float32 epsilon) is float32, so Keras computes float64 inputs in float32."""
    x, y = t["predictions"], t["targets"]
    eps = torch.tensor(in_dtype(KERAS_EPS, c.dtype), dtype=torch.float64)
    out = (torch.log1p(torch.maximum(x, eps)) - torch.log1p(torch.maximum(y, eps))) ** 2
    if c.dtype == "float64" and bool((out.mean(-1) > 1e-6).all()):
        # Keras's float32 epsilon makes its maximum (and all that follows) float32: where the
        # prediction is within ~1e-3 of the target that loses every digit, so no check there.
        k = keras.losses.mean_squared_logarithmic_error(y, x)
        c.check("keras.losses.mean_squared_logarithmic_error (float32 last-axis mean)", out.mean(-1), k, rtol=1e-6)
    return out, None


def ref_mape(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, y = t["predictions"], t["targets"]
    out = 100.0 * (y - x).abs() / torch.clamp(y.abs(), min=in_dtype(KERAS_EPS, c.dtype))
    if c.dtype == "float64":
        k = keras.losses.mean_absolute_percentage_error(y, x)
        c.check("keras.losses.mean_absolute_percentage_error (float32 last-axis mean)", out.mean(-1), k, rtol=1e-6)
    return out, None


def ref_poisson(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, y = t["predictions"], t["targets"]
    log_input, full = c.params.get("log_input", True), c.params.get("full", False)
    eps = c.f("eps", 1e-8)
    out = F.poisson_nll_loss(x, y, log_input=log_input, full=full, eps=eps, reduction="none")
    c.check(
        "torch poisson_nll_loss(reduction='mean') = our unweighted mean",
        F.poisson_nll_loss(x, y, log_input=log_input, full=full, eps=eps).reshape(1),
        out.mean().reshape(1),
    )
    if not log_input and not full and c.params.get("eps") == KERAS_EPS and c.dtype == "float64":
        k = keras.losses.poisson(y, x)
        c.check("keras.losses.poisson = log_input=False, eps=1e-7 (float32 last-axis mean)", out.mean(-1), k, rtol=1e-6)
    return out, None


def ref_gaussian_nll(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """torch's own function: its clamp of the variance runs under no_grad, so autograd passes
    the variance's gradient straight through it (also below eps)."""
    x, y, var = t["predictions"], t["targets"], t["variance"]
    full, eps = c.params.get("full", False), c.f("eps", 1e-6)
    out = F.gaussian_nll_loss(x, y, var, full=full, eps=eps, reduction="none")
    c.check(
        "torch gaussian_nll_loss(reduction='mean') = our unweighted mean",
        F.gaussian_nll_loss(x, y, var, full=full, eps=eps).reshape(1),
        out.mean().reshape(1),
    )
    return out, None


def ref_quantile(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """TF-Addons pinball_loss's documented formula in torch float64 (TF-Addons needs
    TensorFlow, which is not installable here): delta = y - x, max(tau delta, (tau - 1) delta)."""
    x, y = t["predictions"], t["targets"]
    taus = c.f("quantiles")
    tau = c.f("quantile", 0.5) if taus is None else torch.tensor(taus, dtype=torch.float64)

    def pinball(y_true: Tensor, y_pred: Tensor, tau: float) -> Tensor:
        delta = y_true - y_pred
        return torch.maximum(tau * delta, (tau - 1) * delta)

    example = pinball(
        torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64),
        torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64),
        0.1,
    )
    c.check(
        "TF-Addons docstring example pinball_loss([0,0,1,1], [1,1,1,0], tau=.1) = 0.475",
        example.mean().reshape(1),
        torch.tensor([0.475], dtype=torch.float64),
    )
    if taus is None and tau == 0.5:
        c.check("tau = 0.5 is half of torch l1_loss", pinball(y, x, tau), 0.5 * F.l1_loss(x, y, reduction="none"))
    return pinball(y, x, tau), None


# -- golden inputs ---------------------------------------------------------------------------------


def regression_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    targets = rng.normal(0.0, 2.0, shape)
    residual = rng.normal(0.0, 1.5, shape)
    if kind == "extreme":
        flat = residual.reshape(-1)
        picks = rng.permutation(flat.size)[: flat.size // 2]
        flat[picks] = rng.choice([1e4, -1e4, 1.23e4, -9.9e3, 3e-3, -3e-3], size=picks.size)
    # keep |residual| away from huber's delta (smooth_l1's beta) and from 0 (kinks)
    delta = params.get("delta", params.get("beta", 1.0))
    near = np.abs(np.abs(residual) - delta) < 0.05
    residual[near] += 0.1
    return {"predictions": targets + residual, "targets": targets}


def msle_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Positive targets over orders of magnitude; extreme: predictions and targets clamped by eps
    (negative, 0, below 1e-7) and huge; close: predictions within 1e-4 relative of the targets
    (where log(1 + a) - log(1 + b) would cancel)."""
    y = rng.lognormal(0.0, 1.5, shape)
    if kind == "close":
        return {
            "predictions": y * (1.0 + rng.choice([-1.0, 1.0], shape) * rng.uniform(1e-5, 1e-4, shape)),
            "targets": y,
        }
    x = y * rng.lognormal(0.0, 0.7, shape)
    if kind == "extreme":
        flat_x, flat_y = x.reshape(-1), y.reshape(-1)
        picks = rng.permutation(flat_x.size)[: flat_x.size // 2]
        flat_x[picks] = rng.choice([-3.0, 0.0, 1e-9, 5e-8, 1e-3, 1e4, 3e5], size=picks.size)
        others = rng.permutation(flat_y.size)[: flat_y.size // 3]
        flat_y[others] = rng.choice([-1.0, 0.0, 1e-9, 2.0, 1e4], size=others.size)
    return {"predictions": x, "targets": y}


def mape_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Targets of both signs; extreme: targets 0 and below eps (denominator eps), huge residuals."""
    y = rng.normal(0.0, 2.0, shape)
    r = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.05, 2.0, shape)
    if kind == "extreme":
        flat_y, flat_r = y.reshape(-1), r.reshape(-1)
        picks = rng.permutation(flat_y.size)[: flat_y.size // 2]
        flat_y[picks] = rng.choice([0.0, 1e-9, -3e-8, 1e4, -2e4], size=picks.size)
        flat_r[picks] = rng.choice([1e4, -1e4, 0.5, -3e-3, 3e-3], size=picks.size)
    return {"predictions": y + r, "targets": y}


def poisson_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Counts (with 0, 1 -- the edge of full's y > 1 -- and non-integers) against log-rates, or
    rates >= 0 when log_input is false; extreme: saturated log-rates, zero rates, huge counts."""
    log_rate = rng.normal(0.5, 1.5, shape)
    y = rng.poisson(np.exp(log_rate + rng.normal(0.0, 0.3, shape))).astype(np.float64)
    flat_y = y.reshape(-1)
    flat_y[:3] = [0.0, 1.0, 2.5]
    if kind == "extreme":
        picks = rng.permutation(flat_y.size)[: flat_y.size // 3]
        flat_y[picks] = rng.choice([0.0, 1.0, 1.5, 1e3, 1e5], size=picks.size)
    if params.get("log_input", True):
        x = log_rate
        if kind == "extreme":
            flat_x = x.reshape(-1)
            picks = rng.permutation(flat_x.size)[: flat_x.size // 2]
            flat_x[picks] = rng.choice([-30.0, -5.0, 0.0, 5.0, 20.0, 40.0], size=picks.size)
    else:
        x = np.exp(log_rate)
        if kind == "extreme":
            flat_x = x.reshape(-1)
            picks = rng.permutation(flat_x.size)[: flat_x.size // 2]
            flat_x[picks] = rng.choice([0.0, 1e-9, 1e-3, 5.0, 1e4], size=picks.size)
    return {"predictions": x, "targets": y}


def gaussian_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Means, targets and variances; extreme: variances 0, below, at and far above eps (the clamp,
    through which the variance's gradient passes), residuals from 1e-3 to 1e3."""
    y = rng.normal(0.0, 2.0, shape)
    r = rng.normal(0.0, 1.5, shape)
    var = rng.lognormal(0.0, 1.0, shape)
    if kind == "extreme":
        flat_r, flat_v = r.reshape(-1), var.reshape(-1)
        picks = rng.permutation(flat_v.size)[: flat_v.size // 2]
        flat_v[picks] = rng.choice([0.0, 1e-8, 1e-6, 1e-3, 1e4], size=picks.size)
        flat_r[picks] = rng.choice([1e3, -1e3, 0.5, 1e-3, -2.0], size=picks.size)
    return {"predictions": y + r, "targets": y, "variance": var}


# -- finite-difference inputs ----------------------------------------------------------------------


def signed(rng: np.random.Generator, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, shape)


def fd_regression(low: float, high: float, avoid: float | None = None, param: str = "delta") -> FdData:
    """Residuals with |d| in [low, high], and at least 0.15 away from ``avoid`` (the default of
    huber's delta, or of the param named by ``param``: smooth_l1's beta)."""

    def make(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
        shape = (3, 4)
        targets = rng.normal(0.0, 2.0, shape)
        residual = signed(rng, shape, low, high)
        if avoid is not None:
            delta = params.get(param, avoid)
            near = np.abs(np.abs(residual) - delta) < 0.15
            residual[near] = np.sign(residual[near]) * (delta + 0.3)
        return {"predictions": targets + residual, "targets": targets}

    return make


def fd_msle(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Positive targets (one clamped: negative) and predictions at least 0.01 from the clamp at
    1e-7 (one below it, where the gradient is 0)."""
    shape = (3, 4)
    targets = rng.lognormal(0.0, 1.0, shape)
    targets[0, 0] = -0.5
    predictions = rng.uniform(0.01, 6.0, shape)
    predictions[1, 2] = -0.3
    return {"predictions": predictions, "targets": targets}


def fd_mape(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Targets of both signs with |y| >= 0.2, and one at 0 (denominator eps); |residual| >= 0.1."""
    shape = (3, 4)
    targets = signed(rng, shape, 0.2, 3.0)
    targets[2, 1] = 0.0
    return {"predictions": targets + signed(rng, shape, 0.1, 2.0), "targets": targets}


def fd_poisson(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Counts (0, 1 and non-integers included) against log-rates, or rates >= 0.1."""
    shape = (3, 2, 2)
    targets = rng.poisson(3.0, shape).astype(np.float64)
    targets[0, 0] = [0.0, 1.0]
    targets[1, 0, 0] = 2.5
    log_input = params.get("log_input", True)
    predictions = rng.normal(0.5, 1.0, shape) if log_input else rng.uniform(0.1, 6.0, shape)
    return {"predictions": predictions, "targets": targets}


def fd_gaussian(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Variances well above eps (below it the loss is flat but torch's gradient is not: that
    straight-through gradient is checked against torch autograd by the golden values)."""
    shape = (3, 4)
    targets = rng.normal(0.0, 2.0, shape)
    return {
        "predictions": targets + rng.normal(0.0, 1.5, shape),
        "targets": targets,
        "variance": params.get("eps", 0.0) + rng.uniform(0.2, 3.0, shape),
    }


# -- declarations ----------------------------------------------------------------------------------

LOSSES = (
    LossInfo(
        "mse",
        golden=Golden(
            shapes=ELEMENT_SHAPES,
            reference=ref_mse,
            data=regression_data,
            describe=lambda p: "torch.nn.functional.mse_loss(reduction='none')",
            combos=(({}, BOTH),),
        ),
        gradients=GradientCase(fd_regression(0.0, 3.0)),
        domain=Real(),
    ),
    LossInfo(
        "mae",
        golden=Golden(
            shapes=ELEMENT_SHAPES,
            reference=ref_mae,
            data=regression_data,
            describe=lambda p: "torch.nn.functional.l1_loss(reduction='none')",
            combos=(({}, BOTH),),
        ),
        gradients=GradientCase(fd_regression(0.1, 3.0)),
        domain=Real(),
    ),
    LossInfo(
        "huber",
        golden=Golden(
            shapes=ELEMENT_SHAPES,
            reference=ref_huber,
            data=regression_data,
            describe=lambda p: "torch.nn.functional.huber_loss(reduction='none', delta)",
            combos=(
                ({}, BOTH),
                ({"delta": 0.35}, BOTH),
                ({"delta": 2.5}, ONE),
            ),
        ),
        gradients=GradientCase(fd_regression(0.05, 3.0, avoid=1.0), ({}, {"delta": 0.5}, {"delta": 2.0})),
        domain=Real(kinks=(0.0, -HuberParams().delta, HuberParams().delta)),
    ),
    LossInfo(
        "log_cosh",
        golden=Golden(
            shapes=ELEMENT_SHAPES,
            reference=ref_log_cosh,
            data=regression_data,
            describe=lambda p: (
                "formula log(cosh(d)) in torch float64 (log1p(2 sinh(d/2)^2) for |d| < 1, |d| + log1p(exp(-2|d|)) - "
                "log 2 beyond), cross-checked against keras.losses.log_cosh at 1e-6: Keras 3 on the torch backend "
                "computes its last-axis mean in float32, so it cannot serve as a float64 golden"
            ),
            combos=(({}, BOTH),),
        ),
        gradients=GradientCase(fd_regression(0.0, 4.0)),
        domain=Real(),
    ),
    LossInfo(
        "smooth_l1",
        golden=Golden(
            shapes=ELEMENT_SHAPES,
            reference=ref_smooth_l1,
            data=regression_data,
            describe=lambda p: "torch.nn.functional.smooth_l1_loss(reduction='none', beta)",
            combos=(
                ({}, BOTH),
                ({"beta": 0.35}, BOTH),
                ({"beta": 2.5}, ONE),
                ({"beta": 0.0}, BOTH),
            ),
        ),
        gradients=GradientCase(
            fd_regression(0.05, 3.0, avoid=1.0, param="beta"), ({}, {"beta": 0.5}, {"beta": 2.0}, {"beta": 0.0})
        ),
        domain=Real(kinks=(0.0, -SmoothL1Params().beta, SmoothL1Params().beta)),
    ),
    LossInfo(
        "msle",
        golden=Golden(
            shapes=ELEMENT_SHAPES,
            reference=ref_msle,
            data=msle_data,
            describe=lambda p: (
                "formula of keras.losses.mean_squared_logarithmic_error, (log1p(max(x, eps)) - log1p(max(y, eps)))^2 "
                "with eps = 1e-7 in the case dtype, torch float64; cross-checked against Keras at 1e-6 where the "
                "loss is not tiny (Keras 3 converts this loss's epsilon without a dtype, and on the torch backend "
                "maximum(float64, float32 epsilon) is float32: Keras computes float64 inputs in float32, so it "
                "cannot serve as a golden)"
            ),
            combos=(({}, ("random", "extreme", "close")),),
        ),
        gradients=GradientCase(fd_msle),
        # Keras's clamp at eps = 1e-7 (predictions below it are flat); non-negative targets, what MSLE is for
        domain=Real(at=(1e-7,), targets=(0.0, 100.0)),
    ),
    LossInfo(
        "mape",
        golden=Golden(
            shapes=ELEMENT_SHAPES,
            reference=ref_mape,
            data=mape_data,
            describe=lambda p: (
                "formula of keras.losses.mean_absolute_percentage_error, 100 |y - x| / max(|y|, eps) with eps = 1e-7 "
                "in the case dtype, torch float64; cross-checked against Keras at 1e-6 (its last-axis mean runs in "
                "float32 on the torch backend)"
            ),
            combos=(({}, BOTH),),
        ),
        gradients=GradientCase(fd_mape),
        domain=Real(),
    ),
    LossInfo(
        "poisson_nll",
        golden=Golden(
            shapes=ELEMENT_SHAPES,
            reference=ref_poisson,
            data=poisson_data,
            describe=lambda p: "torch.nn.functional.poisson_nll_loss(log_input, full, eps, reduction='none')",
            combos=(
                ({}, BOTH),
                ({"full": True}, BOTH),
                ({"log_input": False}, BOTH),
                ({"log_input": False, "full": True}, ONE),
                ({"log_input": False, "eps": 1e-7}, ONE),
                ({"log_input": False, "eps": 1e-3}, ONE),
            ),
        ),
        gradients=GradientCase(
            fd_poisson,
            (
                {},
                {"full": True},
                {"log_input": False},
                {"log_input": False, "full": True, "eps": 1e-3},
            ),
        ),
        domain=LogRate(),
    ),
    LossInfo(
        "gaussian_nll",
        golden=Golden(
            shapes=ELEMENT_SHAPES,
            reference=ref_gaussian_nll,
            also_differentiable=("variance",),
            data=gaussian_data,
            describe=lambda p: (
                "torch.nn.functional.gaussian_nll_loss(full, eps, reduction='none') with var of the input's shape; "
                "gradients for input and var from torch autograd (var's passes straight through the clamp)"
            ),
            combos=(
                ({}, BOTH),
                ({"full": True}, BOTH),
                ({"eps": 1e-3}, BOTH),
            ),
        ),
        gradients=GradientCase(fd_gaussian, ({}, {"full": True}, {"eps": 0.5})),
        domain=MeanVariance(eps=GaussianNLLParams().eps),
    ),
    LossInfo(
        "quantile",
        golden=Golden(
            shapes=ELEMENT_SHAPES,
            reference=ref_quantile,
            data=regression_data,
            describe=lambda p: (
                "independent torch float64 implementation of TF-Addons pinball_loss's documented formula, delta = y "
                "- x, max(tau delta, (tau - 1) delta) (TF-Addons needs TensorFlow, not installable here); checked "
                "against its docstring example (0.475); quantiles: tau per column of the last axis"
            ),
            combos=(
                ({}, BOTH),
                ({"quantile": 0.1}, BOTH),
                ({"quantile": 0.9}, ONE),
                ({"quantile": 0.25}, ONE),
                ({"quantile": 0.0}, BOTH),
                ({"quantile": 1.0}, ONE),
                ({"quantiles": "per_class_unit"}, BOTH),
            ),
        ),
        gradients=GradientCase(
            fd_regression(0.05, 3.0),
            ({}, {"quantile": 0.1}, {"quantile": 0.9}, {"quantile": 0.0}, {"quantiles": [0.0, 0.3, 0.9, 1.0]}),
        ),
        domain=Real(),
    ),
)
