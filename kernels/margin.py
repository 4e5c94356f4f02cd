"""Margin (hinge) losses: Keras's binary, squared and categorical hinge; torch's multi-margin, soft margin,
hinge embedding and multi-label soft margin.

At a kink the gradient is the subgradient 0 for the hinge term (``max(s, 0)`` contributes
nothing where ``s = 0``), as ``torch.relu`` and torch's multi-margin backward do.
"""

from typing import Annotated, Literal

from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.curves import margin, true_class_score, two_labels
from kernels.ops import LOSSD, logistic, one_hot_labels, select, spread
from kernels.spec import Card, Input, KernelFunction, NoParams, Params, Properties, loss

SCORES = Input("predictions", ("N", "..."), "real", "Raw scores (decision values), any real.", differentiable=True)
SIGNED_TARGETS = Input(
    "targets",
    ("N", "..."),
    "real",
    "Labels -1 or 1; 0/1 labels are converted to -1/1 when every label of the request is 0 or 1 (Keras).",
    allowed=(-1.0, 0.0, 1.0),
)


@script(LOSSD, default_opset=op)
def signed_labels(targets):  # type: ignore[no-untyped-def]
    """Keras's convert_binary_labels_to_hinge: 2y - 1 if every label in the tensor (here: the
    request) is 0 or 1, else y unchanged. Targets are validated to {-1, 0, 1}, so "all 0 or 1" is
    "no -1", i.e. min(y) >= 0."""
    binary = op.GreaterOrEqual(op.ReduceMin(targets, keepdims=0), op.CastLike(0.0, targets))
    return select(binary, 2.0 * targets - 1.0, targets)


@script(LOSSD, default_opset=op)
def hinge_kernel(predictions, targets):  # type: ignore[no-untyped-def]
    y = signed_labels(targets)
    slack = 1.0 - y * predictions
    active = op.CastLike(op.Greater(slack, op.CastLike(0.0, slack)), slack)
    return op.Relu(slack), op.Neg(y * active)


@script(LOSSD, default_opset=op)
def squared_hinge_kernel(predictions, targets):  # type: ignore[no-untyped-def]
    y = signed_labels(targets)
    h = op.Relu(1.0 - y * predictions)
    return h * h, -2.0 * y * h


LABEL_RULE = (
    "Labels are -1/1; as in Keras, 0/1 labels become -1/1 (2y - 1) only when every label of the request is 0 or "
    "1: one -1 anywhere leaves the whole request unchanged, and a 0 label then scores 1 - 0 = 1 (zero gradient). "
    "So a sample's loss can depend on the other samples' labels; send -1/1 to avoid that."
)
HINGE_REFERENCES = (
    "Cortes, C., Vapnik, V. (1995). Support-vector networks. Machine Learning.",
    "Rosasco, L., De Vito, E., Caponnetto, A., Piana, M., Verri, A. (2004). Are Loss Functions All the Same? "
    "Neural Computation.",
)


@loss(
    name="hinge",
    task="classification",
    inputs=(SCORES, SIGNED_TARGETS),
    row_wise=False,  # LABEL_RULE looks at every label of the request
    curve=margin(),
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=True,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Hinge loss",
        summary="The support-vector-machine loss: zero once the score has the label's sign with a margin of at "
        "least 1, linear in the shortfall below it. Averaged over all non-batch axes (element-wise). Convex, "
        "with a bounded gradient (-y or 0) that jumps at the margin (subgradient 0 there). " + LABEL_RULE,
        formula=r"\ell = \max(0,\ 1 - y\,\hat y),\quad y \in \{-1, 1\}",
        use_cases=("Linear and kernel SVM-style classifiers", "Maximum-margin binary or multi-label classification"),
        equivalents={
            "keras": "keras.losses.Hinge (label conversion rule included)",
            "torch": "none; torch.nn.HingeEmbeddingLoss is a different loss (x for y = 1, max(0, margin - x) for "
            "y = -1, on distances); torch.nn.MultiLabelMarginLoss is multi-class",
        },
        references=HINGE_REFERENCES,
    ),
)
def hinge() -> KernelFunction:
    return hinge_kernel


@loss(
    name="squared_hinge",
    task="classification",
    inputs=(SCORES, SIGNED_TARGETS),
    row_wise=False,  # LABEL_RULE looks at every label of the request
    curve=margin(),
    properties=Properties(
        robust_to_outliers=False,
        smooth_gradient=True,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Squared hinge loss",
        summary="The square of the hinge: zero beyond a margin of 1, quadratic in the shortfall below it, so it "
        "is differentiable with a Lipschitz gradient -2y max(0, 1 - y x) (constant 2), and penalises large "
        "violations more than the hinge (not robust: the gradient grows with the violation). " + LABEL_RULE,
        formula=r"\ell = \max(0,\ 1 - y\,\hat y)^2,\quad y \in \{-1, 1\}",
        use_cases=("L2-SVM classifiers", "Margin-based classification where a smooth gradient helps the optimiser"),
        equivalents={
            "keras": "keras.losses.SquaredHinge (label conversion rule included)",
            "torch": "none in torch core",
        },
        references=HINGE_REFERENCES,
    ),
)
def squared_hinge() -> KernelFunction:
    return squared_hinge_kernel


@script(LOSSD, default_opset=op)
def categorical_hinge_kernel(predictions, targets):  # type: ignore[no-untyped-def]
    axis = op.Constant(value_ints=[-1])
    positive = op.ReduceSum(targets * predictions, axis, keepdims=0)
    others = (1.0 - targets) * predictions  # 0 at a one-hot target: the max is never below 0
    slack = op.ReduceMax(others, axis, keepdims=0) - positive + 1.0
    # d max / d x: (1 - y_j) at the first maximiser j (torch.max's subgradient choice)
    first = one_hot_labels(predictions, op.ArgMax(others, axis=-1, keepdims=0))
    active = op.Unsqueeze(op.CastLike(op.Greater(slack, op.CastLike(0.0, slack)), slack), axis)
    return op.Relu(slack), active * ((1.0 - targets) * first - targets)


@loss(
    name="categorical_hinge",
    task="classification",
    inputs=(
        Input("predictions", ("N", "...", "C"), "real", "Raw class scores on the last axis.", differentiable=True),
        Input(
            "targets",
            ("N", "...", "C"),
            "probability",
            "One-hot targets on the last axis, or integer labels (shape (N, ...)), which are expanded to one-hot.",
            accepts_labels=True,
        ),
    ),
    params=NoParams,
    curve=true_class_score(3),
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=True,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Categorical hinge loss",
        summary="Crammer-Singer style multi-class hinge, exactly as keras.losses.CategoricalHinge: the score of "
        "the true class must beat the best other score by a margin of 1. As in Keras, the maximum runs over "
        "(1 - y_c) x_c for every class, so the true class contributes a 0 to it: when every other score is "
        "negative the loss is max(0, 1 - x_y), not 1 + max_other - x_y. Convex, gradient bounded and "
        "piecewise constant (not differentiable where the maximiser changes or at the margin; subgradient: the "
        "first maximiser, 0 at the margin).",
        formula=r"\ell = \max\left(0,\ 1 + \max_c (1 - y_c)\,\hat y_c - \sum_c y_c \hat y_c\right)",
        use_cases=("Multi-class SVM-style training", "Margin-based alternatives to softmax cross-entropy"),
        equivalents={
            "keras": "keras.losses.CategoricalHinge",
            "torch": "torch.nn.MultiMarginLoss sums the hinge over every wrong class (divided by C) instead of "
            "taking the largest, and has no floor at 0 (see multi_margin)",
        },
        references=(
            "Crammer, K., Singer, Y. (2001). On the Algorithmic Implementation of Multiclass Kernel-based Vector "
            "Machines. JMLR.",
        ),
    ),
)
def categorical_hinge() -> KernelFunction:
    return categorical_hinge_kernel


class MultiMarginParams(Params):
    p: Literal[1, 2] = Field(1, description="Exponent of each hinge term: 1 (hinge) or 2 (squared hinge).")
    margin: float = Field(1.0, description="Margin the true class's score must exceed each other score by.")
    class_weights: list[Annotated[float, Field(ge=0)]] | None = Field(
        None,
        min_length=1,
        description="One non-negative weight per class (length C): the true class's weight "
        "scales the sample's loss (torch's weight).",
    )


@script(LOSSD, default_opset=op)
def multi_margin_terms(predictions, targets, margin, class_weights):  # type: ignore[no-untyped-def]
    """h_i = max(0, margin - x_y + x_i) for i != y (0 at y), the label one-hot, and w_y / C."""
    axis = op.Constant(value_ints=[-1])
    one_hot = one_hot_labels(predictions, targets)
    true_score = op.ReduceSum(one_hot * predictions, axis, keepdims=1)
    # per-row values reach the (N, C) terms as outer products (spread): a (N, 1) column broadcast over
    # short rows is onnxruntime's slow path
    h = op.Relu(spread(margin - true_score, predictions) + predictions) * (1.0 - one_hot)
    classes = op.CastLike(op.Shape(predictions, start=-1), predictions)
    return h, one_hot, op.ReduceSum(class_weights * one_hot, axis, keepdims=1) / classes


@script(LOSSD, default_opset=op)
def multi_margin_gradient(d, one_hot):  # type: ignore[no-untyped-def]
    """d_i = d loss / d x_i for i != y; the true class gets -sum_i d_i."""
    return d - one_hot * spread(op.ReduceSum(d, op.Constant(value_ints=[-1]), keepdims=1), d)


@script(LOSSD, default_opset=op)
def multi_margin_p1(predictions, targets, margin, class_weights):  # type: ignore[no-untyped-def]
    h, one_hot, scale = multi_margin_terms(predictions, targets, margin, class_weights)
    elements = scale * op.ReduceSum(h, op.Constant(value_ints=[-1]), keepdims=1)
    d = spread(scale, h) * op.CastLike(op.Greater(h, op.CastLike(0.0, h)), h)
    return elements, multi_margin_gradient(d, one_hot)


@script(LOSSD, default_opset=op)
def multi_margin_p2(predictions, targets, margin, class_weights):  # type: ignore[no-untyped-def]
    h, one_hot, scale = multi_margin_terms(predictions, targets, margin, class_weights)
    elements = scale * op.ReduceSum(h * h, op.Constant(value_ints=[-1]), keepdims=1)
    return elements, multi_margin_gradient(spread(2.0 * scale, h) * h, one_hot)


@loss(
    name="multi_margin",
    task="classification",
    inputs=(
        Input("predictions", ("N", "C"), "real", "Raw class scores.", differentiable=True),
        Input("targets", ("N",), "label", "Integer class labels in [0, C)."),
    ),
    params=MultiMarginParams,
    curve=true_class_score(3, labels=True),
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=True,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Multi-class margin loss",
        summary="torch.nn.MultiMarginLoss: every wrong class whose score comes within the margin of the true "
        "class's score adds its shortfall (squared for p = 2), and the sum is divided by the number of classes C "
        "(including the true class). A class weight scales the whole sample by the weight of its true class; "
        "the mean is torch's, the plain mean over samples (not divided by the sum of class weights). "
        "Properties are those of the default p = 1: convex, bounded gradient, kinks where a term reaches 0 "
        "(subgradient 0 there, as torch).",
        formula=r"\ell = \frac{1}{C} \sum_{i \ne y} w_y \max(0,\ m - \hat y_y + \hat y_i)^p",
        use_cases=("Multi-class SVM-style training (Weston-Watkins)", "Margin-based classification heads"),
        equivalents={
            "torch": "torch.nn.MultiMarginLoss(p, margin, weight)",
            "keras": "none; keras.losses.CategoricalHinge takes the largest wrong score instead of the sum",
        },
        references=(
            "Weston, J., Watkins, C. (1999). Support Vector Machines for Multi-Class Pattern Recognition. ESANN.",
        ),
    ),
)
def multi_margin(p: Literal[1, 2]) -> KernelFunction:
    return multi_margin_p2 if p == 2 else multi_margin_p1


# -- the rest of torch.nn's classification losses ---------------------------------------------------

STRICT_SIGNED_TARGETS = Input(
    "targets", ("N", "..."), "real", "Labels -1 or 1, same shape as predictions (torch).", allowed=(-1.0, 1.0)
)


@script(LOSSD, default_opset=op)
def soft_margin_kernel(predictions, targets):  # type: ignore[no-untyped-def]
    # log(1 + exp(-z)) = softplus(-z), z = y x, from logistic's overflow-free pieces
    _, s_neg, _, softplus_neg = logistic(targets * predictions)
    return softplus_neg, op.Neg(targets * s_neg)


@loss(
    name="soft_margin",
    task="classification",
    inputs=(SCORES, STRICT_SIGNED_TARGETS),
    curve=margin(),
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=True,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation="Logistic-regression negative log-likelihood of -1/1 labels given the score "
        "as a logit.",
    ),
    card=Card(
        title="Soft margin loss",
        summary="torch.nn.SoftMarginLoss: the logistic loss log(1 + exp(-y x)) of -1/1 labels, a smooth hinge. "
        "Averaged over all non-batch axes (element-wise), so the mean is torch's mean over every element. "
        "Convex, with a bounded gradient -y sigmoid(-y x) that is Lipschitz (constant 1/4); computed without "
        "overflow for any score (torch's log(1 + exp(-y x)) is inf beyond -y x = 88 in float32). Labels must "
        "be -1 or 1 (torch computes the formula for any y; 0/1 labels "
        "are a 422 here: send 2y - 1, or use binary_cross_entropy with from_logits).",
        formula=r"\ell = \log\left(1 + e^{-y\,\hat y}\right),\quad y \in \{-1, 1\}",
        use_cases=(
            "Binary classification with -1/1 labels (logistic regression on raw scores)",
            "A smooth alternative to the hinge loss",
        ),
        equivalents={
            "torch": "torch.nn.SoftMarginLoss",
            "keras": "none; keras.losses.BinaryCrossentropy(from_logits=True) on (y + 1) / 2 is the same value",
        },
        references=("Cox, D. R. (1958). The regression analysis of binary sequences. JRSS B.",),
    ),
)
def soft_margin() -> KernelFunction:
    return soft_margin_kernel


class HingeEmbeddingParams(Params):
    margin: float = Field(1.0, description="Dissimilar pairs (label -1) cost max(0, margin - x).")


@script(LOSSD, default_opset=op)
def hinge_embedding_kernel(predictions, targets, margin):  # type: ignore[no-untyped-def]
    similar = op.CastLike(op.Equal(targets, op.CastLike(1.0, targets)), predictions)
    slack = margin - predictions
    # torch's clamp_min passes the gradient where slack >= 0: -1 at the margin itself
    active = op.CastLike(op.GreaterOrEqual(slack, op.CastLike(0.0, slack)), slack)
    dissimilar = 1.0 - similar
    return similar * predictions + dissimilar * op.Relu(slack), similar - dissimilar * active


@loss(
    name="hinge_embedding",
    task="ranking",
    inputs=(
        Input(
            "predictions",
            ("N", "..."),
            "real",
            "Distances (or any dissimilarity score) between the two items of each pair, e.g. an L1 distance.",
            differentiable=True,
        ),
        Input(
            "targets", ("N", "..."), "real", "1 for similar pairs, -1 for dissimilar ones (torch).", allowed=(-1.0, 1.0)
        ),
    ),
    params=HingeEmbeddingParams,
    curve=margin(),
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=True,
        differentiable=False,
        bounded_below=False,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Hinge embedding loss",
        summary="torch.nn.HingeEmbeddingLoss: a similar pair (label 1) costs its distance x, a dissimilar pair "
        "(label -1) costs max(0, margin - x), so dissimilar pairs are pushed at least the margin apart. "
        "Element-wise (averaged over the non-batch axes, torch's mean over every element). Convex, gradient 1, "
        "-1 or 0 (bounded, but it jumps at x = margin; at the kink -1, torch's clamp_min subgradient). The "
        "input is meant to be a distance (x >= 0); like torch it takes any real, and for label 1 the loss x is "
        "then unbounded below.",
        formula=r"\ell = \begin{cases} \hat y & y = 1 \\ \max(0,\ m - \hat y) & y = -1 \end{cases}",
        use_cases=(
            "Learning embeddings or similarity from pairs of items with a distance and a same/different label",
            "Semi-supervised embedding (Mobahi et al. 2009)",
        ),
        equivalents={
            "torch": "torch.nn.HingeEmbeddingLoss(margin)",
            "keras": "none",
            "lossd": "contrastive takes the two embeddings and squares both terms",
        },
        references=(
            "Mobahi, H., Collobert, R., Weston, J. (2009). Deep learning from temporal coherence in video. ICML.",
        ),
    ),
)
def hinge_embedding() -> KernelFunction:
    return hinge_embedding_kernel


class MultilabelSoftMarginParams(Params):
    class_weights: list[Annotated[float, Field(ge=0)]] | None = Field(
        None, min_length=1, description="One non-negative weight per class (length C): torch's weight."
    )


@script(LOSSD, default_opset=op)
def multilabel_soft_margin_kernel(predictions, targets, class_weights):  # type: ignore[no-untyped-def]
    # -[y log s(x) + (1 - y) log s(-x)] as the non-negative softplus terms (no cancellation)
    s, s_neg, softplus_x, softplus_neg_x = logistic(predictions)
    elements = class_weights * ((1.0 - targets) * softplus_x + targets * softplus_neg_x)
    return elements, class_weights * ((1.0 - targets) * s - targets * s_neg)


@loss(
    name="multilabel_soft_margin",
    task="classification",
    curve=two_labels(),
    inputs=(
        Input("predictions", ("N", "C"), "real", "Raw scores (logits), one per class.", differentiable=True),
        Input(
            "targets",
            ("N", "C"),
            "probability",
            "1 where the class applies, 0 where it does not (soft values in [0, 1] are accepted).",
        ),
    ),
    params=MultilabelSoftMarginParams,
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=True,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation="Negative log-likelihood of independent Bernoulli labels, one per class, "
        "divided by the number of classes.",
    ),
    card=Card(
        title="Multi-label soft margin loss",
        summary="torch.nn.MultiLabelSoftMarginLoss: a logistic loss per class on raw scores, each class's term "
        "scaled by its class weight and averaged over the C classes (per_sample is torch's per-sample loss). "
        "The same as binary_cross_entropy with from_logits on (N, C), which also offers pos_weight and label "
        "smoothing. Computed without overflow; convex, with a bounded, Lipschitz gradient.",
        formula=r"\ell = -\frac{1}{C}\sum_c w_c\left[y_c \log \sigma(\hat y_c) + "
        r"(1 - y_c)\log \sigma(-\hat y_c)\right]",
        use_cases=("Multi-label classification (tags, attributes) on logits",),
        equivalents={
            "torch": "torch.nn.MultiLabelSoftMarginLoss(weight)",
            "keras": "keras.losses.BinaryCrossentropy(from_logits=True) (no class weights)",
        },
        references=("Cox, D. R. (1958). The regression analysis of binary sequences. JRSS B.",),
    ),
)
def multilabel_soft_margin() -> KernelFunction:
    return multilabel_soft_margin_kernel
