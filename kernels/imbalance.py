"""Losses for imbalanced data: focal loss down-weights easy examples."""

from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.curves import probability_of_target
from kernels.ops import LOSSD, binary_smoothed, clip_mask, log1p, logistic
from kernels.spec import Card, Input, Params, Properties, loss


class FocalParams(Params):
    alpha: float = Field(
        0.25, le=1, description="Weight of positives (1 - alpha for negatives); any negative value disables it."
    )
    gamma: float = Field(2.0, ge=0, description="Focusing exponent: 0 gives (alpha-weighted) cross-entropy.")
    from_logits: bool = Field(False, description="Predictions are logits rather than probabilities.")
    label_smoothing: float = Field(0.0, ge=0, le=1, description="Targets become y(1 - s) + s/2.")
    eps: float = Field(1e-7, gt=0, lt=0.5, description="Probabilities are clipped to [eps, 1 - eps].")


@script(LOSSD, default_opset=op)
def focal_weights(y, alpha):  # type: ignore[no-untyped-def]
    """alpha_t = alpha y + (1 - alpha)(1 - y), or 1 for negative alpha."""
    on = op.GreaterOrEqual(alpha, op.CastLike(0.0, alpha))
    a = op.Where(on, alpha, op.CastLike(0.5, alpha))
    scale = op.Where(on, op.CastLike(1.0, alpha), op.CastLike(2.0, alpha))
    return scale * (1.0 - a) + y * (scale * (2.0 * a - 1.0))


@script(LOSSD, default_opset=op)
def focal_logits(predictions, targets, alpha, gamma):  # type: ignore[no-untyped-def]
    y = targets
    alpha_t = focal_weights(y, alpha)
    s, s_neg, softplus_x, softplus_neg_x = logistic(predictions)
    ce = (1.0 - y) * softplus_x + y * softplus_neg_x  # = softplus(x) - x y, without cancellation
    q = y * s_neg + (1.0 - y) * s  # 1 - p_t, computed without cancellation
    modulator = op.Pow(q, gamma)
    # d q^gamma = gamma q^(gamma-1) dq; q is floored so gamma < 1 stays finite at q = 0.
    dq = (1.0 - 2.0 * y) * s * s_neg
    d_modulator = gamma * op.Pow(op.Max(q, op.CastLike(1e-30, q)), gamma - 1.0) * dq
    elements = alpha_t * ce * modulator
    return elements, alpha_t * (((1.0 - y) * s - y * s_neg) * modulator + ce * d_modulator)


@script(LOSSD, default_opset=op)
def focal_probabilities(predictions, targets, alpha, gamma, eps):  # type: ignore[no-untyped-def]
    y = targets
    alpha_t = focal_weights(y, alpha)
    p, inside = clip_mask(predictions, eps)
    ce = op.Neg(y * op.Log(p) + (1.0 - y) * log1p(op.Neg(p)))
    q = y + p * (1.0 - 2.0 * y)
    modulator = op.Pow(q, gamma)
    d_ce = (1.0 - y) / (1.0 - p) - y / p
    d_modulator = gamma * op.Pow(op.Max(q, op.CastLike(1e-30, q)), gamma - 1.0) * (1.0 - 2.0 * y)
    elements = alpha_t * ce * modulator
    return elements, inside * alpha_t * (d_ce * modulator + ce * d_modulator)


@script(LOSSD, default_opset=op)
def focal_logits_smoothed(predictions, targets, alpha, gamma, label_smoothing):  # type: ignore[no-untyped-def]
    elements, gradient = focal_logits(predictions, binary_smoothed(targets, label_smoothing), alpha, gamma)
    return elements, gradient


@script(LOSSD, default_opset=op)
def focal_probabilities_smoothed(predictions, targets, alpha, gamma, label_smoothing, eps):  # type: ignore[no-untyped-def]
    elements, gradient = focal_probabilities(predictions, binary_smoothed(targets, label_smoothing), alpha, gamma, eps)
    return elements, gradient


@loss(
    name="focal",
    curve=probability_of_target(),
    aliases=("sigmoid_focal", "binary_focal"),
    task="imbalance",
    inputs=(
        Input(
            "predictions",
            ("N", "..."),
            "score",
            "Probabilities in [0, 1], or logits when from_logits.",
            differentiable=True,
        ),
        Input("targets", ("N", "..."), "probability", "Binary targets in [0, 1], same shape as predictions."),
    ),
    params=FocalParams,
    properties=Properties(
        robust_to_outliers=False,
        smooth_gradient=False,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Sigmoid focal loss",
        summary="Binary cross-entropy scaled by (1 - p_t)^gamma, so well-classified examples contribute little "
        "and training focuses on hard ones; alpha balances positives against negatives. Convex in "
        "the predicted probability (the default form; tables often call focal loss non-convex) but not in the "
        "logit for gamma > 0, unlike binary cross-entropy. Logits use stable softplus and sigmoid forms.",
        formula=r"\ell = -\alpha_t (1 - p_t)^\gamma \log p_t,\quad p_t = p y + (1-p)(1-y),\ "
        r"\alpha_t = \alpha y + (1-\alpha)(1-y)",
        use_cases=("Dense object detection with extreme foreground/background imbalance", "Rare-event classification"),
        equivalents={
            "torch": "torchvision.ops.sigmoid_focal_loss (logits; alpha < 0 disables weighting)",
            "keras": "keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True) on probabilities; Keras's "
            "from_logits goes through clipped probabilities and saturates (4.03 vs 7.5 at x=-30, y=1); we follow "
            "torchvision",
        },
        references=(
            "Lin, T.-Y., Goyal, P., Girshick, R., He, K., Dollár, P. (2017). Focal Loss for Dense Object "
            "Detection. ICCV.",
        ),
    ),
)
def focal(from_logits: bool, label_smoothing: bool):  # type: ignore[no-untyped-def]
    if label_smoothing:
        return focal_logits_smoothed if from_logits else focal_probabilities_smoothed
    return focal_logits if from_logits else focal_probabilities
