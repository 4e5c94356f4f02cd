"""Losses for imbalanced data: focal loss down-weights easy examples."""

from dataclasses import replace
from typing import Annotated

from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.classification import CATEGORICAL_PREDICTIONS, SparseCrossEntropyParams, sparse_cross_entropy
from kernels.curves import probability_of_target, probability_of_true_class
from kernels.ops import (
    LOSSD,
    binary_smoothed,
    clip_mask,
    log1p,
    logistic,
    renormalised,
    select,
    smoothed,
    spread,
    through_renormalisation,
)
from kernels.spec import Card, Input, KernelFunction, Params, Properties, loss


class FocalParams(Params):
    alpha: float = Field(
        0.25, le=1, description="Weight of positives (1 - alpha for negatives); any negative value disables it."
    )
    gamma: float = Field(2.0, ge=0, description="Focusing exponent: 0 gives (alpha-weighted) cross-entropy.")
    from_logits: bool = Field(False, description="Predictions are logits rather than probabilities.")
    label_smoothing: float = Field(0.0, ge=0, le=1, description="Targets become y(1 - s) + s/2.")
    eps: float = Field(1e-7, gt=0, lt=0.5, description="Probabilities are clipped to [eps, 1 - eps].")
    class_weights: list[Annotated[float, Field(ge=0)]] | None = Field(
        None,
        min_length=1,
        description="MONAI FocalLoss weight: one non-negative weight per channel (axis 1 of the predictions, "
        "(N, C, ...)), multiplying that channel's losses.",
    )

    def classes(self, shape: tuple[int, ...]) -> int:
        return shape[1] if len(shape) > 1 else 1

    def classes_description(self) -> str:
        return "one per channel (axis 1 of the predictions; 1 for predictions of shape (N,))"


@script(LOSSD, default_opset=op)
def channel_weighted(elements, gradient, class_weights):  # type: ignore[no-untyped-def]
    """Losses and gradients (N, R) of inputs (N, C, *spatial) collapsed to R = C S, each channel's
    scaled by its weight: seen as (N, C, S), with C the number of weights."""
    channels = op.Concat(op.Constant(value_ints=[0]), op.Shape(class_weights), op.Constant(value_ints=[-1]), axis=0)
    w = op.Unsqueeze(op.CastLike(class_weights, elements), op.Constant(value_ints=[-1]))
    shape = op.Shape(elements)
    scaled = op.Reshape(op.Reshape(elements, channels) * w, shape)
    return scaled, op.Reshape(op.Reshape(gradient, channels) * w, shape)


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


@script(LOSSD, default_opset=op)
def focal_logits_weighted(predictions, targets, alpha, gamma, class_weights):  # type: ignore[no-untyped-def]
    elements, gradient = focal_logits(predictions, targets, alpha, gamma)
    weighted, weighted_gradient = channel_weighted(elements, gradient, class_weights)
    return weighted, weighted_gradient


@script(LOSSD, default_opset=op)
def focal_probabilities_weighted(predictions, targets, alpha, gamma, eps, class_weights):  # type: ignore[no-untyped-def]
    elements, gradient = focal_probabilities(predictions, targets, alpha, gamma, eps)
    weighted, weighted_gradient = channel_weighted(elements, gradient, class_weights)
    return weighted, weighted_gradient


@script(LOSSD, default_opset=op)
def focal_logits_smoothed_weighted(predictions, targets, alpha, gamma, label_smoothing, class_weights):  # type: ignore[no-untyped-def]
    elements, gradient = focal_logits_smoothed(predictions, targets, alpha, gamma, label_smoothing)
    weighted, weighted_gradient = channel_weighted(elements, gradient, class_weights)
    return weighted, weighted_gradient


@script(LOSSD, default_opset=op)
def focal_probabilities_smoothed_weighted(predictions, targets, alpha, gamma, label_smoothing, eps, class_weights):  # type: ignore[no-untyped-def]
    elements, gradient = focal_probabilities_smoothed(predictions, targets, alpha, gamma, label_smoothing, eps)
    weighted, weighted_gradient = channel_weighted(elements, gradient, class_weights)
    return weighted, weighted_gradient


WEIGHTED_FOCAL: dict[tuple[bool, bool], KernelFunction] = {
    (True, False): focal_logits_weighted,
    (False, False): focal_probabilities_weighted,
    (True, True): focal_logits_smoothed_weighted,
    (False, True): focal_probabilities_smoothed_weighted,
}
"""Per-channel weights (MONAI's weight) are a variant of their own: unweighted requests keep their graph."""


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
            "monai": "monai.losses.FocalLoss(gamma, alpha, weight, use_softmax=False) = ours with from_logits=true "
            "(MONAI alpha=None: alpha=-1) on (N, C, ...) logits, weight as class_weights (one per channel, axis 1); "
            "MONAI's reduction='sum' sums per-channel spatial means, ours per-sample means",
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
def focal(from_logits: bool, label_smoothing: bool, class_weights: bool) -> KernelFunction:
    if class_weights:
        return WEIGHTED_FOCAL[(from_logits, label_smoothing)]
    if label_smoothing:
        return focal_logits_smoothed if from_logits else focal_probabilities_smoothed
    return focal_logits if from_logits else focal_probabilities


# -- class-weighted cross-entropy ---------------------------------------------------------


class WeightedCrossEntropyParams(SparseCrossEntropyParams):
    class_weights: list[Annotated[float, Field(ge=0)]] = Field(
        min_length=1, description="Required: one non-negative weight per class (length C), e.g. inverse frequencies."
    )


weighted_cross_entropy = loss(
    name="weighted_cross_entropy",
    task="imbalance",
    inputs=sparse_cross_entropy.inputs,
    params=WeightedCrossEntropyParams,
    mass=True,
    curve=replace(probability_of_true_class(3, labels=True), params={"class_weights": [1.0, 1.0, 1.0]}),
    properties=sparse_cross_entropy.properties,
    card=Card(
        title="Class-weighted cross-entropy",
        summary="sparse_cross_entropy with required class weights: each label's term is scaled by its class's "
        "weight, so rare classes count more. Same kernels and torch conventions as sparse_cross_entropy: the "
        "mean is sum(w_y l) / sum(w_y) over non-ignored labels (times sample weights), so it is a weighted "
        "average of per-label losses rather than a rescaled one; label smoothing is weighted by the class "
        "weights too. Properties are those of the default (probability) form.",
        formula=r"\ell = -(1-s)\, w_y \log p_y - \frac{s}{C}\sum_c w_c \log p_c,\quad "
        r"\text{mean} = \frac{\sum_n \ell_n}{\sum_n w_{y_n}}",
        use_cases=(
            "Multi-class classification with imbalanced classes (weights = inverse class frequency)",
            "Semantic segmentation with rare classes (median-frequency balancing)",
        ),
        equivalents={
            "torch": "torch.nn.CrossEntropyLoss(weight=class_weights, ignore_index, label_smoothing) on logits "
            "(from_logits=true; class axis 1 there, last here)",
            "keras": "no class weights in keras.losses; Model.fit(class_weight=...) turns them into sample weights "
            "and the default reduction divides by the count, not by sum(w_y): use reduction "
            "'mean_with_sample_weight' there to match",
        },
        references=(
            "King, G., Zeng, L. (2001). Logistic Regression in Rare Events Data. Political Analysis.",
            "Eigen, D., Fergus, R. (2015). Predicting Depth, Surface Normals and Semantic Labels with a Common "
            "Multi-Scale Convolutional Architecture (median frequency balancing). ICCV.",
        ),
    ),
)(sparse_cross_entropy.kernel)  # the same kernels (and graph variants) as sparse_cross_entropy


# -- categorical focal loss ---------------------------------------------------------------


class CategoricalFocalParams(Params):
    alpha: Annotated[float, Field(ge=0)] | list[Annotated[float, Field(ge=0)]] = Field(
        0.25, description="Weight of every class: one number, or one per class (length C). No 1 - alpha term."
    )
    gamma: float = Field(2.0, ge=0, description="Focusing exponent: 0 gives alpha-weighted cross-entropy.")
    from_logits: bool = Field(False, description="Predictions are logits (stable log-softmax, no clipping).")
    label_smoothing: float = Field(0.0, ge=0, le=1, description="Targets become y(1 - s) + s/C (Keras).")
    eps: float = Field(
        1e-7, gt=0, lt=0.5, description="Probabilities are renormalised, then clipped to [eps, 1 - eps] (Keras)."
    )


@script(LOSSD, default_opset=op)
def focal_terms(ay, log_p, q, gamma):  # type: ignore[no-untyped-def]
    """Element losses -sum_c ay_c q_c^gamma log p_c (q = 1 - p, ay = alpha y), and the two parts
    of each class term's derivative in p_c: -ay q^gamma / p + ay gamma q^(gamma-1) log p, returned
    as ay q^gamma and ay gamma q^(gamma-1) log p (q is floored so gamma < 1 stays finite at q = 0)."""
    weighted = ay * op.Pow(q, gamma)
    d_modulator = gamma * op.Pow(op.Max(q, op.CastLike(1e-30, q)), gamma - 1.0)
    elements = op.Neg(op.ReduceSum(weighted * log_p, op.Constant(value_ints=[-1]), keepdims=0))
    return elements, weighted, ay * d_modulator * log_p


@script(LOSSD, default_opset=op)
def categorical_focal_probabilities(predictions, targets, alpha, gamma, label_smoothing, eps):  # type: ignore[no-untyped-def]
    """Keras: p renormalised and clipped to [eps, 1 - eps]; 1 - p of the clipped p."""
    ay = alpha * smoothed(targets, label_smoothing)
    q, p, inside, total = renormalised(predictions, eps)
    elements, weighted, log_part = focal_terms(ay, op.Log(p), 1.0 - p, gamma)
    return elements, through_renormalisation(inside * (log_part - weighted / p), q, total)


@script(LOSSD, default_opset=op)
def softmax_parts(x):  # type: ignore[no-untyped-def]
    """log softmax(x), softmax(x) and 1 - softmax(x), each accurate for a dominant class:
    with z = x - max x and r = sum of exp(z) over the classes below the max, the max class
    has log p = -log1p(r) and 1 - p = r / (1 + r) (no cancellation in 1 - p); every other
    class has p <= 1/2, where 1 - p is exact."""
    axis = op.Constant(value_ints=[-1])
    z = x - spread(op.ReduceMax(x, axis, keepdims=1), x)
    e = op.Exp(z)
    top = op.Equal(z, op.CastLike(0.0, z))
    rest = op.ReduceSum(e * (1.0 - op.CastLike(top, e)), axis, keepdims=1)  # the max class's e dropped, exactly
    ties = op.ReduceSum(op.CastLike(top, e), axis, keepdims=1) - 1.0  # other classes at the max
    r = rest + ties
    log_p = z - spread(log1p(r), z)
    p = op.Exp(log_p)
    one_minus_p = select(op.Greater(p, op.CastLike(0.5, p)), spread(r / (1.0 + r), p), 1.0 - p)
    return log_p, p, one_minus_p


@script(LOSSD, default_opset=op)
def categorical_focal_logits(predictions, targets, alpha, gamma, label_smoothing):  # type: ignore[no-untyped-def]
    ay = alpha * smoothed(targets, label_smoothing)
    log_p, p, one_minus_p = softmax_parts(predictions)
    elements, weighted, log_part = focal_terms(ay, log_p, one_minus_p, gamma)
    g = p * log_part - weighted  # p_c d/dp_c, finite where p underflows; dp_c/dx_k = p_c (delta_ck - p_k)
    return elements, g - p * spread(op.ReduceSum(g, op.Constant(value_ints=[-1]), keepdims=1), g)


@loss(
    name="categorical_focal",
    task="imbalance",
    inputs=(
        CATEGORICAL_PREDICTIONS,
        Input(
            "targets",
            ("N", "...", "C"),
            "probability",
            "Target distributions over the last axis (one-hot or soft), or integer labels (shape (N, ...)), "
            "which are expanded to one-hot.",
            accepts_labels=True,
        ),
    ),
    params=CategoricalFocalParams,
    curve=probability_of_true_class(3),
    properties=Properties(
        robust_to_outliers=False,
        smooth_gradient=False,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Categorical focal loss",
        summary="Categorical cross-entropy with each class's term scaled by alpha_c (1 - p_c)^gamma, so "
        "confidently right predictions contribute little and training focuses on hard examples. Probabilities "
        "follow keras.losses.CategoricalFocalCrossentropy exactly (renormalised to sum 1, clipped to "
        "[eps, 1 - eps], the modulator taken on the clipped p). Logits use a stable log-softmax without any "
        "clipping, so large logits stay exact. Targets may be one-hot/soft rows or integer labels. Properties "
        "are those of the default probability form (gamma = 2): convex in p along the simplex, gradient "
        "-1/p not Lipschitz.",
        formula=r"\ell = -\sum_c \alpha_c\, (1 - p_c)^\gamma\, \tilde y_c \log p_c,\quad "
        r"\tilde y = y(1-s) + s/C",
        use_cases=(
            "Multi-class classification with heavy class imbalance",
            "Dense prediction (detection, segmentation) dominated by easy background",
        ),
        equivalents={
            "keras": "keras.losses.CategoricalFocalCrossentropy(alpha, gamma, from_logits, label_smoothing); with "
            "from_logits Keras takes softmax, then renormalises and clips (it saturates at -log eps for very wrong "
            "logits); we use the exact log-softmax, equal wherever Keras's clip does not bind",
            "torch": "none in torch core; equals torch.nn.CrossEntropyLoss(reduction='none') on logits scaled by "
            "alpha (1 - p_y)^gamma for one-hot targets",
        },
        references=(
            "Lin, T.-Y., Goyal, P., Girshick, R., He, K., Dollár, P. (2017). Focal Loss for Dense Object "
            "Detection. ICCV.",
        ),
    ),
)
def categorical_focal(from_logits: bool) -> KernelFunction:
    return categorical_focal_logits if from_logits else categorical_focal_probabilities
