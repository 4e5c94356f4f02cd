"""Metric-learning losses with in-batch structure: margin-softmax heads on cosine logits (ArcFace, CosFace; one
value per sample), and losses over a whole batch of embeddings and labels (NT-Xent, SupCon, Circle, triplets
mined in the batch; one value per batch, ``batch_level``). Every gradient is written out: through the softmax
or the mining choice to the pairwise similarity (or distance) matrix, then through it to the embeddings."""

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.imbalance import softmax_parts
from kernels.ops import LOSSD, logistic, one_hot_labels
from kernels.spec import Card, Input, InvalidInput, KernelFunction, MinSize, Params, Properties, loss

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
    same = op.Equal(op.Unsqueeze(labels, op.Constant(value_ints=[1])), op.Unsqueeze(labels, op.Constant(value_ints=[0])))
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


def check_cosines(params: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Cosine logits outside [-1, 1] have no angle: a 422 naming the first one."""
    cosines = arrays["predictions"]
    bad = ~((cosines >= -1.0) & (cosines <= 1.0))
    if bad.any():
        index = [int(i) for i in np.argwhere(bad)[0]]
        raise InvalidInput(
            "predictions", f"cosine similarities must lie in [-1, 1]; got {cosines[tuple(index)].item()!r} at {index}"
        )


COSINES = (
    Input(
        "predictions",
        ("N", "C"),
        "real",
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


# --- arcface / cosface -------------------------------------------------------------------------------


class ArcFaceParams(Params):
    s: float = Field(64.0, gt=0, allow_inf_nan=False, description="Scale of the logits (the feature norm).")
    m: float = Field(
        0.5, ge=0, lt=math.pi, allow_inf_nan=False, description="Additive angular margin, in radians."
    )
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
    """Cross-entropy of s * logits, the target class's cosine replaced by ``target`` (whose derivative in the
    cosine is ``slope``): per-sample losses (N, 1) and d loss / d predictions."""
    axis = op.Constant(value_ints=[-1])
    cosine = op.ReduceSum(one_hot * predictions, axis, keepdims=1)
    # softmax_parts keeps a confident sample's small loss exact (log1p of the other classes' mass)
    log_p, p, _ = softmax_parts(s * (predictions + one_hot * (target - cosine)))
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
    moved = op.Where(inside, clipped * cos_m - sine * sin_m, c - m * sin_m)
    passed = op.CastLike(op.Equal(clipped, c), c)
    # d cos(theta + m) / dc = sin(theta + m) / sin(theta) = cos m + c sin m / sin(theta)
    slope = op.Where(inside, passed * (cos_m + clipped * sin_m / sine), one)
    elements, gradient = margin_softmax(predictions, one_hot, moved, slope, s)
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
    check=check_cosines,
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
    check=check_cosines,
    properties=Properties(
        smooth_gradient=True,
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
        "A cross-entropy of an affine function of the cosines: convex and smooth, with gradients bounded by s.",
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
