"""Cross-entropy losses: binary (element-wise) and categorical (summed over the last axis)."""

from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.curves import (
    channel_true_class,
    log_probability_of_true_class,
    probability_of_target,
    probability_of_true_class,
)
from kernels.ops import (
    LOSSD,
    binary_smoothed,
    clip_mask,
    kept_one_hot,
    log1p,
    logistic,
    row_sum,
    rows,
    smoothed,
    spread,
)
from kernels.spec import Card, Input, KernelFunction, MinSize, Params, Properties, loss

FROM_LOGITS = Field(False, description="Predictions are raw scores (logits) rather than probabilities.")
EPS = Field(1e-7, gt=0, lt=0.5, description="Probabilities are clipped to [eps, 1 - eps] before a logarithm.")
SMOOTHING = Field(0.0, ge=0, le=1, description="Label smoothing: targets move towards the uniform distribution.")
CLASS_WEIGHTS = Field(None, min_length=1, description="One non-negative weight per class (length C).")


class BinaryCrossEntropyParams(Params):
    from_logits: bool = FROM_LOGITS
    pos_weight: float | list[float] | None = Field(
        None, description="Weight of the positive term: a number, or one per class along the last axis."
    )
    label_smoothing: float = Field(0.0, ge=0, le=1, description="Targets become y(1 - s) + s/2 (Keras).")
    eps: float = EPS


@script(LOSSD, default_opset=op)
def along_last_axis(pos_weight, x):  # type: ignore[no-untyped-def]
    """pos_weight (K,) repeated along x's collapsed axis (graph shape (N, R), R = M * K): the
    graph merges the "..." axes into one, so a per-class pos_weight, which belongs to the
    original last axis, is tiled to length R (a number, K = 1, becomes a length-R vector)."""
    return op.Tile(pos_weight, op.Div(op.Shape(x, start=1, end=2), op.Shape(pos_weight)))


@script(LOSSD, default_opset=op)
def bce_logits_core(predictions, y, positive):  # type: ignore[no-untyped-def]
    """``positive`` is pos_weight * y, or y itself: without pos_weight the graph has no extra ops."""
    # -[pw y log s(x) + (1-y) log s(-x)] = pw y softplus(-x) + (1-y) softplus(x): non-negative
    # terms only (the form (1-y) x + (1 + (pw-1) y) softplus(-x) cancels for y=0, x << 0).
    s, s_neg, softplus_x, softplus_neg_x = logistic(predictions)
    elements = (1.0 - y) * softplus_x + positive * softplus_neg_x
    return elements, (1.0 - y) * s - positive * s_neg


@script(LOSSD, default_opset=op)
def bce_probabilities_core(predictions, y, positive, eps):  # type: ignore[no-untyped-def]
    p, inside = clip_mask(predictions, eps)
    q = 1.0 - p
    elements = op.Neg(positive * op.Log(p) + (1.0 - y) * log1p(op.Neg(p)))
    return elements, inside * ((1.0 - y) / q - positive / p)


# One graph per (from_logits, label_smoothing present, pos_weight present): each a composition
# of the two cores above.


@script(LOSSD, default_opset=op)
def bce_logits(predictions, targets):  # type: ignore[no-untyped-def]
    elements, gradient = bce_logits_core(predictions, targets, targets)
    return elements, gradient


@script(LOSSD, default_opset=op)
def bce_logits_weighted(predictions, targets, pos_weight):  # type: ignore[no-untyped-def]
    elements, gradient = bce_logits_core(predictions, targets, along_last_axis(pos_weight, predictions) * targets)
    return elements, gradient


@script(LOSSD, default_opset=op)
def bce_logits_smoothed(predictions, targets, label_smoothing):  # type: ignore[no-untyped-def]
    y = binary_smoothed(targets, label_smoothing)
    elements, gradient = bce_logits_core(predictions, y, y)
    return elements, gradient


@script(LOSSD, default_opset=op)
def bce_logits_smoothed_weighted(predictions, targets, pos_weight, label_smoothing):  # type: ignore[no-untyped-def]
    y = binary_smoothed(targets, label_smoothing)
    elements, gradient = bce_logits_core(predictions, y, along_last_axis(pos_weight, predictions) * y)
    return elements, gradient


@script(LOSSD, default_opset=op)
def bce_probabilities(predictions, targets, eps):  # type: ignore[no-untyped-def]
    elements, gradient = bce_probabilities_core(predictions, targets, targets, eps)
    return elements, gradient


@script(LOSSD, default_opset=op)
def bce_probabilities_weighted(predictions, targets, pos_weight, eps):  # type: ignore[no-untyped-def]
    positive = along_last_axis(pos_weight, predictions) * targets
    elements, gradient = bce_probabilities_core(predictions, targets, positive, eps)
    return elements, gradient


@script(LOSSD, default_opset=op)
def bce_probabilities_smoothed(predictions, targets, label_smoothing, eps):  # type: ignore[no-untyped-def]
    y = binary_smoothed(targets, label_smoothing)
    elements, gradient = bce_probabilities_core(predictions, y, y, eps)
    return elements, gradient


@script(LOSSD, default_opset=op)
def bce_probabilities_smoothed_weighted(predictions, targets, pos_weight, label_smoothing, eps):  # type: ignore[no-untyped-def]
    y = binary_smoothed(targets, label_smoothing)
    positive = along_last_axis(pos_weight, predictions) * y
    elements, gradient = bce_probabilities_core(predictions, y, positive, eps)
    return elements, gradient


BCE_KERNELS: dict[tuple[bool, bool, bool], KernelFunction] = {
    (True, False, False): bce_logits,
    (True, False, True): bce_logits_weighted,
    (True, True, False): bce_logits_smoothed,
    (True, True, True): bce_logits_smoothed_weighted,
    (False, False, False): bce_probabilities,
    (False, False, True): bce_probabilities_weighted,
    (False, True, False): bce_probabilities_smoothed,
    (False, True, True): bce_probabilities_smoothed_weighted,
}


@loss(
    name="binary_cross_entropy",
    curve=probability_of_target(),
    aliases=("bce", "log_loss"),
    task="classification",
    inputs=(
        Input(
            "predictions",
            ("N", "..."),
            "score",
            "Probabilities in [0, 1], or logits when from_logits.",
            differentiable=True,
        ),
        Input("targets", ("N", "..."), "probability", "Target probabilities in [0, 1] (usually 0 or 1)."),
    ),
    params=BinaryCrossEntropyParams,
    properties=Properties(
        robust_to_outliers=False,
        smooth_gradient=False,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation="Bernoulli negative log-likelihood.",
    ),
    card=Card(
        title="Binary cross-entropy",
        summary="Negative log-likelihood of independent Bernoulli targets, for binary and multi-label "
        "classification. With from_logits the stable softplus form is used, so logits of any size are exact; "
        "probabilities are clipped to [eps, 1 - eps] (the gradient is zero where the clip binds). Properties are "
        "those of the default (probability) form: its gradient -y/p is not Lipschitz; on logits it is.",
        formula=r"\ell = -\left[w_+ \, y \log p + (1 - y) \log(1 - p)\right],\quad p = \sigma(x) "
        r"\text{ when from\_logits}",
        use_cases=("Binary classification", "Multi-label classification (one sigmoid per label)"),
        equivalents={
            "torch": "torch.nn.BCELoss / torch.nn.BCEWithLogitsLoss(pos_weight)",
            "keras": "keras.losses.BinaryCrossentropy(from_logits, label_smoothing)",
            "note": "Probabilities: we clip to [eps, 1-eps] like Keras (loss saturates at -log(eps) = 16.12); "
            "torch BCELoss instead caps log at -100. Label smoothing follows Keras (towards 0.5); torch has none.",
        },
        references=("Cox, D. R. (1958). The regression analysis of binary sequences. JRSS B.",),
    ),
)
def binary_cross_entropy(from_logits: bool, label_smoothing: bool, pos_weight: bool) -> KernelFunction:
    return BCE_KERNELS[(from_logits, label_smoothing, pos_weight)]


@script(LOSSD, default_opset=op)
def xent_logits(logits, u):  # type: ignore[no-untyped-def]
    """-sum_c u_c log softmax(x)_c over the last axis, and its gradient in x; u may be
    given as (rows, C). Works on rows: see kernels/ops.py on broadcasting."""
    x, t = rows(logits), rows(u)
    log_softmax = op.LogSoftmax(x, axis=-1)
    elements = op.Neg(row_sum(t * log_softmax))
    gradient = op.Exp(log_softmax) * spread(row_sum(t), x) - t
    return op.Reshape(elements, op.Shape(logits, end=-1)), op.Reshape(gradient, op.Shape(logits))


@script(LOSSD, default_opset=op)
def xent_probabilities(probabilities, u, eps):  # type: ignore[no-untyped-def]
    """As xent_logits on probabilities renormalised to sum 1 and clipped (Keras)."""
    p, t = rows(probabilities), rows(u)
    inverse_total = spread(op.Reciprocal(row_sum(p)), p)
    q = p * inverse_total
    clipped, inside = clip_mask(q, eps)
    elements = op.Neg(row_sum(t * op.Log(clipped)))
    g = op.Neg(t * inside / clipped)
    gradient = (g - spread(row_sum(g * q), p)) * inverse_total
    return op.Reshape(elements, op.Shape(probabilities, end=-1)), op.Reshape(gradient, op.Shape(probabilities))


class CrossEntropyParams(Params):
    from_logits: bool = FROM_LOGITS
    label_smoothing: float = Field(0.0, ge=0, le=1, description="Targets become y(1 - s) + s/C.")
    class_weights: list[float] | None = CLASS_WEIGHTS
    eps: float = EPS


@script(LOSSD, default_opset=op)
def cross_entropy_logits(predictions, targets, label_smoothing, class_weights):  # type: ignore[no-untyped-def]
    elements, gradient = xent_logits(predictions, class_weights * smoothed(rows(targets), label_smoothing))
    return elements, gradient


@script(LOSSD, default_opset=op)
def cross_entropy_probabilities(predictions, targets, label_smoothing, class_weights, eps):  # type: ignore[no-untyped-def]
    elements, gradient = xent_probabilities(predictions, class_weights * smoothed(rows(targets), label_smoothing), eps)
    return elements, gradient


CATEGORICAL_PREDICTIONS = Input(
    "predictions",
    ("N", "...", "C"),
    "score",
    "Class probabilities (last axis), or logits when from_logits.",
    differentiable=True,
)


@loss(
    name="cross_entropy",
    curve=probability_of_true_class(),
    aliases=("categorical_cross_entropy", "cce"),
    task="classification",
    inputs=(
        CATEGORICAL_PREDICTIONS,
        Input("targets", ("N", "...", "C"), "probability", "Target class distributions (one-hot or soft)."),
    ),
    params=CrossEntropyParams,
    properties=Properties(
        robust_to_outliers=False,
        smooth_gradient=False,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation="Categorical negative log-likelihood (cross-entropy between target and "
        "predicted distributions).",
    ),
    card=Card(
        title="Categorical cross-entropy",
        summary="Cross-entropy between target distributions and predicted class distributions on the last "
        "axis. Logits go through a stable log-softmax; probabilities are renormalised to sum 1 and clipped, as "
        "Keras does. Class weights multiply each class's term; the mean divides by the number of rows, as torch "
        "does for probability targets.",
        formula=r"\ell = -\sum_c w_c\, \tilde y_c \log p_c,\quad \tilde y = y(1-s) + s/C",
        use_cases=("Multi-class classification with one-hot or soft targets", "Knowledge distillation"),
        equivalents={
            "keras": "keras.losses.CategoricalCrossentropy(from_logits, label_smoothing)",
            "torch": "torch.nn.CrossEntropyLoss(weight, label_smoothing) with probability targets (logits only; "
            "class axis 1)",
        },
        references=("Shannon, C. E. (1948). A Mathematical Theory of Communication.",),
    ),
)
def cross_entropy(from_logits: bool) -> KernelFunction:
    return cross_entropy_logits if from_logits else cross_entropy_probabilities


class ChannelCrossEntropyParams(CrossEntropyParams):
    def classes(self, shape: tuple[int, ...]) -> int:
        return shape[1]

    def classes_description(self) -> str:
        return "one per class (axis 1 of the predictions, the channel axis)"


CHANNELS_LAST = [0, 2, 1]  # (N, C, R) <-> (N, R, C): the graph sees the spatial axes collapsed into R


@script(LOSSD, default_opset=op)
def channel_cross_entropy_logits(predictions, targets, label_smoothing, class_weights):  # type: ignore[no-untyped-def]
    """cross_entropy_logits over axis 1 of (N, C, R): elements (N, R), gradient (N, C, R)."""
    x = op.Transpose(predictions, perm=CHANNELS_LAST)
    y = op.Transpose(targets, perm=CHANNELS_LAST)
    elements, gradient = cross_entropy_logits(x, y, label_smoothing, class_weights)
    return elements, op.Transpose(gradient, perm=CHANNELS_LAST)


@script(LOSSD, default_opset=op)
def channel_cross_entropy_probabilities(predictions, targets, label_smoothing, class_weights, eps):  # type: ignore[no-untyped-def]
    x = op.Transpose(predictions, perm=CHANNELS_LAST)
    y = op.Transpose(targets, perm=CHANNELS_LAST)
    elements, gradient = cross_entropy_probabilities(x, y, label_smoothing, class_weights, eps)
    return elements, op.Transpose(gradient, perm=CHANNELS_LAST)


@loss(
    name="channel_cross_entropy",
    curve=channel_true_class(),
    task="segmentation",
    inputs=(
        Input(
            "predictions",
            ("N", "C", "..."),
            "score",
            "Class probabilities over axis 1 (channel-first), or logits when from_logits.",
            differentiable=True,
        ),
        Input(
            "targets",
            ("N", "C", "..."),
            "probability",
            "Target class distributions over axis 1 (one-hot or soft), same shape as predictions; or an integer "
            "label map (N, ...) or (N, 1, ...), expanded to one-hot over the C channels (MONAI to_onehot_y).",
            accepts_labels=True,
        ),
    ),
    params=ChannelCrossEntropyParams,
    min_sizes=(
        MinSize(
            "C",
            2,
            "predictions",
            "cross-entropy over one channel is 0 whatever the prediction; for a single foreground channel use "
            "binary_cross_entropy (MONAI's DiceCELoss switches to BCEWithLogitsLoss there)",
        ),
    ),
    properties=Properties(
        robust_to_outliers=False,
        smooth_gradient=False,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation="Categorical negative log-likelihood of each position's class, averaged over "
        "the positions.",
    ),
    card=Card(
        title="Channel-first (pixel-wise) cross-entropy",
        summary="Categorical cross-entropy over the channel axis of channel-first maps (N, C, ...), one term per "
        "spatial position, averaged over the positions of each sample: torch's CrossEntropyLoss on (N, C, d1, ...) "
        "with probability targets, the cross-entropy of segmentation networks (and the CE of MONAI's DiceCELoss). "
        "The same formula as cross_entropy, whose class axis is the last one: logits go through a stable "
        "log-softmax; probabilities are renormalised over the channels and clipped, as Keras does; class weights "
        "multiply each class's term and the mean divides by the number of positions (torch's mean for probability "
        "targets). Integer label maps are accepted as targets and expanded to one-hot.",
        formula=r"\ell_n = \frac{1}{R}\sum_{r} -\sum_c w_c\, \tilde y_{ncr} \log p_{ncr},\quad "
        r"\tilde y = y(1-s) + s/C",
        use_cases=(
            "Semantic and medical segmentation on channel-first logits (U-Net, nnU-Net)",
            "The cross-entropy term of Dice + CE (dice_ce) and other channel-first composites",
        ),
        equivalents={
            "torch": "torch.nn.CrossEntropyLoss(weight, label_smoothing) on (N, C, d1, ...) with probability (one-hot) "
            "targets, from_logits=true (matched); with an index target map and class weights torch's mean divides "
            "by the summed weights of the labels, ours by the number of positions (the same without weights)",
            "monai": "the cross-entropy of monai.losses.DiceCELoss (nn.CrossEntropyLoss on the raw input, "
            "from_logits=true) for C > 1",
            "keras": "keras.losses.CategoricalCrossentropy(axis=1, from_logits, label_smoothing), averaged over the "
            "positions",
            "lossd": "cross_entropy on the channel-last layout (the class axis moved last)",
        },
        references=("Shannon, C. E. (1948). A Mathematical Theory of Communication.",),
    ),
)
def channel_cross_entropy(from_logits: bool) -> KernelFunction:
    return channel_cross_entropy_logits if from_logits else channel_cross_entropy_probabilities


class SparseCrossEntropyParams(CrossEntropyParams):
    ignore_index: int = Field(-100, description="Targets equal to this label contribute nothing.")


@script(LOSSD, default_opset=op)
def sparse_targets(predictions, targets, label_smoothing, class_weights, ignore_index):  # type: ignore[no-untyped-def]
    """Weighted smoothed one-hot targets u, and the element mass w_y (0 where ignored)."""
    keep, one_hot = kept_one_hot(predictions, targets, ignore_index)
    weighted = keep * class_weights  # 0 where ignored
    mass = op.ReduceSum(weighted * one_hot, op.Constant(value_ints=[-1]), keepdims=0)
    u = weighted * smoothed(one_hot, label_smoothing)
    return u, mass


@script(LOSSD, default_opset=op)
def sparse_cross_entropy_logits(predictions, targets, label_smoothing, class_weights, ignore_index):  # type: ignore[no-untyped-def]
    u, mass = sparse_targets(predictions, targets, label_smoothing, class_weights, ignore_index)
    elements, gradient = xent_logits(predictions, u)
    return elements, gradient, mass


@script(LOSSD, default_opset=op)
def sparse_cross_entropy_probabilities(predictions, targets, label_smoothing, class_weights, ignore_index, eps):  # type: ignore[no-untyped-def]
    u, mass = sparse_targets(predictions, targets, label_smoothing, class_weights, ignore_index)
    elements, gradient = xent_probabilities(predictions, u, eps)
    return elements, gradient, mass


@script(LOSSD, default_opset=op)
def label_index(predictions, targets, class_weights, ignore_index):  # type: ignore[no-untyped-def]
    """Labels as (rows, 1) indices (ignored ones at 0) and the row mass w_y (rows,), 0 where
    ignored. Per-row values stay 1-D: onnxruntime's element-wise ops on (rows, 1) are 10x slower,
    and its Where is a scalar loop (masks are products)."""
    flat = op.Reshape(targets, op.Constant(value_ints=[-1]))
    keep = op.Not(op.Equal(flat, ignore_index))
    labels = flat * op.CastLike(keep, flat)
    weights = op.Expand(class_weights, op.Shape(predictions, start=-1))  # an absent weight is fed as [1]
    mass = op.CastLike(keep, predictions) * op.Gather(weights, labels)
    return op.Unsqueeze(labels, op.Constant(value_ints=[-1])), mass


@script(LOSSD, default_opset=op)
def sparse_nll_logits(predictions, targets, class_weights, ignore_index):  # type: ignore[no-untyped-def]
    """Without label smoothing only the label's term is needed: a gather, not a one-hot."""
    labels, mass = label_index(predictions, targets, class_weights, ignore_index)
    log_softmax = op.LogSoftmax(rows(predictions), axis=-1)
    flat = op.Constant(value_ints=[-1])
    elements = op.Neg(op.Reshape(op.GatherElements(log_softmax, labels, axis=-1), flat)) * mass
    # d/dx_k = w_y (softmax_k - [k = y]).
    column = op.Unsqueeze(mass, flat)
    scaled = op.Exp(log_softmax) * spread(column, log_softmax)
    gradient = op.ScatterElements(scaled, labels, op.GatherElements(scaled, labels, axis=-1) - column, axis=-1)
    shape = op.Shape(targets)
    return op.Reshape(elements, shape), op.Reshape(gradient, op.Shape(predictions)), op.Reshape(mass, shape)


@script(LOSSD, default_opset=op)
def sparse_nll_probabilities(predictions, targets, class_weights, ignore_index, eps):  # type: ignore[no-untyped-def]
    """-log of the label's renormalised, clipped probability (Keras), by a gather."""
    labels, mass = label_index(predictions, targets, class_weights, ignore_index)
    p = rows(predictions)
    flat = op.Constant(value_ints=[-1])
    inverse_total = op.Reshape(op.Reciprocal(row_sum(p)), flat)
    q = op.Reshape(op.GatherElements(p, labels, axis=-1), flat) * inverse_total
    clipped, inside = clip_mask(q, eps)
    elements = op.Neg(op.Log(clipped)) * mass
    # d/dp_k = g (1[k = y] - q) / S with g = -w_y / q (0 where the clip binds).
    g = op.Neg(mass * inside / clipped) * inverse_total
    base = spread(op.Unsqueeze(op.Neg(g * q), flat), p)
    gradient = op.ScatterElements(base, labels, op.Unsqueeze(g * (1.0 - q), flat), axis=-1)
    shape = op.Shape(targets)
    return op.Reshape(elements, shape), op.Reshape(gradient, op.Shape(predictions)), op.Reshape(mass, shape)


@loss(
    name="sparse_cross_entropy",
    curve=probability_of_true_class(labels=True),
    aliases=("sparse_categorical_cross_entropy",),
    task="classification",
    inputs=(
        CATEGORICAL_PREDICTIONS,
        Input("targets", ("N", "..."), "label", "Integer class labels in [0, C), or ignore_index."),
    ),
    params=SparseCrossEntropyParams,
    mass=True,
    properties=Properties(
        robust_to_outliers=False,
        smooth_gradient=False,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation="Categorical negative log-likelihood of the labels.",
    ),
    card=Card(
        title="Sparse categorical cross-entropy",
        summary="Cross-entropy with integer labels. Follows torch.nn.CrossEntropyLoss exactly: with class "
        "weights or ignored labels the mean is sum(w_y l) / sum(w_y) over non-ignored targets (times sample "
        "weights), and label smoothing spreads s/C over the classes, weighted by the class weights.",
        formula=r"\ell = -(1-s)\, w_y \log p_y - \frac{s}{C}\sum_c w_c \log p_c,\quad "
        r"\text{mean} = \frac{\sum_n \ell_n}{\sum_n w_{y_n}}",
        use_cases=(
            "Multi-class classification with integer labels",
            "Token-level language modelling (ignore padding with ignore_index)",
        ),
        equivalents={
            "torch": "torch.nn.CrossEntropyLoss(weight, ignore_index, label_smoothing) (class axis 1 there, last here)",
            "keras": "keras.losses.SparseCategoricalCrossentropy(from_logits, ignore_class) without class weights "
            "or smoothing (Keras has neither here)",
        },
        references=("Szegedy, C. et al. (2016). Rethinking the Inception Architecture (label smoothing).",),
    ),
)
def sparse_cross_entropy(from_logits: bool, label_smoothing: bool) -> KernelFunction:
    if label_smoothing:
        return sparse_cross_entropy_logits if from_logits else sparse_cross_entropy_probabilities
    return sparse_nll_logits if from_logits else sparse_nll_probabilities


# -- label smoothing ----------------------------------------------------------------------


class LabelSmoothingCrossEntropyParams(SparseCrossEntropyParams):
    label_smoothing: float = Field(
        0.1, ge=0, le=1, description="Targets become (1 - s) one_hot + s/C (weighted by the class weights, as torch)."
    )


label_smoothing_cross_entropy = loss(
    name="label_smoothing_cross_entropy",
    task="classification",
    inputs=sparse_cross_entropy.inputs,
    params=LabelSmoothingCrossEntropyParams,
    mass=True,
    curve=probability_of_true_class(3, labels=True),
    properties=sparse_cross_entropy.properties,
    card=Card(
        title="Label-smoothing cross-entropy",
        summary="sparse_cross_entropy with label smoothing on by default (s = 0.1): the one-hot target keeps "
        "1 - s of its mass and s is spread uniformly over the C classes, which keeps the model from becoming "
        "over-confident. Same kernels, params and torch conventions as sparse_cross_entropy (class weights "
        "weight the smoothing term too; the mean divides by sum(w_y) over non-ignored labels); label_smoothing=0 "
        "gives plain sparse cross-entropy. Properties are those of the default (probability) form.",
        formula=r"\ell = -(1-s)\, w_y \log p_y - \frac{s}{C}\sum_c w_c \log p_c,\quad s = 0.1",
        use_cases=(
            "Image classification with many classes (Inception, ResNet and ViT training recipes)",
            "Machine translation and language modelling (calibration, regularisation)",
        ),
        equivalents={
            "torch": "torch.nn.CrossEntropyLoss(label_smoothing=0.1, weight, ignore_index) on logits (from_logits=true;"
            " class axis 1 there, last here)",
            "keras": "keras.losses.CategoricalCrossentropy(label_smoothing=0.1) on one-hot targets gives the same "
            "values without class weights (y(1-s) + s/C); SparseCategoricalCrossentropy has no smoothing",
        },
        references=(
            "Szegedy, C., Vanhoucke, V., Ioffe, S., Shlens, J., Wojna, Z. (2016). Rethinking the Inception "
            "Architecture for Computer Vision. CVPR.",
            "Müller, R., Kornblith, S., Hinton, G. (2019). When Does Label Smoothing Help? NeurIPS.",
        ),
    ),
)(sparse_cross_entropy.kernel)  # the same kernels (and graph variants) as sparse_cross_entropy


# -- negative log-likelihood --------------------------------------------------------------


class NllParams(Params):
    class_weights: list[float] | None = CLASS_WEIGHTS
    ignore_index: int = Field(-100, description="Targets equal to this label contribute nothing.")


@script(LOSSD, default_opset=op)
def nll_kernel(predictions, targets, class_weights, ignore_index):  # type: ignore[no-untyped-def]
    keep, one_hot = kept_one_hot(predictions, targets, ignore_index)
    weighted = keep * class_weights * one_hot  # w_y at the label, 0 elsewhere and where ignored
    axis = op.Constant(value_ints=[-1])
    elements = op.Neg(op.ReduceSum(weighted * predictions, axis, keepdims=0))
    return elements, op.Neg(weighted), op.ReduceSum(weighted, axis, keepdims=0)


@loss(
    name="nll",
    aliases=("negative_log_likelihood",),
    task="classification",
    inputs=(
        Input(
            "predictions",
            ("N", "...", "C"),
            "real",
            "Log-probabilities over the last axis (e.g. log_softmax outputs). Any finite reals are accepted: "
            "they are not checked to be <= 0 or normalised.",
            differentiable=True,
        ),
        Input("targets", ("N", "..."), "label", "Integer class labels in [0, C), or ignore_index."),
    ),
    params=NllParams,
    mass=True,
    curve=log_probability_of_true_class(3),
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=True,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation="Categorical negative log-likelihood of the labels, given log-probabilities.",
    ),
    card=Card(
        title="Negative log-likelihood",
        summary="Picks the negative log-probability of each label: -w_y x_y. Follows torch.nn.NLLLoss exactly: "
        "with class weights or ignored labels the mean is sum(w_y l) / sum(w_y) over non-ignored targets. "
        "The kernel is linear in its input, so the properties are about the log-probability x: convex, with a "
        "constant gradient (smooth, and robust in that variable), and bounded below by 0 on log-probabilities "
        "(x <= 0, the domain the claims are checked on). The inputs are not validated as log-probabilities: on "
        "arbitrary reals the loss is unbounded below. Applied to log_softmax(logits) it is cross-entropy, "
        "which as a function of the probability -log p is neither robust nor smooth.",
        formula=r"\ell = -w_y\, x_y,\quad \text{mean} = \frac{\sum_n \ell_n}{\sum_n w_{y_n}}",
        use_cases=(
            "Classification heads that already end in log_softmax",
            "Likelihood of any categorical model whose log-probabilities are computed elsewhere",
        ),
        equivalents={
            "torch": "torch.nn.NLLLoss(weight, ignore_index) (class axis 1 there, last here)",
            "keras": "none; keras.losses.SparseCategoricalCrossentropy(from_logits=True) on log-probabilities gives "
            "the same values when they are normalised (log_softmax of log-probabilities is the identity)",
            "onnx": "NegativeLogLikelihoodLoss (class axis 1)",
        },
        references=("Fisher, R. A. (1922). On the mathematical foundations of theoretical statistics. Phil. Trans.",),
    ),
)
def nll() -> KernelFunction:
    return nll_kernel


# -- Kullback-Leibler divergence ----------------------------------------------------------


class KlDivergenceParams(Params):
    from_logits: bool = Field(
        False,
        description="Predictions are logits: a stable log_softmax is applied and targets are not clipped (torch "
        "KLDivLoss on log_softmax).",
    )
    eps: float = Field(
        1e-7,
        gt=0,
        lt=0.5,
        description="Probability form: predictions and targets are clipped to [eps, 1] before the logarithm (Keras).",
    )
    log_target: bool = Field(
        False,
        description="Targets are log-probabilities (torch KLDivLoss log_target): any reals, exp(targets) the "
        "distribution, and no target clipping.",
    )


@script(LOSSD, default_opset=op)
def kl_probabilities(predictions, targets, eps):  # type: ignore[no-untyped-def]
    """Keras: both clipped to [eps, 1] (inputs are checked to be <= 1), sum_c y log(y / p)."""
    low = op.CastLike(eps, predictions)
    p = op.Max(predictions, low)
    y = op.Max(targets, low)
    inside = op.CastLike(op.GreaterOrEqual(predictions, low), predictions)
    elements = op.ReduceSum(y * (op.Log(y) - op.Log(p)), op.Constant(value_ints=[-1]), keepdims=0)
    return elements, op.Neg(inside * y / p)


@script(LOSSD, default_opset=op)
def kl_logits(predictions, targets):  # type: ignore[no-untyped-def]
    """torch: sum_c xlogy(y, y) - y log_softmax(x) (0 log 0 = 0), i.e. cross-entropy minus the entropy."""
    cross_entropy, gradient = xent_logits(predictions, targets)
    safe = op.Where(op.Greater(targets, op.CastLike(0.0, targets)), targets, op.CastLike(1.0, targets))
    negative_entropy = op.ReduceSum(targets * op.Log(safe), op.Constant(value_ints=[-1]), keepdims=0)
    return cross_entropy + negative_entropy, gradient


@script(LOSSD, default_opset=op)
def kl_probabilities_log_target(predictions, targets, eps):  # type: ignore[no-untyped-def]
    """sum_c e^t (t - log max(p, eps)): torch's kl_div(log clip(p), t, log_target=True)."""
    low = op.CastLike(eps, predictions)
    p = op.Max(predictions, low)
    y = op.Exp(targets)
    inside = op.CastLike(op.GreaterOrEqual(predictions, low), predictions)
    elements = op.ReduceSum(y * (targets - op.Log(p)), op.Constant(value_ints=[-1]), keepdims=0)
    return elements, op.Neg(inside * y / p)


@script(LOSSD, default_opset=op)
def kl_logits_log_target(predictions, targets):  # type: ignore[no-untyped-def]
    """torch: sum_c e^t (t - log_softmax(x)_c), cross-entropy against e^t plus sum e^t t."""
    y = op.Exp(targets)
    cross_entropy, gradient = xent_logits(predictions, y)
    return cross_entropy + op.ReduceSum(y * targets, op.Constant(value_ints=[-1]), keepdims=0), gradient


@loss(
    name="kl_divergence",
    aliases=("kld",),
    task="classification",
    inputs=(
        CATEGORICAL_PREDICTIONS,
        Input(
            "targets",
            ("N", "...", "C"),
            "probability",
            "Target distributions over the last axis; log-probabilities (any reals) when log_target.",
            relaxed_by="log_target",
        ),
    ),
    params=KlDivergenceParams,
    curve=probability_of_true_class(3),
    properties=Properties(
        robust_to_outliers=False,
        smooth_gradient=False,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation="KL(targets || predictions): the expected extra nats to code samples of the "
        "target distribution with the predicted one (cross-entropy minus the targets' entropy).",
    ),
    card=Card(
        title="Kullback-Leibler divergence",
        summary="Divergence of the predicted distribution from the target distribution on the last axis. "
        "Probabilities (default) follow keras.losses.KLDivergence exactly: predictions and targets are both "
        "clipped to [eps, 1] (not renormalised), so a zero target entry counts as eps and contributes "
        "eps log(eps / p), a small nonzero (possibly negative) term, where the mathematical KL has 0. With "
        "from_logits the predictions go through a stable log_softmax and targets are used as they are "
        "(0 log 0 = 0), exactly torch.nn.KLDivLoss(log_softmax(x), y). With log_target the targets are "
        "log-probabilities t (torch's log_target=True): the divergence is sum e^t (t - log q), with log q = "
        "log_softmax(x) (from_logits) or log max(p, eps), and the targets are not clipped. Properties are those of the "
        "probability form: convex in the prediction, with a gradient -y/p that is not Lipschitz.",
        formula=r"\ell = \sum_c \tilde y_c \log\frac{\tilde y_c}{\tilde p_c},\quad \tilde y = \max(y, \epsilon),\ "
        r"\tilde p = \max(p, \epsilon);\quad \text{from\_logits: } \sum_c y_c\,(\log y_c - "
        r"\operatorname{log\_softmax}(x)_c)",
        use_cases=(
            "Knowledge distillation (match a teacher's soft distribution)",
            "Variational inference and distribution matching",
            "Label distribution learning",
        ),
        equivalents={
            "keras": "keras.losses.KLDivergence (probabilities; we match it, zero-target clipping included)",
            "torch": "torch.nn.KLDivLoss(reduction='batchmean') takes log q as input: pass log(predictions) (or "
            "log_softmax(logits)) and the targets. It equals our from_logits=true form (send log-probabilities "
            "or logits; 0 log 0 = 0, no clipping) and equals the probability form except for targets below eps "
            "(torch: 0 contribution for y = 0). batchmean divides the total by N only: equal to ours for "
            "(N, C) inputs; for (N, ..., C) we average the middle axes instead of summing them. "
            "reduction='mean' divides by N*C (torch warns about it). log_target=True: our log_target.",
        },
        references=(
            "Kullback, S., Leibler, R. A. (1951). On Information and Sufficiency. Ann. Math. Statist.",
            "Hinton, G., Vinyals, O., Dean, J. (2015). Distilling the Knowledge in a Neural Network.",
        ),
    ),
)
def kl_divergence(from_logits: bool, log_target: bool) -> KernelFunction:
    if log_target:
        return kl_logits_log_target if from_logits else kl_probabilities_log_target
    return kl_logits if from_logits else kl_probabilities
