"""Cross-entropy losses: binary (element-wise) and categorical (summed over the last axis)."""

from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.curves import probability_of_target, probability_of_true_class
from kernels.ops import LOSSD, binary_smoothed, clip_mask, log1p, logistic, row_sum, rows, spread
from kernels.spec import Card, Input, Params, Properties, loss

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
def bce_logits(predictions, targets, pos_weight):  # type: ignore[no-untyped-def]
    y = targets
    pw = along_last_axis(pos_weight, predictions)
    # -[pw y log s(x) + (1-y) log s(-x)] = pw y softplus(-x) + (1-y) softplus(x): non-negative
    # terms only (the form (1-y) x + (1 + (pw-1) y) softplus(-x) cancels for y=0, x << 0).
    s, s_neg, softplus_x, softplus_neg_x = logistic(predictions)
    elements = (1.0 - y) * softplus_x + pw * y * softplus_neg_x
    return elements, (1.0 - y) * s - pw * y * s_neg


@script(LOSSD, default_opset=op)
def bce_probabilities(predictions, targets, pos_weight, eps):  # type: ignore[no-untyped-def]
    y = targets
    pw = along_last_axis(pos_weight, predictions)
    p, inside = clip_mask(predictions, eps)
    q = 1.0 - p
    elements = op.Neg(pw * y * op.Log(p) + (1.0 - y) * log1p(op.Neg(p)))
    return elements, inside * ((1.0 - y) / q - pw * y / p)


@script(LOSSD, default_opset=op)
def bce_logits_smoothed(predictions, targets, pos_weight, label_smoothing):  # type: ignore[no-untyped-def]
    elements, gradient = bce_logits(predictions, binary_smoothed(targets, label_smoothing), pos_weight)
    return elements, gradient


@script(LOSSD, default_opset=op)
def bce_probabilities_smoothed(predictions, targets, pos_weight, label_smoothing, eps):  # type: ignore[no-untyped-def]
    elements, gradient = bce_probabilities(predictions, binary_smoothed(targets, label_smoothing), pos_weight, eps)
    return elements, gradient


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
def binary_cross_entropy(from_logits: bool, label_smoothing: bool):  # type: ignore[no-untyped-def]
    if label_smoothing:
        return bce_logits_smoothed if from_logits else bce_probabilities_smoothed
    return bce_logits if from_logits else bce_probabilities


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


@script(LOSSD, default_opset=op)
def smoothed(targets, label_smoothing):  # type: ignore[no-untyped-def]
    classes = op.CastLike(op.Shape(targets, start=-1), targets)
    return targets * (1.0 - label_smoothing) + label_smoothing / classes


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
def cross_entropy(from_logits: bool):  # type: ignore[no-untyped-def]
    return cross_entropy_logits if from_logits else cross_entropy_probabilities


class SparseCrossEntropyParams(CrossEntropyParams):
    ignore_index: int = Field(-100, description="Targets equal to this label contribute nothing.")


@script(LOSSD, default_opset=op)
def sparse_targets(predictions, targets, label_smoothing, class_weights, ignore_index):  # type: ignore[no-untyped-def]
    """Weighted smoothed one-hot targets u, and the element mass w_y (0 where ignored)."""
    keep = op.Not(op.Equal(targets, ignore_index))
    labels = op.Where(keep, targets, op.CastLike(0, targets))
    # OneHot has no float64 kernel in onnxruntime: compare against the class range instead.
    classes = op.Range(op.CastLike(0, targets), op.Squeeze(op.Shape(predictions, start=-1)), op.CastLike(1, targets))
    one_hot = op.CastLike(op.Equal(op.Unsqueeze(labels, op.Constant(value_ints=[-1])), classes), predictions)
    keep_t = op.CastLike(keep, predictions)
    weighted = class_weights * one_hot
    mass = keep_t * op.ReduceSum(weighted, op.Constant(value_ints=[-1]), keepdims=0)
    u = op.Unsqueeze(keep_t, op.Constant(value_ints=[-1])) * class_weights * smoothed(one_hot, label_smoothing)
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
    """Labels as (rows, 1) indices (ignored ones at 0) and the row mass w_y (0 where ignored)."""
    flat = op.Reshape(targets, op.Constant(value_ints=[-1]))
    keep = op.Not(op.Equal(flat, ignore_index))
    labels = op.Where(keep, flat, op.CastLike(0, flat))
    weights = op.Expand(class_weights, op.Shape(predictions, start=-1))  # an absent weight is fed as [1]
    mass = op.CastLike(keep, predictions) * op.Gather(weights, labels)
    return op.Unsqueeze(labels, op.Constant(value_ints=[-1])), op.Unsqueeze(mass, op.Constant(value_ints=[-1]))


@script(LOSSD, default_opset=op)
def sparse_nll_logits(predictions, targets, class_weights, ignore_index):  # type: ignore[no-untyped-def]
    """Without label smoothing only the label's term is needed: a gather, not a one-hot."""
    labels, mass = label_index(predictions, targets, class_weights, ignore_index)
    log_softmax = op.LogSoftmax(rows(predictions), axis=-1)
    elements = op.Neg(op.GatherElements(log_softmax, labels, axis=-1)) * mass
    # d/dx_k = w_y (softmax_k - [k = y]).
    scaled = op.Exp(log_softmax) * spread(mass, log_softmax)
    gradient = op.ScatterElements(scaled, labels, op.GatherElements(scaled, labels, axis=-1) - mass, axis=-1)
    shape = op.Shape(targets)
    return op.Reshape(elements, shape), op.Reshape(gradient, op.Shape(predictions)), op.Reshape(mass, shape)


@script(LOSSD, default_opset=op)
def sparse_nll_probabilities(predictions, targets, class_weights, ignore_index, eps):  # type: ignore[no-untyped-def]
    """-log of the label's renormalised, clipped probability (Keras), by a gather."""
    labels, mass = label_index(predictions, targets, class_weights, ignore_index)
    p = rows(predictions)
    inverse_total = op.Reciprocal(row_sum(p))
    q = op.GatherElements(p, labels, axis=-1) * inverse_total
    clipped, inside = clip_mask(q, eps)
    elements = op.Neg(op.Log(clipped)) * mass
    # d/dp_k = g (1[k = y] - q) / S with g = -w_y / q (0 where the clip binds).
    g = op.Neg(mass * inside / clipped) * inverse_total
    base = spread(op.Neg(g * q), p)
    gradient = op.ScatterElements(base, labels, g * (1.0 - q), axis=-1)
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
def sparse_cross_entropy(from_logits: bool, label_smoothing: bool):  # type: ignore[no-untyped-def]
    if label_smoothing:
        return sparse_cross_entropy_logits if from_logits else sparse_cross_entropy_probabilities
    return sparse_nll_logits if from_logits else sparse_nll_probabilities
