"""Regression losses: element-wise in the residual d = predictions - targets."""

from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.curves import residual
from kernels.ops import LOSSD, softplus
from kernels.spec import Card, Input, Params, Properties, loss

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
def mse():  # type: ignore[no-untyped-def]
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
def mae():  # type: ignore[no-untyped-def]
    return mae_kernel


class HuberParams(Params):
    delta: float = Field(1.0, gt=0, description="Residual size where the loss turns from quadratic to linear.")


@script(LOSSD, default_opset=op)
def huber_kernel(predictions, targets, delta):  # type: ignore[no-untyped-def]
    d = predictions - targets
    z = op.Abs(d)
    quadratic = 0.5 * d * d
    linear = delta * (z - 0.5 * delta)
    return op.Where(op.Less(z, delta), quadratic, linear), op.Clip(d, op.Neg(delta), delta)


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
def huber():  # type: ignore[no-untyped-def]
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
def log_cosh():  # type: ignore[no-untyped-def]
    return log_cosh_kernel
