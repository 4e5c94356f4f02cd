"""Margin (hinge) losses: Keras's binary, squared and categorical hinge, torch's multi-margin.

At a kink the gradient is the subgradient 0 for the hinge term (``max(s, 0)`` contributes
nothing where ``s = 0``), as ``torch.relu`` and torch's multi-margin backward do.
"""

from typing import Annotated, Literal

from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.curves import margin, true_class_score
from kernels.ops import LOSSD, one_hot_labels
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
    return op.Where(binary, 2.0 * targets - 1.0, targets)


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
    h = op.Relu(margin - true_score + predictions) * (1.0 - one_hot)
    classes = op.CastLike(op.Shape(predictions, start=-1), predictions)
    return h, one_hot, op.ReduceSum(class_weights * one_hot, axis, keepdims=1) / classes


@script(LOSSD, default_opset=op)
def multi_margin_gradient(d, one_hot):  # type: ignore[no-untyped-def]
    """d_i = d loss / d x_i for i != y; the true class gets -sum_i d_i."""
    return d - one_hot * op.ReduceSum(d, op.Constant(value_ints=[-1]), keepdims=1)


@script(LOSSD, default_opset=op)
def multi_margin_p1(predictions, targets, margin, class_weights):  # type: ignore[no-untyped-def]
    h, one_hot, scale = multi_margin_terms(predictions, targets, margin, class_weights)
    elements = scale * op.ReduceSum(h, op.Constant(value_ints=[-1]), keepdims=1)
    d = scale * op.CastLike(op.Greater(h, op.CastLike(0.0, h)), h)
    return elements, multi_margin_gradient(d, one_hot)


@script(LOSSD, default_opset=op)
def multi_margin_p2(predictions, targets, margin, class_weights):  # type: ignore[no-untyped-def]
    h, one_hot, scale = multi_margin_terms(predictions, targets, margin, class_weights)
    elements = scale * op.ReduceSum(h * h, op.Constant(value_ints=[-1]), keepdims=1)
    return elements, multi_margin_gradient(2.0 * scale * h, one_hot)


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
