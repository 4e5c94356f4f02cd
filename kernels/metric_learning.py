"""Metric-learning losses with in-batch structure: margin-softmax heads on cosine logits (ArcFace, CosFace; one
value per sample), and losses over a whole batch of embeddings and labels (NT-Xent, SupCon, Circle, triplets
mined in the batch; one value per batch, ``batch_level``). Every gradient is written out: through the softmax
or the mining choice to the pairwise similarity (or distance) matrix, then through it to the embeddings."""

import math
from collections.abc import Callable
from typing import Self

import numpy as np
from onnx import TensorProto
from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field, model_validator

from kernels.curves import Arrays, Curve
from kernels.imbalance import softmax_parts
from kernels.ops import LOSSD, logistic, one_hot_labels, select, spread
from kernels.ranking import hinge_active
from kernels.spec import Card, Input, KernelFunction, MinSize, Params, Properties, loss

F64 = TensorProto.DOUBLE

# --- shared pieces -----------------------------------------------------------------------------------


@script(LOSSD, default_opset=op)
def normalized(x):  # type: ignore[no-untyped-def]
    """torch's F.normalize(x, dim=-1) (pytorch-metric-learning's CosineSimilarity): x / max(||x||, 1e-12), the
    divisor, and 1 where the norm reached 1e-12 (where the divisor's gradient passes, as clamp_min's does)."""
    norm = op.Sqrt(op.ReduceSum(x * x, op.Constant(value_ints=[-1]), keepdims=1))
    tiny = op.CastLike(1e-12, x)
    return x / op.Max(norm, tiny), op.Max(norm, tiny), op.CastLike(op.GreaterOrEqual(norm, tiny), x)


@script(LOSSD, default_opset=op)
def cosine_backward(g, u, divisor, passed):  # type: ignore[no-untyped-def]
    """d loss / d x from g = d loss / d S, S = u u^T, u = x / divisor: (g + g^T) u, then through the
    normalisation (the component along u drops out)."""
    gu = op.MatMul(g + op.Transpose(g), u)
    return (gu - passed * u * op.ReduceSum(gu * u, op.Constant(value_ints=[-1]), keepdims=1)) / divisor


@script(LOSSD, default_opset=op)
def pair_masks(labels, like):  # type: ignore[no-untyped-def]
    """(N, N) masks in like's dtype: same label off the diagonal (positives), other label (negatives), and
    the diagonal as booleans."""
    same = op.Equal(
        op.Unsqueeze(labels, op.Constant(value_ints=[1])), op.Unsqueeze(labels, op.Constant(value_ints=[0]))
    )
    diagonal = op.Greater(op.EyeLike(like), op.CastLike(0.0, like))
    positives = op.CastLike(op.And(same, op.Not(diagonal)), like)
    return positives, op.CastLike(op.Not(same), like), diagonal


@script(LOSSD, default_opset=op)
def masked_log_softmax(a, keep):  # type: ignore[no-untyped-def]
    """Each row's log-softmax over the entries where keep (a boolean matrix) is true, and the softmax (0 where
    not kept). The dropped entries are set to -1e30 before the row maximum, so a diagonal that dominates the
    row (cosine 1 / temperature) cannot underflow the others."""
    axis = op.Constant(value_ints=[-1])
    masked = op.Where(keep, a, op.CastLike(-1e30, a))
    top = op.ReduceMax(masked, axis, keepdims=1)
    e = op.Where(keep, op.Exp(masked - top), op.CastLike(0.0, a))
    total = op.ReduceSum(e, axis, keepdims=1)
    # total >= 1 when a row keeps an entry (its maximum contributes 1); a row that keeps none gets 0s
    total = op.Max(total, op.CastLike(1.0, a))
    return masked - top - op.Log(total), e / total


@script(LOSSD, default_opset=op)
def batch_value(value):  # type: ignore[no-untyped-def]
    """A batch-level loss (shape (1,) or scalar) as the kernel's (1, 1) element."""
    return op.Reshape(value, op.Constant(value_ints=[1, 1]))


COSINES = (
    Input(
        "predictions",
        ("N", "C"),
        "cosine",
        "Cosine similarities in [-1, 1] between each embedding and each class centre (the head's logits "
        "before the scale).",
        differentiable=True,
    ),
    Input("targets", ("N",), "label", "Integer class labels in [0, C)."),
)
EMBEDDINGS = (
    Input("embeddings", ("N", "D"), "real", "One embedding per sample.", differentiable=True),
    Input("labels", ("N",), "label", "Integer class (identity) of each embedding: equal labels make positives."),
)
TWO_SAMPLES = (MinSize("N", 2, "embeddings", "a batch needs at least two embeddings to form pairs"),)


# --- curves ------------------------------------------------------------------------------------------


def _true_cosine() -> Curve:
    """The true class's cosine x against two other classes at cosine 0."""

    def inputs(x: np.ndarray) -> Arrays:
        cosines = np.zeros((x.size, 3))
        cosines[:, 0] = x
        return {"predictions": cosines, "targets": np.zeros(x.size, dtype=np.int64)}

    def direction(x: np.ndarray) -> Arrays:
        d = np.zeros((x.size, 3))
        d[:, 0] = 1.0
        return {"predictions": d}

    return Curve("cosine of the true class (the other two at 0)", -0.99, 0.99, inputs, direction)


def _moving(
    variable: str,
    stop: float,
    batch: np.ndarray,
    labels: np.ndarray | None,
    name: str,
    position: Callable[[np.ndarray], np.ndarray],
    velocity: Callable[[np.ndarray], np.ndarray],
) -> Curve:
    """A batch-level loss along x: each point is the batch ``batch`` (rows: embeddings of input ``name``)
    with its row 1 at ``position(x)``; ``labels`` fixed (None: nt_xent, whose batch is x1 = rows 0-1, x2 =
    rows 2-3)."""

    def inputs(x: np.ndarray) -> Arrays:
        rows = np.repeat(batch[None], x.size, axis=0)
        rows[:, 1] = position(x)
        if labels is None:
            return {"x1": rows[:, :2], "x2": rows[:, 2:]}
        return {name: rows, "labels": np.repeat(labels[None], x.size, axis=0)}

    def direction(x: np.ndarray) -> Arrays:
        d = np.zeros((x.size, *batch.shape))
        d[:, 1] = velocity(x)
        return {"x1": d[:, :2], "x2": d[:, 2:]} if labels is None else {name: d}

    return Curve(variable, 0.0, stop, inputs, direction)


def _turning(variable: str, batch: np.ndarray, labels: np.ndarray | None) -> Curve:
    """Row 1 at angle x from (1, 0) on the unit circle."""
    return _moving(
        variable,
        math.pi,
        batch,
        labels,
        "embeddings",
        lambda x: np.stack([np.cos(x), np.sin(x)], axis=1),
        lambda x: np.stack([-np.sin(x), np.cos(x)], axis=1),
    )


LABELLED = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [-0.6, -0.8]])
PAIR_OF_CLASSES = np.array([0, 0, 1, 1])
ANGLE = "angle between the two class-0 embeddings (class 1 at (0, -1) and (-0.6, -0.8))"
# nt_xent: x1 = [(1, 0), (cos x, sin x)], x2 = [(1, 0), (0, 1)]: x1's second sample turns towards its view
VIEWS = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
DISTANCES = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 1.0], [0.0, -1.5]])


def _distance_curve() -> Curve:
    return _moving(
        "distance from embedding 0 to its positive (negatives 1 and 1.5 away)",
        3.0,
        DISTANCES,
        PAIR_OF_CLASSES,
        "embeddings",
        lambda x: np.stack([x, np.zeros_like(x)], axis=1),
        lambda x: np.stack([np.ones_like(x), np.zeros_like(x)], axis=1),
    )


# --- arcface / cosface -------------------------------------------------------------------------------


class ArcFaceParams(Params):
    s: float = Field(64.0, gt=0, allow_inf_nan=False, description="Scale of the logits (the feature norm).")
    m: float = Field(0.5, ge=0, lt=math.pi, allow_inf_nan=False, description="Additive angular margin, in radians.")
    eps: float = Field(
        1e-7,
        gt=0,
        lt=0.5,
        allow_inf_nan=False,
        description="The target cosine is clipped to [-1 + eps, 1 - eps] before its angle is taken, where the "
        "arccos derivative is infinite.",
    )


class CosFaceParams(Params):
    s: float = Field(64.0, gt=0, allow_inf_nan=False, description="Scale of the logits (the feature norm).")
    m: float = Field(0.35, ge=0, allow_inf_nan=False, description="Additive cosine margin.")


@script(LOSSD, default_opset=op)
def margin_softmax(predictions, one_hot, target, slope, s):  # type: ignore[no-untyped-def]
    """Cross-entropy of s * logits, the target class's cosine replaced by ``target`` (N, 1) (whose derivative in
    the cosine is ``slope``, a scalar or (N, C)): per-sample losses (N, 1) and d loss / d predictions."""
    axis = op.Constant(value_ints=[-1])
    cosine = op.ReduceSum(one_hot * predictions, axis, keepdims=1)
    # softmax_parts keeps a confident sample's small loss exact (log1p of the other classes' mass); the
    # per-sample shift reaches the classes as an outer product (kernels.ops)
    log_p, p, _ = softmax_parts(s * (predictions + one_hot * spread(target - cosine, one_hot)))
    elements = op.Neg(op.ReduceSum(one_hot * log_p, axis, keepdims=1))
    d = s * (p - one_hot)
    return elements, d * (1.0 - one_hot + one_hot * slope)


@script(LOSSD, default_opset=op)
def arcface_kernel(predictions, targets, s, m, eps):  # type: ignore[no-untyped-def]
    one_hot = one_hot_labels(predictions, targets)
    c = op.ReduceSum(one_hot * predictions, op.Constant(value_ints=[-1]), keepdims=1)
    one = op.CastLike(1.0, c)
    clipped = op.Clip(c, eps - one, one - eps)
    # With theta = arccos(clipped): cos(theta + m) = c cos m - sin(theta) sin m while theta + m <= pi, i.e.
    # c >= -cos m; beyond, pytorch-metric-learning's (and insightface's) linear continuation cos(theta) - m sin m
    # keeps the logit decreasing in theta. cos(theta) there is the cosine itself: the clip applies to the angle
    # only, where the arccos derivative blows up.
    cos_m, sin_m = op.Cos(m), op.Sin(m)
    sine = op.Sqrt((one - clipped) * (one + clipped))  # sin(theta) >= sqrt(eps (2 - eps)) > 0
    inside = op.GreaterOrEqual(c, op.Neg(cos_m))
    moved = select(inside, clipped * cos_m - sine * sin_m, c - m * sin_m)
    passed = op.CastLike(op.Equal(clipped, c), c)
    # d cos(theta + m) / dc = sin(theta + m) / sin(theta) = cos m + c sin m / sin(theta)
    slope = select(inside, passed * (cos_m + clipped * sin_m / sine), one)
    elements, gradient = margin_softmax(predictions, one_hot, moved, spread(slope, predictions), s)
    return elements, gradient


@script(LOSSD, default_opset=op)
def cosface_kernel(predictions, targets, s, m):  # type: ignore[no-untyped-def]
    one_hot = one_hot_labels(predictions, targets)
    c = op.ReduceSum(one_hot * predictions, op.Constant(value_ints=[-1]), keepdims=1)
    elements, gradient = margin_softmax(predictions, one_hot, c - m, op.CastLike(1.0, c), s)
    return elements, gradient


@loss(
    name="arcface",
    aliases=("additive_angular_margin",),
    task="ranking",
    inputs=COSINES,
    params=ArcFaceParams,
    curve=_true_cosine(),
    properties=Properties(
        smooth_gradient=False,
        convex=False,
        differentiable=False,
        robust_to_outliers=True,
        bounded_below=True,
        probabilistic_interpretation="-log of the softmax probability of the true class, the margin making the "
        "training target stricter than the decision rule.",
    ),
    card=Card(
        title="ArcFace (additive angular margin) loss",
        summary="Softmax cross-entropy on scaled cosine logits s cos(theta_j), the true class's angle widened by the "
        "margin: s cos(theta_y + m). The inputs are the cosines (predictions, in [-1, 1]) between L2-normalised "
        "embeddings and L2-normalised class weights, so the head's weights stay with the client, and targets the "
        "labels, as in sparse_cross_entropy. Where theta_y + m would pass pi the logit continues linearly, "
        "cos(theta_y) - m sin(m), as pytorch-metric-learning and insightface do, so it keeps decreasing. The "
        "derivative of cos(arccos(c) + m) is infinite at c = 1: the target cosine is clipped to [-1 + eps, "
        "1 - eps] before its angle is taken (eps = 1e-7), so a target cosine within eps of 1 has a finite "
        "logit and a zero gradient there (pytorch-metric-learning clips to [-1, 1] and returns an infinite "
        "gradient at exactly 1). Gradients grow like 1 / sin(theta_y) near theta_y = 0, hence not smooth; the "
        "branch switch makes the gradient jump, and the margin makes it non-convex.",
        formula=r"\ell = -\log \frac{e^{s \cos(\theta_y + m)}}{e^{s \cos(\theta_y + m)} + \sum_{j \ne y} "
        r"e^{s \cos\theta_j}},\quad \cos\theta_j = \text{predictions}_j",
        use_cases=(
            "Face recognition and verification heads (the paper's setting: s = 64, m = 0.5)",
            "Speaker, person and product re-identification with many identities",
            "Any classifier trained for a discriminative embedding on the hypersphere",
        ),
        equivalents={
            "pytorch-metric-learning": "losses.ArcFaceLoss(num_classes, embedding_size, margin=degrees(m), "
            "scale=s) on the cosines its CosineSimilarity gives (embeddings against its W): same values and "
            "gradients for target cosines inside (-1 + eps, 1 - eps). Its margin is in degrees, default 28.6 "
            "(0.4992 rad): send m = 0.4992 for its default",
            "insightface": "ArcFace with easy_margin=False (the same linear continuation past theta + m = pi)",
            "paper": "Deng et al. 2019, Eq. 3, with s = 64, m = 0.5",
            "torch": "none in torch.nn",
            "keras": "none in Keras 3",
        },
        references=(
            "Deng, J., Guo, J., Xue, N., Zafeiriou, S. (2019). ArcFace: Additive Angular Margin Loss for Deep Face "
            "Recognition. CVPR.",
            "Musgrave, K., Belongie, S., Lim, S.-N. (2020). pytorch-metric-learning, losses.ArcFaceLoss.",
        ),
    ),
)
def arcface() -> KernelFunction:
    return arcface_kernel


@loss(
    name="cosface",
    aliases=("large_margin_cosine",),
    task="ranking",
    inputs=COSINES,
    params=CosFaceParams,
    curve=_true_cosine(),
    properties=Properties(
        smooth_gradient=False,
        convex=True,
        differentiable=True,
        robust_to_outliers=True,
        bounded_below=True,
        probabilistic_interpretation="-log of the softmax probability of the true class, its cosine lowered by "
        "the margin.",
    ),
    card=Card(
        title="CosFace (large margin cosine) loss",
        summary="Softmax cross-entropy on scaled cosine logits with the true class's cosine lowered by the "
        "margin: s (cos(theta_y) - m). Predictions are the cosines in [-1, 1] between L2-normalised embeddings "
        "and class weights (the head stays with the client), targets the labels, as in sparse_cross_entropy. "
        "A cross-entropy of an affine function of the cosines: convex and differentiable, with gradients bounded "
        "by s; but the scale makes the curvature (up to about s^2 / 2 where classes compete, 2048 at s = 64) vary "
        "by orders of magnitude across the box, so the gradient is not smooth in the property tests' sense.",
        formula=r"\ell = -\log \frac{e^{s (\cos\theta_y - m)}}{e^{s (\cos\theta_y - m)} + \sum_{j \ne y} "
        r"e^{s \cos\theta_j}}",
        use_cases=(
            "Face recognition heads (the paper: s = 64, m = 0.35)",
            "Re-identification and retrieval embeddings trained as a classifier",
        ),
        equivalents={
            "pytorch-metric-learning": "losses.CosFaceLoss(num_classes, embedding_size, margin=m, scale=s) on "
            "the cosines its CosineSimilarity gives: same values and gradients",
            "paper": "Wang et al. 2018 (LMCL), Eq. 4",
            "torch": "none in torch.nn",
            "keras": "none in Keras 3",
        },
        references=(
            "Wang, H. et al. (2018). CosFace: Large Margin Cosine Loss for Deep Face Recognition. CVPR.",
            "Musgrave, K., Belongie, S., Lim, S.-N. (2020). pytorch-metric-learning, losses.CosFaceLoss.",
        ),
    ),
)
def cosface() -> KernelFunction:
    return cosface_kernel


# --- nt_xent / supcon --------------------------------------------------------------------------------


class NTXentParams(Params):
    temperature: float = Field(
        0.07, gt=0, allow_inf_nan=False, description="Divides the cosine similarities before the softmax."
    )


class SupConParams(Params):
    temperature: float = Field(
        0.1, gt=0, allow_inf_nan=False, description="Divides the cosine similarities before the softmax."
    )


@script(LOSSD, default_opset=op)
def contrastive_softmax(u, positives, diagonal, temperature):  # type: ignore[no-untyped-def]
    """Each anchor's -mean over its positives of log softmax_j(S_ij / temperature), the softmax over every
    j != i (SupCon's L_out): per-anchor losses (N, 1), d loss_i / d S_ij, and the number of positives."""
    axis = op.Constant(value_ints=[-1])
    log_p, p = masked_log_softmax(op.MatMul(u, op.Transpose(u)) / temperature, op.Not(diagonal))
    count = op.ReduceSum(positives, axis, keepdims=1)
    share = positives / op.Max(count, op.CastLike(1.0, count))
    return op.Neg(op.ReduceSum(share * log_p, axis, keepdims=1)), (p - share) / temperature, count


@script(LOSSD, default_opset=op)
def nt_xent_kernel(x1, x2, temperature):  # type: ignore[no-untyped-def]
    z = op.Concat(x1, x2, axis=0)
    u, divisor, passed = normalized(z)
    n = op.Shape(x1, start=0, end=1)
    rows = op.Range(op.Constant(value_int=0), op.Squeeze(op.Shape(z, start=0, end=1)), op.Constant(value_int=1))
    partner = op.Mod(rows + op.Squeeze(n), op.Squeeze(op.Shape(z, start=0, end=1)))
    positives = op.CastLike(
        op.Equal(op.Unsqueeze(partner, op.Constant(value_ints=[1])), op.Unsqueeze(rows, op.Constant(value_ints=[0]))),
        z,
    )
    diagonal = op.Greater(op.EyeLike(positives), op.CastLike(0.0, z))
    losses, g, _ = contrastive_softmax(u, positives, diagonal, temperature)
    pairs = op.CastLike(op.Shape(z, start=0, end=1), z)  # 2N positive pairs, one per anchor
    gradient = cosine_backward(g / pairs, u, divisor, passed)
    return (
        batch_value(op.ReduceSum(losses) / pairs),
        op.Slice(gradient, op.Constant(value_ints=[0]), n),
        op.Slice(gradient, n, op.Constant(value_ints=[9223372036854775807])),
    )


@script(LOSSD, default_opset=op)
def average_nonzero(losses, gate):  # type: ignore[no-untyped-def]
    """pytorch-metric-learning's AvgNonZeroReducer: the mean over the anchors whose loss is above 0 (0 when
    none is), times gate; and each anchor's weight in it."""
    zero = op.CastLike(0.0, losses)
    counted = op.CastLike(op.Greater(losses, zero), losses) * gate
    weights = counted / op.Max(op.ReduceSum(counted), op.CastLike(1.0, losses))
    return batch_value(op.ReduceSum(weights * losses)), weights


@script(LOSSD, default_opset=op)
def supcon_kernel(embeddings, labels, temperature):  # type: ignore[no-untyped-def]
    u, divisor, passed = normalized(embeddings)
    positives, negatives, diagonal = pair_masks(labels, op.MatMul(u, op.Transpose(u)))
    losses, g, _ = contrastive_softmax(u, positives, diagonal, temperature)
    # pytorch-metric-learning returns 0 for a batch without any positive pair or without any negative pair
    zero = op.CastLike(0.0, u)
    gate = op.CastLike(op.And(op.Greater(op.ReduceMax(positives), zero), op.Greater(op.ReduceMax(negatives), zero)), u)
    value, weights = average_nonzero(losses, gate)
    return value, cosine_backward(weights * g, u, divisor, passed)


NT_XENT_VIEWS = (
    Input("x1", ("N", "D"), "real", "First view's embedding of each sample.", differentiable=True),
    Input(
        "x2",
        ("N", "D"),
        "real",
        "Second view's embedding of each sample, same shape as x1 (row i pairs with x1's row i).",
        differentiable=True,
    ),
)
SMOOTH_BATCH = Properties(
    robust_to_outliers=True,
    smooth_gradient=True,
    convex=False,
    differentiable=True,
    bounded_below=True,
    probabilistic_interpretation="The negative log-likelihood of picking each anchor's positives out of the batch "
    "with a softmax over cosine similarities (InfoNCE: a lower bound on the views' mutual information).",
)


@loss(
    name="nt_xent",
    aliases=("info_nce", "simclr"),
    task="ranking",
    inputs=NT_XENT_VIEWS,
    params=NTXentParams,
    batch_level=True,
    curve=_turning("angle of x1[1] from (1, 0) (its view x2[1] at (0, 1), sample 0's views at (1, 0))", VIEWS, None),
    properties=SMOOTH_BATCH,
    card=Card(
        title="NT-Xent (normalised temperature-scaled cross-entropy, InfoNCE)",
        summary="SimCLR's contrastive loss over two views of a batch: the 2N embeddings are L2-normalised, and each "
        "one's positive is its other view (x1[i] with x2[i]) against the 2N - 2 other embeddings as negatives, by a "
        "softmax over cosine similarities divided by the temperature. One value for the whole batch: the mean over "
        "the 2N anchors (no sample weights). The inputs are named x1 and x2 like the other pair losses (contrastive, "
        "cosine_embedding): row i of both is one sample. Computed as an exact log-softmax; pytorch-metric-learning "
        "adds the dtype's smallest normal number inside its log, which caps its loss near 87 in float32 and is "
        "otherwise invisible. Smooth in the embeddings away from zero vectors (the normalisation's gradient grows "
        "like 1 / ||x|| near the origin, where a cosine is undefined), and not convex.",
        formula=r"\mathcal L = \frac{1}{2N} \sum_{i=1}^{2N} -\log \frac{e^{s_{i,p(i)} / \tau}}{\sum_{j \ne i} "
        r"e^{s_{ij} / \tau}},\quad s_{ij} = \frac{z_i \cdot z_j}{\lVert z_i \rVert \lVert z_j \rVert},\ "
        r"z = [x_1; x_2]",
        use_cases=(
            "Self-supervised representation learning from augmented views (SimCLR, MoCo-style in-batch negatives)",
            "Aligning paired modalities (image-text, CLIP-style, with one direction per view)",
        ),
        equivalents={
            "pytorch-metric-learning": "losses.SelfSupervisedLoss(losses.NTXentLoss(temperature), symmetric=True)"
            "(x1, x2), i.e. NTXentLoss(temperature)(cat(x1, x2), cat(arange(N), arange(N))): same values and "
            "gradients (default temperature 0.07, as its NTXentLoss)",
            "paper": "Chen et al. 2020 (SimCLR), Eq. 1 averaged over the 2N ordered pairs; the paper uses "
            "temperature 0.1 to 0.5",
            "torch": "none in torch.nn: F.cross_entropy on the masked similarity matrix",
            "keras": "none in Keras 3",
        },
        references=(
            "Chen, T., Kornblith, S., Norouzi, M., Hinton, G. (2020). A Simple Framework for Contrastive Learning "
            "of Visual Representations. ICML.",
            "van den Oord, A., Li, Y., Vinyals, O. (2018). Representation Learning with Contrastive Predictive "
            "Coding. arXiv:1807.03748.",
        ),
    ),
)
def nt_xent() -> KernelFunction:
    return nt_xent_kernel


@loss(
    name="supcon",
    aliases=("supervised_contrastive",),
    task="ranking",
    inputs=EMBEDDINGS,
    params=SupConParams,
    batch_level=True,
    min_sizes=TWO_SAMPLES,
    curve=_turning(ANGLE, LABELLED, PAIR_OF_CLASSES),
    properties=SMOOTH_BATCH,
    card=Card(
        title="Supervised contrastive loss (SupCon)",
        summary="Khosla et al.'s L_out over a labelled batch: embeddings are L2-normalised, and each anchor's loss "
        "is minus the mean, over the other embeddings with its label, of the log-softmax of its cosine "
        "similarities / temperature over every other embedding. One value for the whole batch: "
        "pytorch-metric-learning's AvgNonZeroReducer, the mean over the anchors whose loss is above 0 (anchors "
        "without a positive drop out); 0 for a batch without any positive or any negative pair. Smooth away from "
        "zero vectors (near them the normalisation's gradient grows like 1 / ||x||); not convex.",
        formula=r"\mathcal L = \frac{1}{|A|} \sum_{i \in A} \frac{-1}{|P(i)|} \sum_{p \in P(i)} \log "
        r"\frac{e^{s_{ip} / \tau}}{\sum_{j \ne i} e^{s_{ij} / \tau}}",
        use_cases=(
            "Supervised pre-training of embeddings with several positives per anchor",
            "Classification backbones trained contrastively, then fitted with a linear head",
        ),
        equivalents={
            "pytorch-metric-learning": "losses.SupConLoss(temperature)(embeddings, labels): same values and "
            "gradients (default temperature 0.1)",
            "paper": "Khosla et al. 2020, Eq. 2 (L_out, the variant the paper recommends), averaged over anchors "
            "with a positive",
            "torch": "none in torch.nn",
            "keras": "none in Keras 3",
        },
        references=(
            "Khosla, P. et al. (2020). Supervised Contrastive Learning. NeurIPS.",
            "Musgrave, K., Belongie, S., Lim, S.-N. (2020). pytorch-metric-learning, losses.SupConLoss.",
        ),
    ),
)
def supcon() -> KernelFunction:
    return supcon_kernel


# --- circle ------------------------------------------------------------------------------------------


class CircleParams(Params):
    m: float = Field(
        0.4, ge=0, allow_inf_nan=False, description="Relaxation: optima 1 + m and -m, decision margins 1 - m and m."
    )
    gamma: float = Field(80.0, gt=0, allow_inf_nan=False, description="Scale of the similarities.")


@script(LOSSD, default_opset=op)
def masked_logsumexp(z, keep):  # type: ignore[no-untyped-def]
    """Each row's log-sum-exp over the kept entries (boolean keep), and the softmax weights of the kept ones."""
    axis = op.Constant(value_ints=[-1])
    masked = op.Where(keep, z, op.CastLike(-1e30, z))
    top = op.ReduceMax(masked, axis, keepdims=1)
    e = op.Where(keep, op.Exp(masked - top), op.CastLike(0.0, z))
    total = op.Max(op.ReduceSum(e, axis, keepdims=1), op.CastLike(1.0, z))  # >= 1 where a row keeps an entry
    return top + op.Log(total), e / total


@script(LOSSD, default_opset=op)
def circle_kernel(embeddings, labels, m, gamma):  # type: ignore[no-untyped-def]
    axis = op.Constant(value_ints=[-1])
    u, divisor, passed = normalized(embeddings)
    s = op.MatMul(u, op.Transpose(u))
    positives, negatives, _ = pair_masks(labels, s)
    zero = op.CastLike(0.0, s)
    # alpha_p = relu(1 + m - s), alpha_n = relu(s + m): gamma alpha (s - delta) and its full derivative
    alpha_p = op.Relu(1.0 + m - s)
    alpha_n = op.Relu(s + m)
    z_p = op.Neg(gamma) * alpha_p * (s - (1.0 - m))
    z_n = gamma * alpha_n * (s - m)
    dz_p = op.Neg(gamma) * (alpha_p - op.CastLike(op.Greater(alpha_p, zero), s) * (s - (1.0 - m)))
    dz_n = gamma * (alpha_n + op.CastLike(op.Greater(alpha_n, zero), s) * (s - m))
    lse_p, w_p = masked_logsumexp(z_p, op.Greater(positives, zero))
    lse_n, w_n = masked_logsumexp(z_n, op.Greater(negatives, zero))
    total = lse_p + lse_n
    sig, _, soft, _ = logistic(total)
    # anchors without a positive or without a negative count 0 (and drop out of the mean)
    both = op.CastLike(
        op.And(
            op.Greater(op.ReduceMax(positives, axis, keepdims=1), zero),
            op.Greater(op.ReduceMax(negatives, axis, keepdims=1), zero),
        ),
        s,
    )
    value, weights = average_nonzero(both * soft, op.CastLike(1.0, s))
    g = (weights * sig) * (w_p * dz_p + w_n * dz_n)
    return value, cosine_backward(g, u, divisor, passed)


@loss(
    name="circle",
    task="ranking",
    inputs=EMBEDDINGS,
    params=CircleParams,
    batch_level=True,
    min_sizes=TWO_SAMPLES,
    curve=_turning(ANGLE, LABELLED, PAIR_OF_CLASSES),
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=False,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Circle loss",
        summary="Sun et al.'s unified pair loss over a labelled batch: on cosine similarities of the L2-normalised "
        "embeddings, each anchor's positives s_p and negatives s_n enter softplus(logsumexp(-gamma alpha_p (s_p - "
        "(1 - m))) + logsumexp(gamma alpha_n (s_n - m))) with self-paced weights alpha_p = max(1 + m - s_p, 0), "
        "alpha_n = max(s_n + m, 0), which push the pair furthest from its optimum hardest. One value for the "
        "batch: the mean over anchors with both a positive and a negative (pytorch-metric-learning's "
        "AvgNonZeroReducer). Gradients are the loss's own (as Keras's circle gives): pytorch-metric-learning and "
        "the paper's code treat alpha_p and alpha_n as constants in backpropagation, so their gradients differ "
        "from ours (the values agree). Softplus is computed exactly (torch's Softplus returns x above 20, at most "
        "2e-9 short). The weight alpha_n switches off at s_n = -m: a kink; not convex.",
        formula=r"\mathcal L = \operatorname{mean}_i\ \log\Big(1 + \sum_{p \in P(i)} e^{-\gamma \alpha_p (s_p - "
        r"1 + m)} \sum_{n \in N(i)} e^{\gamma \alpha_n (s_n - m)}\Big),\ \alpha_p = [1 + m - s_p]_+,\ "
        r"\alpha_n = [s_n + m]_+",
        use_cases=(
            "Fine-grained image retrieval (the paper's m = 0.4, gamma = 80)",
            "Face recognition and person re-identification from pair labels (m = 0.25, gamma = 256 or 128)",
        ),
        equivalents={
            "pytorch-metric-learning": "losses.CircleLoss(m, gamma)(embeddings, labels): same values; its "
            "gradients detach alpha_p and alpha_n",
            "keras": "keras.losses.Circle(gamma, margin=m) on L2-normalised embeddings (it does not normalise): "
            "same per-anchor values and gradients, averaged over the anchors with a positive loss",
            "paper": "Sun et al. 2020, Eq. 6",
            "torch": "none in torch.nn",
        },
        references=(
            "Sun, Y. et al. (2020). Circle Loss: A Unified Perspective of Pair Similarity Optimization. CVPR.",
            "Musgrave, K., Belongie, S., Lim, S.-N. (2020). pytorch-metric-learning, losses.CircleLoss.",
        ),
    ),
)
def circle() -> KernelFunction:
    return circle_kernel


# --- triplets mined in the batch (TF-Addons) ---------------------------------------------------------


class TripletHardParams(Params):
    margin: float = Field(
        1.0,
        allow_inf_nan=False,
        description="Required gap between the nearest negative and the farthest positive distance (hinge only).",
    )
    soft: bool = Field(False, description="softplus(d_p - d_n) instead of the hinge max(d_p - d_n + margin, 0).")
    squared: bool = Field(False, description="Squared Euclidean distances (TF-Addons distance_metric='squared-L2').")

    @model_validator(mode="after")
    def _soft_takes_no_margin(self) -> Self:
        if self.soft and "margin" in self.model_fields_set:
            raise ValueError("margin applies only to soft=false: the soft form is softplus(d_p - d_n), without margin")
        return self


class TripletSemiHardParams(Params):
    margin: float = Field(
        1.0, allow_inf_nan=False, description="Required gap between the negative and the positive distance."
    )
    squared: bool = Field(False, description="Squared Euclidean distances (TF-Addons distance_metric='squared-L2').")


@script(LOSSD, default_opset=op)
def squared_distances(x):  # type: ignore[no-untyped-def]
    """TF-Addons' pairwise_distance before the root: ||x_i||^2 + ||x_j||^2 - 2 x_i.x_j, clamped at 0. That
    expanded form cancels: in float64, and on embeddings centred on the batch mean (the distances are the
    same), so neither float32 rounding (1e-4 relative on near pairs) nor a batch far from the origin costs
    digits. Also the clamped form's argument (for its derivative)."""
    w = op.Cast(x, to=F64)
    w = w - op.ReduceMean(w, op.Constant(value_ints=[0]), keepdims=1)
    norms = op.ReduceSum(w * w, op.Constant(value_ints=[-1]), keepdims=1)
    raw = op.CastLike(norms + op.Transpose(norms) - 2.0 * op.MatMul(w, op.Transpose(w)), x)
    return op.Max(raw, op.CastLike(0.0, x)), raw


@script(LOSSD, default_opset=op)
def euclidean_distances(x):  # type: ignore[no-untyped-def]
    """TF-Addons' pairwise_distance(squared=False): the distance matrix (0 on the diagonal and where the
    squared distance is not positive) and d D / d (squared distance), 0 there too."""
    sq, _ = squared_distances(x)
    zero = op.CastLike(0.0, x)
    off = 1.0 - op.EyeLike(sq)
    positive = op.CastLike(op.Greater(sq, zero), x) * off
    root = op.Sqrt(op.Where(op.Greater(positive, zero), sq, op.CastLike(1.0, x)))
    return root * positive, positive * 0.5 / root


@script(LOSSD, default_opset=op)
def plain_squared_distances(x):  # type: ignore[no-untyped-def]
    """pairwise_distance(squared=True): the clamped squared distances, 0 on the diagonal, and their derivative
    in the unclamped ones (tf.maximum passes the gradient at a tie)."""
    sq, raw = squared_distances(x)
    off = 1.0 - op.EyeLike(sq)
    return sq * off, op.CastLike(op.GreaterOrEqual(raw, op.CastLike(0.0, x)), x) * off


@script(LOSSD, default_opset=op)
def distance_backward(h, x):  # type: ignore[no-untyped-def]
    """d loss / d x from h = d loss / d (squared distance matrix): 2 ((r + c) x - (h + h^T) x), on x centred
    (the same value: the rows of (r + c) I - h - h^T sum to 0), so a batch far from the origin cancels less."""
    x = x - op.ReduceMean(x, op.Constant(value_ints=[0]), keepdims=1)
    spread = op.ReduceSum(h, op.Constant(value_ints=[-1]), keepdims=1) + op.Transpose(
        op.ReduceSum(h, op.Constant(value_ints=[0]), keepdims=1)
    )
    return 2.0 * (spread * x - op.MatMul(h + op.Transpose(h), x))


@script(LOSSD, default_opset=op)
def ties(values, chosen, axis):  # type: ignore[no-untyped-def]
    """Where values equals its reduction ``chosen`` along axis, each tie's share 1 / count (TF's and torch's
    amin / amax gradient splits evenly between equal values)."""
    hit = op.CastLike(op.Equal(values, chosen), values)
    return hit / op.ReduceSum(hit, axis, keepdims=1)


@script(LOSSD, default_opset=op)
def masked_minimum(d, mask):  # type: ignore[no-untyped-def]
    """TF-Addons' _masked_minimum along the last axis, min((d - max d) mask) + max d, as the minimum of d with
    the entries outside the mask raised to the row maximum (the same value, without the subtraction that costs
    float32 an ulp of the row maximum), and d value / d d: the masked ties share it, and where the row maximum
    ties (an empty mask), the rest goes to the row maximum, as TensorFlow's gradient does."""
    axis = op.Constant(value_ints=[-1])
    top = op.ReduceMax(d, axis, keepdims=1)
    raised = op.Where(op.Greater(mask, op.CastLike(0.0, mask)), d, top)
    low = op.ReduceMin(raised, axis, keepdims=1)
    share = ties(raised, low, axis)
    through_top = 1.0 - op.ReduceSum(share * mask, axis, keepdims=1)
    return low, share * mask + through_top * ties(d, top, axis)


@script(LOSSD, default_opset=op)
def masked_maximum(d, mask):  # type: ignore[no-untyped-def]
    """TF-Addons' _masked_maximum along the last axis, max((d - min d) mask) + min d, likewise."""
    axis = op.Constant(value_ints=[-1])
    bottom = op.ReduceMin(d, axis, keepdims=1)
    lowered = op.Where(op.Greater(mask, op.CastLike(0.0, mask)), d, bottom)
    high = op.ReduceMax(lowered, axis, keepdims=1)
    share = ties(lowered, high, axis)
    through_bottom = 1.0 - op.ReduceSum(share * mask, axis, keepdims=1)
    return high, share * mask + through_bottom * ties(d, bottom, axis)


@script(LOSSD, default_opset=op)
def label_masks(labels, like):  # type: ignore[no-untyped-def]
    """TF-Addons' masks in like's dtype: positives (same label, off the diagonal) and negatives."""
    positives, negatives, _ = pair_masks(labels, like)
    return positives, negatives


@script(LOSSD, default_opset=op)
def triplet_hard_gap(d, labels):  # type: ignore[no-untyped-def]
    """Batch-hard mining: each anchor's farthest positive distance minus its nearest negative distance (N, 1),
    and that gap's derivative in the distance matrix (TF-Addons' masked extrema: an anchor without a positive
    takes its row minimum, 0; without a negative, its row maximum)."""
    positives, negatives = label_masks(labels, d)
    nearest, d_nearest = masked_minimum(d, negatives)
    farthest, d_farthest = masked_maximum(d, positives)
    return farthest - nearest, d_farthest - d_nearest


@script(LOSSD, default_opset=op)
def anchor_mean(losses, slope, d_gap, dd, x):  # type: ignore[no-untyped-def]
    """The mean over every anchor of losses (N, 1) whose derivative in each anchor's gap is slope, and the
    gradient in x through the gap's derivative d_gap in the distances and dd in the squared distances."""
    anchors = op.CastLike(op.Shape(losses, start=0, end=1), losses)
    h = (slope / anchors) * d_gap
    return batch_value(op.ReduceSum(losses) / anchors), distance_backward(h * dd, x)


@script(LOSSD, default_opset=op)
def triplet_hard_euclidean(embeddings, labels, margin):  # type: ignore[no-untyped-def]
    d, dd = euclidean_distances(embeddings)
    gap, d_gap = triplet_hard_gap(d, labels)
    losses, slope = hinge_active(gap + margin)
    value, gradient = anchor_mean(losses, slope, d_gap, dd, embeddings)
    return value, gradient


@script(LOSSD, default_opset=op)
def triplet_hard_squared(embeddings, labels, margin):  # type: ignore[no-untyped-def]
    d, dd = plain_squared_distances(embeddings)
    gap, d_gap = triplet_hard_gap(d, labels)
    losses, slope = hinge_active(gap + margin)
    value, gradient = anchor_mean(losses, slope, d_gap, dd, embeddings)
    return value, gradient


@script(LOSSD, default_opset=op)
def triplet_soft_euclidean(embeddings, labels):  # type: ignore[no-untyped-def]
    d, dd = euclidean_distances(embeddings)
    gap, d_gap = triplet_hard_gap(d, labels)
    slope, _, losses, _ = logistic(gap)
    value, gradient = anchor_mean(losses, slope, d_gap, dd, embeddings)
    return value, gradient


@script(LOSSD, default_opset=op)
def triplet_soft_squared(embeddings, labels):  # type: ignore[no-untyped-def]
    d, dd = plain_squared_distances(embeddings)
    gap, d_gap = triplet_hard_gap(d, labels)
    slope, _, losses, _ = logistic(gap)
    value, gradient = anchor_mean(losses, slope, d_gap, dd, embeddings)
    return value, gradient


@script(LOSSD, default_opset=op)
def triplet_semihard_loss(d, dd, x, labels, margin):  # type: ignore[no-untyped-def]
    """TF-Addons' semi-hard mining: for each positive pair (a, p), the nearest negative farther than d(a, p), or
    else the farthest negative; the hinge summed over positive pairs, divided by their number. The (a, p, n)
    comparisons are an N x N x N tensor, as TF-Addons' tiled one."""
    zero = op.CastLike(0.0, d)
    positives, negatives = label_masks(labels, d)
    rows = op.Unsqueeze(d, op.Constant(value_ints=[1]))  # (a, 1, n): d(a, n)
    beyond = op.CastLike(op.Greater(rows, op.Unsqueeze(d, op.Constant(value_ints=[2]))), d) * op.Unsqueeze(
        negatives, op.Constant(value_ints=[1])
    )  # (a, p, n): n negative with d(a, n) > d(a, p)
    outside, d_outside = masked_minimum(op.Expand(rows, op.Shape(beyond)), beyond)  # (a, p, 1), (a, p, n)
    found = op.Greater(op.ReduceMax(beyond, op.Constant(value_ints=[-1]), keepdims=0), zero)  # (a, p)
    inside, d_inside = masked_maximum(d, negatives)  # (a, 1), (a, n)
    outside = op.Squeeze(outside, op.Constant(value_ints=[-1]))
    chosen = op.Where(found, outside, inside)
    z = (margin + d - chosen) * positives
    active = op.CastLike(op.GreaterOrEqual(z, zero), d) * positives
    count = op.Max(op.ReduceSum(positives), op.CastLike(1.0, d))
    r = active / count  # d loss / d z on each positive pair
    picked = op.CastLike(found, d)
    from_outside = op.ReduceSum(
        op.Unsqueeze(r * picked, op.Constant(value_ints=[2])) * d_outside, op.Constant(value_ints=[1]), keepdims=0
    )  # (a, n)
    from_inside = op.ReduceSum(r * (1.0 - picked), op.Constant(value_ints=[-1]), keepdims=1) * d_inside
    h = r - from_outside - from_inside
    return batch_value(op.ReduceSum(op.Relu(z)) / count), distance_backward(h * dd, x)


@script(LOSSD, default_opset=op)
def triplet_semihard_euclidean(embeddings, labels, margin):  # type: ignore[no-untyped-def]
    d, dd = euclidean_distances(embeddings)
    value, gradient = triplet_semihard_loss(d, dd, embeddings, labels, margin)
    return value, gradient


@script(LOSSD, default_opset=op)
def triplet_semihard_squared(embeddings, labels, margin):  # type: ignore[no-untyped-def]
    d, dd = plain_squared_distances(embeddings)
    value, gradient = triplet_semihard_loss(d, dd, embeddings, labels, margin)
    return value, gradient


MINED = Properties(
    robust_to_outliers=True,
    smooth_gradient=False,
    convex=False,
    differentiable=False,
    bounded_below=True,
    probabilistic_interpretation=None,
)
TFA_DISTANCES = (
    "Distances are TF-Addons' pairwise_distance on the raw embeddings (it does not normalise them; its docs "
    "ask for L2-normalised ones): ||x_i||^2 + ||x_j||^2 - 2 x_i.x_j clamped at 0, its root unless squared, 0 on "
    "the diagonal and for coincident embeddings (where the root's gradient is taken as 0); computed in float64 on "
    "the embeddings centred on the batch mean (the same distances, without the expanded form's cancellation)."
)


@loss(
    name="triplet_hard",
    aliases=("batch_hard_triplet",),
    task="ranking",
    inputs=EMBEDDINGS,
    params=TripletHardParams,
    batch_level=True,
    min_sizes=TWO_SAMPLES,
    curve=_distance_curve(),
    properties=MINED,
    card=Card(
        title="Batch-hard triplet loss",
        summary="Triplets mined in the batch (Hermans et al.): for every anchor, its farthest positive (same label) "
        "and its nearest negative, max(d_p - d_n + margin, 0), or softplus(d_p - d_n) with soft; one value for the "
        "batch, the mean over every anchor. As TF-Addons' triplet_hard_loss: an anchor without a positive takes "
        "d_p = 0 and one without a negative takes its farthest embedding as d_n (its masked extrema). "
        + TFA_DISTANCES
        + " The gradient flows to the mined pairs only (split evenly between tied distances, as TensorFlow's); "
        "mining switches and the hinge make the loss neither smooth nor convex.",
        formula=r"\mathcal L = \frac1N \sum_a \max\big(\max_{p: y_p = y_a} d_{ap} - \min_{n: y_n \ne y_a} "
        r"d_{an} + m,\ 0\big)\quad(\text{soft: } \log(1 + e^{d_p - d_n}))",
        use_cases=(
            "Person re-identification and face embeddings trained with P x K batches",
            "Metric learning where hard examples carry the signal",
        ),
        equivalents={
            "tf-addons": "tfa.losses.triplet_hard_loss(labels, embeddings, margin, soft, distance_metric='L2' or "
            "'squared-L2' for squared=true): same values and gradients ('angular' is not offered: send "
            "L2-normalised embeddings with squared=true for 2 - 2 cos)",
            "pytorch-metric-learning": "TripletMarginLoss with BatchHardMiner normalises the embeddings and averages "
            "over the non-zero triplets: a different convention",
            "torch": "none in torch.nn (TripletMarginLoss takes given triplets: see triplet)",
            "keras": "none in Keras 3",
        },
        references=(
            "Hermans, A., Beyer, L., Leibe, B. (2017). In Defense of the Triplet Loss for Person "
            "Re-Identification. arXiv:1703.07737.",
            "TensorFlow Addons, tfa.losses.triplet_hard_loss.",
        ),
    ),
)
def triplet_hard(soft: bool, squared: bool) -> KernelFunction:
    if soft:
        return triplet_soft_squared if squared else triplet_soft_euclidean
    return triplet_hard_squared if squared else triplet_hard_euclidean


@loss(
    name="triplet_semihard",
    aliases=("semihard_triplet",),
    task="ranking",
    inputs=EMBEDDINGS,
    params=TripletSemiHardParams,
    batch_level=True,
    min_sizes=TWO_SAMPLES,
    curve=_distance_curve(),
    properties=MINED,
    card=Card(
        title="Semi-hard triplet loss",
        summary="FaceNet's online semi-hard mining as TF-Addons' triplet_semihard_loss: for every positive pair "
        "(a, p) (same label, a != p), the nearest negative farther from a than p is, or, when there is none, the "
        "farthest negative; max(d_ap - d_an + margin, 0) summed over the positive pairs and divided by their "
        "number (0 for a batch without positive pairs, where TF-Addons divides 0 by 0). "
        + TFA_DISTANCES
        + " The (anchor, positive, negative) comparisons take an N x N x N tensor, as TF-Addons' tiled one does. "
        "Gradients flow to the mined pairs (split evenly between tied distances, as TensorFlow's); neither "
        "smooth nor convex.",
        formula=r"\mathcal L = \frac{1}{|P|} \sum_{(a, p) \in P} \max(d_{ap} - d_{an^*} + m,\ 0),\ "
        r"n^* = \arg\min_{n: y_n \ne y_a,\ d_{an} > d_{ap}} d_{an}\ (\text{else } \arg\max_n d_{an})",
        use_cases=(
            "FaceNet-style face embeddings (L2-normalised, margin 0.2 on squared distances)",
            "Metric learning with mining that avoids the collapse hardest negatives can cause",
        ),
        equivalents={
            "tf-addons": "tfa.losses.triplet_semihard_loss(labels, embeddings, margin, distance_metric='L2' or "
            "'squared-L2' for squared=true): same values and gradients",
            "facenet": "Schroff et al.: L2-normalised embeddings, squared=true, margin=0.2",
            "pytorch-metric-learning": "TripletMarginLoss with TripletMarginMiner('semihard') keeps every "
            "semi-hard triplet instead of one per positive pair: a different loss",
            "torch": "none in torch.nn",
            "keras": "none in Keras 3",
        },
        references=(
            "Schroff, F., Kalenichenko, D., Philbin, J. (2015). FaceNet: A Unified Embedding for Face Recognition "
            "and Clustering. CVPR.",
            "TensorFlow Addons, tfa.losses.triplet_semihard_loss.",
        ),
    ),
)
def triplet_semihard(squared: bool) -> KernelFunction:
    return triplet_semihard_squared if squared else triplet_semihard_euclidean
