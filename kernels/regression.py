"""Regression losses: element-wise in the residual d = predictions - targets (or, for the
likelihood losses, in a predicted rate, mean and variance)."""

import math
from typing import Annotated, Self

import numpy as np
from onnx import TensorProto, helper
from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field, model_validator

from kernels.curves import Curve, prediction, residual
from kernels.ops import LOSSD, log1p, select, softplus
from kernels.spec import Card, Input, KernelFunction, Params, Properties, loss


def exact(name: str, value: float) -> object:
    """A float64 constant for ``op.CastLike(op.Constant(value=...), x)``: exact in a float64
    graph and correctly rounded in a float32 one (a float literal in a kernel is a float32
    constant, e.g. 1e-7 would be 1.0000000117e-7 in float64)."""
    return helper.make_tensor(name, TensorProto.DOUBLE, [], [value])


KERAS_EPSILON = exact("keras_epsilon", 1e-7)
"""keras.backend.epsilon(), the fixed clamp of Keras's MSLE and MAPE (they take no eps)."""
HALF_LOG_2PI = exact("half_log_2pi", 0.5 * math.log(2.0 * math.pi))

PAIR = (
    Input("predictions", ("N", "..."), "real", "Predicted values.", differentiable=True),
    Input("targets", ("N", "..."), "real", "Observed values, same shape as predictions."),
)


@script(LOSSD, default_opset=op)
def mse_kernel(predictions, targets):  # type: ignore[no-untyped-def]
    d = predictions - targets
    return d * d, d + d


@loss(
    name="mse",
    curve=residual(),
    aliases=("mean_squared_error", "l2"),
    task="regression",
    inputs=PAIR,
    properties=Properties(
        robust_to_outliers=False,
        smooth_gradient=True,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation="Gaussian negative log-likelihood with fixed variance (up to constants); "
        "its minimiser is the conditional mean.",
    ),
    card=Card(
        title="Mean squared error",
        summary="Average squared residual. Penalises large errors quadratically, so a few outliers can dominate.",
        formula=r"\ell(\hat y, y) = (\hat y - y)^2",
        use_cases=(
            "Regression with roughly Gaussian noise",
            "Default choice when large errors should cost much more than small ones",
        ),
        equivalents={"torch": "torch.nn.MSELoss", "keras": "keras.losses.MeanSquaredError"},
        references=("Gauss, C. F. (1809). Theoria motus corporum coelestium.",),
    ),
)
def mse() -> KernelFunction:
    return mse_kernel


@script(LOSSD, default_opset=op)
def mae_kernel(predictions, targets):  # type: ignore[no-untyped-def]
    d = predictions - targets
    return op.Abs(d), op.Sign(d)


@loss(
    name="mae",
    curve=residual(),
    aliases=("mean_absolute_error", "l1"),
    task="regression",
    inputs=PAIR,
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=True,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation="Laplace negative log-likelihood (up to constants); "
        "its minimiser is the conditional median.",
    ),
    card=Card(
        title="Mean absolute error",
        summary="Average absolute residual. Every error costs in proportion to its size, so outliers pull less "
        "than with MSE; the gradient has constant magnitude and jumps at zero residual (PyTorch's subgradient 0 "
        "is used there).",
        formula=r"\ell(\hat y, y) = |\hat y - y|",
        use_cases=("Regression with heavy-tailed noise or outliers", "Predicting a median"),
        equivalents={"torch": "torch.nn.L1Loss", "keras": "keras.losses.MeanAbsoluteError"},
        references=("Laplace, P.-S. (1774). Mémoire sur la probabilité des causes par les événements.",),
    ),
)
def mae() -> KernelFunction:
    return mae_kernel


class HuberParams(Params):
    delta: float = Field(1.0, gt=0, description="Residual size where the loss turns from quadratic to linear.")


@script(LOSSD, default_opset=op)
def huber_kernel(predictions, targets, delta):  # type: ignore[no-untyped-def]
    d = predictions - targets
    z = op.Abs(d)
    m = op.Min(z, delta)  # z where the quadratic branch is taken, and no overflow where it is not
    quadratic = 0.5 * m * m
    linear = delta * (z - 0.5 * delta)
    return select(op.Less(z, delta), quadratic, linear), op.Clip(d, op.Neg(delta), delta)


@loss(
    name="huber",
    curve=residual(),
    aliases=("smooth_mae",),
    task="regression",
    inputs=PAIR,
    params=HuberParams,
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=True,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Huber loss",
        summary="Quadratic for residuals below delta and linear beyond: MSE's behaviour near the optimum with "
        "MAE's bounded gradient for outliers. Its gradient is the residual clipped to [-delta, delta].",
        formula=r"\ell = \begin{cases} \tfrac12 d^2 & |d| < \delta \\ \delta(|d| - \tfrac12\delta) & "
        r"\text{otherwise} \end{cases},\quad d = \hat y - y",
        use_cases=("Regression with occasional outliers", "Bounding-box regression", "Robust value targets in RL"),
        equivalents={
            "torch": "torch.nn.HuberLoss(delta)",
            "keras": "keras.losses.Huber(delta)",
            "note": "Equals delta * torch.nn.SmoothL1Loss(beta=delta).",
        },
        references=("Huber, P. J. (1964). Robust Estimation of a Location Parameter. Ann. Math. Statist.",),
    ),
)
def huber() -> KernelFunction:
    return huber_kernel


@script(LOSSD, default_opset=op)
def log_cosh_kernel(predictions, targets):  # type: ignore[no-untyped-def]
    d = predictions - targets
    # log(cosh(d)) = d + softplus(-2d) - log 2, which cannot overflow. log 2 is computed in
    # the graph's dtype: a literal would be a float32 constant (1.9e-9 off in float64).
    return d + softplus(-2.0 * d) - op.Log(op.CastLike(2.0, d)), op.Tanh(d)


@loss(
    name="log_cosh",
    curve=residual(-5.0, 5.0),
    aliases=("logcosh",),
    task="regression",
    inputs=PAIR,
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=True,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation="Negative log-likelihood of the hyperbolic-secant distribution (up to constants).",
    ),
    card=Card(
        title="Log-cosh loss",
        summary="Logarithm of the hyperbolic cosine of the residual: about d^2/2 for small residuals and "
        "|d| - log 2 for large ones, twice differentiable everywhere, with gradient tanh(d) bounded by 1.",
        formula=r"\ell = \log\cosh(\hat y - y)",
        use_cases=("Regression with outliers where a smooth second derivative matters",),
        equivalents={
            "keras": "keras.losses.LogCosh",
            "torch": "none (torch.log(torch.cosh(d)) overflows for |d| > 89)",
        },
        references=(
            "Chen, P., Chen, G., Zhang, S. (2019). Log Hyperbolic Cosine Loss Improves Variational Auto-Encoder.",
        ),
    ),
)
def log_cosh() -> KernelFunction:
    return log_cosh_kernel


class SmoothL1Params(Params):
    beta: float = Field(
        1.0, ge=0, description="Residual size where the loss turns from quadratic to linear; 0 gives L1 (MAE)."
    )


@script(LOSSD, default_opset=op)
def smooth_l1_kernel(predictions, targets, beta):  # type: ignore[no-untyped-def]
    d = predictions - targets
    z = op.Abs(d)
    quadratic = op.Less(z, beta)  # never true for beta = 0: then exactly L1
    # d / beta where the quadratic branch is taken (d clipped to beta is d there, and keeps the
    # other branch from overflowing); beta = 0 is never divided by.
    divisor = op.Where(op.Greater(beta, op.CastLike(0.0, beta)), beta, op.CastLike(1.0, beta))
    q = op.Clip(d, op.Neg(beta), beta) / divisor
    return select(quadratic, 0.5 * d * q, z - 0.5 * beta), select(quadratic, q, op.Sign(d))


@loss(
    name="smooth_l1",
    task="regression",
    inputs=PAIR,
    params=SmoothL1Params,
    curve=residual(),
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=True,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Smooth L1 loss",
        summary="Quadratic (d^2 / 2beta) for residuals below beta and linear (|d| - beta/2) beyond: Huber loss "
        "divided by its delta, so the linear part always has slope 1 whatever beta. Its gradient is the residual "
        "over beta clipped to [-1, 1]. beta = 0 is exactly L1 (MAE), gradient sign(d) with 0 at d = 0, and is "
        "then neither differentiable nor smooth; the properties are those of the default beta = 1.",
        formula=r"\ell = \begin{cases} \tfrac{1}{2\beta} d^2 & |d| < \beta \\ |d| - \tfrac12\beta & "
        r"\text{otherwise} \end{cases},\quad d = \hat y - y",
        use_cases=(
            "Bounding-box regression (Fast R-CNN, SSD)",
            "Regression with outliers where the linear part should have unit slope",
        ),
        equivalents={
            "torch": "torch.nn.SmoothL1Loss(beta) (beta = 0: torch calls L1Loss; here the same values and gradient)",
            "keras": "none; keras.losses.Huber(delta=beta) / beta",
            "note": "Huber_delta = delta * SmoothL1_{beta=delta}.",
        },
        references=("Girshick, R. (2015). Fast R-CNN. ICCV.",),
    ),
)
def smooth_l1() -> KernelFunction:
    return smooth_l1_kernel


@script(LOSSD, default_opset=op)
def msle_kernel(predictions, targets):  # type: ignore[no-untyped-def]
    eps = op.CastLike(op.Constant(value=KERAS_EPSILON), predictions)
    a = op.Max(predictions, eps)
    b = op.Max(targets, eps)
    # |log(1 + a) - log(1 + b)| = log1p(|a - b| / (1 + min(a, b))): no cancellation when a is
    # close to b, and no 1 + z near 0 when one is much smaller than the other.
    d = a - b
    r = log1p(op.Abs(d) / (op.Min(a, b) + 1.0))
    inside = op.GreaterOrEqual(predictions, eps)  # the clamp lets the prediction through
    return r * r, (r + r) * op.Sign(d) / (a + 1.0) * op.CastLike(inside, r)


@loss(
    name="msle",
    task="regression",
    inputs=PAIR,
    curve=prediction(2.0, -1.0, 8.0, "prediction (target 2)"),
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=False,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation="Gaussian negative log-likelihood of log(1 + y) (up to constants): a "
        "log-normal model of 1 + y, whose minimiser is the conditional geometric mean of 1 + y, minus 1.",
    ),
    card=Card(
        title="Mean squared logarithmic error",
        summary="Squared difference of log(1 + value), after clamping predictions and targets to at least "
        "eps = 1e-7 (Keras's fixed epsilon; the loss takes no params): relative errors count, so it suits "
        "positive targets spanning orders of magnitude, and under-prediction costs more than over-prediction. "
        "The gradient is 0 where the clamp binds (predictions below eps), so it jumps at prediction = eps for any "
        "target above eps: not differentiable there. Not convex: concave beyond prediction = e(1 + y) - 1, where "
        "the gradient decays like log(prediction) / prediction (hence robust: bounded gradient).",
        formula=r"\ell = \left(\log(1 + \max(\hat y, \epsilon)) - \log(1 + \max(y, \epsilon))\right)^2,"
        r"\quad \epsilon = 10^{-7}",
        use_cases=(
            "Positive targets spanning orders of magnitude (prices, counts, durations)",
            "When relative rather than absolute errors matter",
        ),
        equivalents={
            "keras": "keras.losses.MeanSquaredLogarithmicError",
            "torch": "none; (torch.log1p(x.clamp(min=1e-7)) - torch.log1p(y.clamp(min=1e-7))) ** 2",
            "note": "Keras converts this loss's epsilon without a dtype (float32), and on its torch backend "
            "maximum(float64 input, float32 epsilon) is float32: Keras computes float64 inputs in float32. We compute "
            "in the requested dtype, clamping at 1e-7 in that dtype, and as log1p(|a - b| / (1 + min(a, b))), which "
            "keeps full relative precision where prediction and target are close (a direct difference of logs loses "
            "it, e.g. 1e-3 relative error in float32 at 1e-5 relative distance).",
        },
        references=("Keras documentation: keras.losses.MeanSquaredLogarithmicError.",),
    ),
)
def msle() -> KernelFunction:
    return msle_kernel


@script(LOSSD, default_opset=op)
def mape_kernel(predictions, targets):  # type: ignore[no-untyped-def]
    eps = op.CastLike(op.Constant(value=KERAS_EPSILON), predictions)
    scale = 100.0 / op.Max(op.Abs(targets), eps)
    d = predictions - targets
    return op.Abs(d) * scale, op.Sign(d) * scale


@loss(
    name="mape",
    task="regression",
    inputs=PAIR,
    curve=prediction(2.0, -1.5, 1.5, "relative error (prediction - target) / |target| (target 2)", 2.0, 2.0),
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=True,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation="Laplace negative log-likelihood with scale proportional to |y| (up to "
        "constants); its minimiser is a weighted median, which favours under-prediction.",
    ),
    card=Card(
        title="Mean absolute percentage error",
        summary="Absolute error as a percentage of the target: 100 |y - prediction| / max(|y|, eps), eps = 1e-7 "
        "(Keras's fixed epsilon; the loss takes no params). For a fixed target it is MAE scaled by 100/|y|: "
        "convex, bounded gradient, a kink at prediction = y (subgradient 0 there). Targets near 0 get huge "
        "weights (1e9 per unit at y = 0), and under-prediction is bounded by 100% while over-prediction is not.",
        formula=r"\ell = 100\,\frac{|y - \hat y|}{\max(|y|, \epsilon)},\quad \epsilon = 10^{-7}",
        use_cases=(
            "Forecasting, where errors are reported relative to the actual value",
            "Comparing errors across series of different scales (targets away from 0)",
        ),
        equivalents={
            "keras": "keras.losses.MeanAbsolutePercentageError",
            "torch": "none; 100 * torch.nn.functional.l1_loss(x, y, reduction='none') / y.abs().clamp(min=1e-7)",
        },
        references=(
            "Hyndman, R. J., Koehler, A. B. (2006). Another look at measures of forecast accuracy. Int. J. "
            "Forecasting.",
        ),
    ),
)
def mape() -> KernelFunction:
    return mape_kernel


class PoissonParams(Params):
    log_input: bool = Field(
        True, description="Predictions are log-rates (loss exp(x) - y x); false: rates >= 0 (x - y log(x + eps))."
    )
    full: bool = Field(
        False,
        description="Add Stirling's approximation of log(y!), y log y - y + log(2 pi y)/2, for targets above 1: "
        "the full negative log-likelihood (approximately).",
    )
    eps: float = Field(1e-8, gt=0, description="Added to rates before the logarithm (log_input false only).")


@script(LOSSD, default_opset=op)
def stirling(targets):  # type: ignore[no-untyped-def]
    """torch's full term: y log y - y + log(2 pi y) / 2 where y > 1, else 0."""
    above = op.Greater(targets, op.CastLike(1.0, targets))
    y = op.Max(targets, op.CastLike(1.0, targets))  # y where the term is kept; log(0) nowhere
    log_y = op.Log(y)
    term = y * (log_y - 1.0) + (0.5 * log_y + op.CastLike(op.Constant(value=HALF_LOG_2PI), targets))
    return term * op.CastLike(above, targets)


@script(LOSSD, default_opset=op)
def poisson_log_rate(predictions, targets):  # type: ignore[no-untyped-def]
    rate = op.Exp(predictions)
    return rate - targets * predictions, rate - targets


@script(LOSSD, default_opset=op)
def poisson_log_rate_full(predictions, targets):  # type: ignore[no-untyped-def]
    rate = op.Exp(predictions)
    return rate - targets * predictions + stirling(targets), rate - targets


@script(LOSSD, default_opset=op)
def poisson_rate(predictions, targets, eps):  # type: ignore[no-untyped-def]
    shifted = predictions + eps
    return predictions - targets * op.Log(shifted), 1.0 - targets / shifted


@script(LOSSD, default_opset=op)
def poisson_rate_full(predictions, targets, eps):  # type: ignore[no-untyped-def]
    shifted = predictions + eps
    return predictions - targets * op.Log(shifted) + stirling(targets), 1.0 - targets / shifted


@loss(
    name="poisson_nll",
    aliases=("poisson",),
    task="regression",
    inputs=(
        Input(
            "predictions",
            ("N", "..."),
            "nonnegative",
            "Predicted log-rates (any real); rates >= 0 when log_input is false.",
            differentiable=True,
            relaxed_by="log_input",
        ),
        Input("targets", ("N", "..."), "nonnegative", "Observed counts >= 0 (need not be integers)."),
    ),
    params=PoissonParams,
    curve=prediction(2.0, -2.0, 3.0, "predicted log-rate (target 2)"),
    properties=Properties(
        robust_to_outliers=False,
        smooth_gradient=False,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation="Poisson negative log-likelihood of the targets (without the log(y!) "
        "constant unless full); its minimiser is the conditional mean count.",
    ),
    card=Card(
        title="Poisson negative log-likelihood",
        summary="Negative log-likelihood of counts under a Poisson distribution with the predicted rate. By "
        "default predictions are log-rates: exp(x) - y x, convex in x, minimal at x = log y, with gradient "
        "exp(x) - y, which grows exponentially (not robust, not Lipschitz; overflows beyond x = 88 in float32, "
        "709 in float64). With log_input false predictions are rates: x - y log(x + eps). full adds Stirling's "
        "approximation of log(y!) for y > 1 (a constant in the predictions). Targets must be >= 0, and so must "
        "rates.",
        formula=r"\ell = e^{x} - y\,x \;\text{(log\_input)},\quad \ell = x - y \log(x + \epsilon)\;\text{(rates)}"
        r";\quad \text{full: } + \left[y \log y - y + \tfrac12\log(2\pi y)\right]_{y > 1}",
        use_cases=("Count regression (events, arrivals, photon counts)", "Generalised linear models with a log link"),
        equivalents={
            "torch": "torch.nn.PoissonNLLLoss(log_input, full, eps)",
            "keras": "keras.losses.Poisson = ours with log_input=false, eps=1e-7 (rates)",
            "note": "torch accepts negative targets silently; we answer 422.",
        },
        references=("McCullagh, P., Nelder, J. A. (1989). Generalized Linear Models, 2nd ed. Chapman & Hall.",),
    ),
)
def poisson_nll(log_input: bool, full: bool) -> KernelFunction:
    if log_input:
        return poisson_log_rate_full if full else poisson_log_rate
    return poisson_rate_full if full else poisson_rate


class GaussianNLLParams(Params):
    full: bool = Field(False, description="Add the constant log(2 pi)/2: the full Gaussian negative log-likelihood.")
    eps: float = Field(
        1e-6, gt=0, description="Variances are clamped to at least eps (the gradient passes through, as in torch)."
    )


@script(LOSSD, default_opset=op)
def gaussian_nll_terms(predictions, targets, variance, eps):  # type: ignore[no-untyped-def]
    """(log v + d^2 / v) / 2 with v = max(variance, eps), and its gradients in the mean and the
    variance; the variance's goes straight through the clamp (torch clamps under no_grad)."""
    v = op.Max(variance, eps)
    d = predictions - targets
    q = d / v
    return 0.5 * (op.Log(v) + d * q), q, (0.5 - 0.5 * q * d) / v


@script(LOSSD, default_opset=op)
def gaussian_nll_kernel(predictions, targets, variance, eps):  # type: ignore[no-untyped-def]
    elements, grad_mean, grad_variance = gaussian_nll_terms(predictions, targets, variance, eps)
    return elements, grad_mean, grad_variance


@script(LOSSD, default_opset=op)
def gaussian_nll_full_kernel(predictions, targets, variance, eps):  # type: ignore[no-untyped-def]
    elements, grad_mean, grad_variance = gaussian_nll_terms(predictions, targets, variance, eps)
    return elements + op.CastLike(op.Constant(value=HALF_LOG_2PI), elements), grad_mean, grad_variance


def _unit_residual_variance(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"predictions": np.ones((x.size, 1)), "targets": np.zeros((x.size, 1)), "variance": x[:, None]}


@loss(
    name="gaussian_nll",
    task="regression",
    inputs=(
        Input("predictions", ("N", "..."), "real", "Predicted means.", differentiable=True),
        Input("targets", ("N", "..."), "real", "Observed values, same shape as predictions."),
        Input(
            "variance",
            ("N", "..."),
            "nonnegative",
            "Predicted variances >= 0, same shape as predictions (clamped to at least eps).",
            differentiable=True,
        ),
    ),
    params=GaussianNLLParams,
    curve=Curve(
        "predicted variance (residual 1)",
        0.05,
        5.0,
        inputs=_unit_residual_variance,
        direction=lambda x: {"variance": np.ones((x.size, 1))},
    ),
    properties=Properties(
        robust_to_outliers=False,
        smooth_gradient=False,
        convex=False,
        differentiable=True,
        bounded_below=False,
        probabilistic_interpretation="Gaussian negative log-likelihood with a predicted mean and variance "
        "(heteroscedastic regression), without the log(2 pi)/2 constant unless full.",
    ),
    card=Card(
        title="Gaussian negative log-likelihood",
        summary="Negative log-likelihood of the targets under a Gaussian with predicted mean and variance, so a "
        "model learns its own uncertainty: (log v + d^2 / v) / 2, v = max(variance, eps). Gradients for the mean "
        "(d / v) and the variance ((1 - d^2 / v) / 2v); as in torch the clamp acts on the value only, the "
        "variance's gradient passes through it unchanged. For a fixed variance it is convex in the mean (MSE / 2v), "
        "but it is not convex in the variance (concave beyond v = 2 d^2), hence not jointly; the gradient is not "
        "bounded (d / v) nor Lipschitz near v = 0. Unbounded below as the variance collapses onto an exact "
        "prediction (log v -> -inf); only the clamp stops it, at log(eps)/2 = -6.9 for the default eps. Negative "
        "variances are a 422 (torch raises).",
        formula=r"\ell = \tfrac12\left(\log v + \frac{(\hat\mu - y)^2}{v}\right),\ v = \max(\sigma^2, \epsilon)"
        r";\quad \text{full: } + \tfrac12\log 2\pi",
        use_cases=(
            "Regression that predicts its own uncertainty (heteroscedastic noise)",
            "Probabilistic forecasting, deep ensembles",
        ),
        equivalents={
            "torch": "torch.nn.GaussianNLLLoss(full, eps) with var of the predictions' shape (torch also broadcasts "
            "a var with one fewer or one size-1 dimension; send it expanded here)",
            "keras": "none",
        },
        references=(
            "Nix, D. A., Weigend, A. S. (1994). Estimating the mean and variance of the target probability "
            "distribution. ICNN.",
            "Lakshminarayanan, B., Pritzel, A., Blundell, C. (2017). Simple and Scalable Predictive Uncertainty "
            "Estimation using Deep Ensembles. NeurIPS.",
        ),
    ),
)
def gaussian_nll(full: bool) -> KernelFunction:
    return gaussian_nll_full_kernel if full else gaussian_nll_kernel


class QuantileParams(Params):
    quantile: float = Field(
        0.5,
        ge=0,
        le=1,
        description="The quantile tau to estimate: under-prediction costs tau per unit, over-prediction 1 - tau "
        "(0 and 1: one-sided).",
    )
    quantiles: list[Annotated[float, Field(ge=0, le=1)]] | None = Field(
        None,
        min_length=1,
        description="Several quantiles at once, one per column of the predictions' last axis (length Q): "
        "predictions (N, ..., Q) against targets of the same shape, or with one axis fewer (repeated per column). "
        "Replaces quantile.",
    )

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if self.quantiles is not None and "quantile" in self.model_fields_set:
            raise ValueError("give either quantile or quantiles, not both")
        return self


@script(LOSSD, default_opset=op)
def pinball(d, quantile):  # type: ignore[no-untyped-def]
    # slope 1 - tau above the target, -tau at or below it (TF's max picks tau * delta at a tie)
    slope = op.CastLike(op.Greater(d, op.CastLike(0.0, d)), d) - quantile  # 1 - tau or 0 - tau, exactly
    return slope * d, slope


@script(LOSSD, default_opset=op)
def quantile_kernel(predictions, targets, quantile):  # type: ignore[no-untyped-def]
    elements, slope = pinball(predictions - targets, quantile)
    return elements, slope


@script(LOSSD, default_opset=op)
def quantiles_kernel(predictions, targets, quantiles):  # type: ignore[no-untyped-def]
    # the graph merges the "..." axes into one: the Q quantiles repeat along it, one per column
    taus = op.Tile(quantiles, op.Div(op.Shape(predictions, start=1, end=2), op.Shape(quantiles)))
    elements, slope = pinball(predictions - targets, taus)
    return elements, slope


@loss(
    name="quantile",
    aliases=("pinball",),
    task="regression",
    inputs=(
        PAIR[0],
        Input(
            "targets",
            ("N", "..."),
            "real",
            "Observed values, same shape as predictions; with quantiles also one axis fewer (each target then "
            "stands for every column).",
            repeats_along_last=True,
        ),
    ),
    params=QuantileParams,
    curve=residual(),
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=True,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation="Asymmetric Laplace negative log-likelihood (up to constants); its "
        "minimiser is the conditional tau-quantile.",
    ),
    card=Card(
        title="Quantile (pinball) loss",
        summary="Asymmetric absolute error whose minimiser is the tau-quantile: with delta = y - prediction, "
        "tau * delta when under-predicting (delta > 0) and (tau - 1) * delta when over-predicting. tau = 0.5 is "
        "half the MAE. Convex with bounded gradient (-tau or 1 - tau), kinked at zero residual, where the gradient "
        "is -tau as TF-Addons' maximum gives it. quantile 0 and 1 are valid and one-sided (only over- or "
        "under-prediction costs). quantiles: several at once, column q of the predictions' last axis scored at "
        "quantiles[q] (predictions (N, Q) for one value per sample), per_sample the mean over the columns; "
        "targets (N,) are repeated per column (TF-Addons broadcasts y_true (N, 1) against tau (Q,) the same way).",
        formula=r"\ell = \max\left(\tau\,\delta, (\tau - 1)\,\delta\right),\quad \delta = y - \hat y",
        use_cases=(
            "Prediction intervals (e.g. the 0.05 and 0.95 quantiles)",
            "Forecasting with asymmetric costs of under- and over-prediction",
        ),
        equivalents={
            "tf-addons": "tfa.losses.PinballLoss(tau) / pinball_loss(y_true, y_pred, tau)",
            "torch": "none; torch.maximum(tau * (y - x), (tau - 1) * (y - x))",
            "keras": "none in Keras 3",
        },
        references=(
            "Koenker, R., Bassett, G. (1978). Regression Quantiles. Econometrica.",
            "Steinwart, I., Christmann, A. (2011). Estimating conditional quantiles with the help of the pinball "
            "loss. Bernoulli.",
        ),
    ),
)
def quantile(quantiles: bool) -> KernelFunction:
    return quantiles_kernel if quantiles else quantile_kernel
