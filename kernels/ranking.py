"""Ranking and metric-learning losses: pairs and triplets of embeddings compared by distance or angle,
and pairs of scores compared by order. One sample is one pair (or triplet): the kernels return one
element per sample, shape (N, 1)."""

from typing import Self

import numpy as np
from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field, model_validator

from kernels.curves import Arrays, Curve
from kernels.ops import LOSSD, select, spread
from kernels.spec import Card, Input, KernelFunction, Params, Properties, loss


def pair(first: str, second: str, what: str) -> tuple[Input, Input]:
    return (
        Input(first, ("N", "D"), "real", f"First {what} of each pair.", differentiable=True),
        Input(second, ("N", "D"), "real", f"Second {what} of each pair, same shape as {first}.", differentiable=True),
    )


def _unit(x: np.ndarray, dim: int = 2) -> np.ndarray:
    """Points x along the first axis: (x.size, dim) with x in the first component."""
    out = np.zeros((x.size, dim))
    out[:, 0] = x
    return out


# --- contrastive -------------------------------------------------------------------------------------


class ContrastiveParams(Params):
    margin: float = Field(
        1.0, ge=0, allow_inf_nan=False, description="Distance beyond which a dissimilar pair costs nothing."
    )


@script(LOSSD, default_opset=op)
def contrastive_kernel(x1, x2, targets, margin):  # type: ignore[no-untyped-def]
    axis = op.Constant(value_ints=[-1])
    d = x1 - x2
    squared = op.ReduceSum(d * d, axis, keepdims=1)
    distance = op.Sqrt(squared)
    y = op.Unsqueeze(targets, axis)
    gap = op.Relu(margin - distance)
    elements = y * squared + (1.0 - y) * gap * gap
    # d/dx1 [y D^2 + (1-y) gap^2] = 2 (y - (1-y) gap / D) d. At D = 0 (x1 = x2) the direction d / D of the
    # hinge term is undefined: there d = 0, and dividing by 1 instead of D gives the zero subgradient
    # (torch's choice for a norm's gradient at 0). A difference whose square underflows (|d| < 1e-19 in
    # float32) counts as D = 0.
    positive = op.Greater(distance, op.CastLike(0.0, distance))
    safe = distance + (1.0 - op.CastLike(positive, distance))  # 1 where D = 0, exactly D elsewhere
    gradient = 2.0 * (y - (1.0 - y) * gap / safe) * d
    return elements, gradient, op.Neg(gradient)


def _contrastive_inputs(x: np.ndarray) -> Arrays:
    return {"x1": _unit(x), "x2": np.zeros((x.size, 2)), "targets": np.zeros(x.size)}


@loss(
    name="contrastive",
    task="ranking",
    inputs=(
        *pair("x1", "x2", "embedding"),
        Input("targets", ("N",), "real", "1 if the pair is similar, 0 if dissimilar.", allowed=(0.0, 1.0)),
    ),
    params=ContrastiveParams,
    properties=Properties(
        robust_to_outliers=False,
        smooth_gradient=False,
        convex=False,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Contrastive loss",
        summary="Siamese-network loss on the Euclidean distance D = ||x1 - x2|| of each embedding pair: similar "
        "pairs (target 1) are pulled together by D^2, dissimilar pairs (target 0) pushed apart by "
        "max(margin - D, 0)^2 until they are margin apart. Computed from the embeddings (TF-Addons takes the "
        "distance); gradients for both embeddings. The hinge term is not convex and its gradient jumps at "
        "D = 0 (a dissimilar pair of identical embeddings), where the direction of (x1 - x2) / D is undefined: "
        "the kernel returns the zero subgradient there. Similar pairs alone give the convex, smooth D^2.",
        formula=r"\ell = y\, D^2 + (1 - y) \max(m - D, 0)^2,\quad D = \lVert x_1 - x_2 \rVert_2",
        use_cases=(
            "Siamese networks for verification (faces, signatures)",
            "Learning embeddings from pairs labelled similar or dissimilar",
            "Dimensionality reduction that keeps neighbourhoods (DrLIM)",
        ),
        equivalents={
            "tf-addons": "tfa.losses.contrastive_loss(y_true, y_pred=D, margin) with D = ||x1 - x2||_2: same "
            "values (y = 1 similar, no factor 1/2); TF-Addons takes the distance, not the embeddings",
            "paper": "Hadsell, Chopra & LeCun (2006) write (1 - Y) 1/2 D^2 + Y 1/2 max(0, m - D)^2 with Y = 0 for "
            "similar pairs: their loss is half of ours with Y = 1 - targets",
            "torch": "none in torch.nn",
            "keras": "none in Keras 3",
        },
        references=(
            "Hadsell, R., Chopra, S., LeCun, Y. (2006). Dimensionality Reduction by Learning an Invariant "
            "Mapping. CVPR.",
            "TensorFlow Addons, tfa.losses.contrastive_loss.",
        ),
    ),
    curve=Curve(
        "distance ||x1 - x2|| of a dissimilar pair (target 0)",
        0.0,
        2.0,
        inputs=_contrastive_inputs,
        direction=lambda x: {"x1": _unit(np.ones_like(x))},
    ),
)
def contrastive() -> KernelFunction:
    return contrastive_kernel


# --- triplet -----------------------------------------------------------------------------------------


class TripletParams(Params):
    margin: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="Required gap between the negative and the positive distance."
    )
    p: float = Field(2.0, ge=1, allow_inf_nan=False, description="Order of the distance norm (squared=false only).")
    eps: float = Field(
        1e-6,
        ge=0,
        allow_inf_nan=False,
        description="Added to every component of the difference before the norm, as torch does (squared=false only).",
    )
    swap: bool = Field(False, description="Use min(d(a, n), d(p, n)) as the negative distance (distance swap).")
    squared: bool = Field(False, description="FaceNet form: squared Euclidean distances, without eps.")

    @model_validator(mode="after")
    def _squared_takes_no_norm(self) -> Self:
        chosen = sorted(self.model_fields_set & {"p", "eps"})
        if self.squared and chosen:
            raise ValueError(
                f"{' and '.join(chosen)} {'applies' if len(chosen) == 1 else 'apply'} only to squared=false: "
                "squared=true uses squared Euclidean distances without eps"
            )
        return self


@script(LOSSD, default_opset=op)
def pnorm(v, p):  # type: ignore[no-untyped-def]
    """||v||_p over the last axis (kept) and its gradient sign(v) (|v| / ||v||)^(p-1). Computed on v scaled
    by max |v|, so |v|^p can neither overflow nor underflow for any p; at v = 0 the norm is 0 and the
    gradient 0 (torch's choice)."""
    axis = op.Constant(value_ints=[-1])
    a = op.Abs(v)
    top = op.ReduceMax(a, axis, keepdims=1)
    one = op.CastLike(1.0, v)
    # Per-row values divide as outer products (spread): a (rows, 1) column broadcast over short
    # rows is onnxruntime's slow path (10x at 2 components); top is 1 where v = 0.
    r = a / spread(top + (one - op.CastLike(op.Greater(top, op.CastLike(0.0, v)), v)), a)
    # the sum is >= 1 when v != 0 (the largest component contributes 1); at v = 0 it is 0, taken as 1
    root = op.Pow(op.Max(op.ReduceSum(op.Pow(r, p), axis, keepdims=1), one), op.Reciprocal(p))
    return top * root, op.Sign(v) * op.Pow(r / spread(root, r), p - 1.0)


@script(LOSSD, default_opset=op)
def hinge_active(z):  # type: ignore[no-untyped-def]
    """max(z, 0) and its derivative, 1 also at z = 0 (torch's clamp_min passes the gradient there)."""
    return op.Relu(z), op.CastLike(op.GreaterOrEqual(z, op.CastLike(0.0, z)), z)


@script(LOSSD, default_opset=op)
def swap_weights(d_an, d_pn):  # type: ignore[no-untyped-def]
    """Which distance min(d_an, d_pn) takes its gradient from: 1 or 0, and 1/2 each at a tie (torch.minimum)."""
    s = op.Sign(d_pn - d_an)
    return 0.5 + 0.5 * s, 0.5 - 0.5 * s


@script(LOSSD, default_opset=op)
def triplet_norm(anchor, positive, negative, margin, p, eps):  # type: ignore[no-untyped-def]
    d_ap, g_ap = pnorm(anchor - positive + eps, p)
    d_an, g_an = pnorm(anchor - negative + eps, p)
    elements, active = hinge_active(margin + d_ap - d_an)
    ga = spread(active, g_ap) * g_ap
    gn = spread(active, g_an) * g_an
    return elements, ga - gn, op.Neg(ga), gn


@script(LOSSD, default_opset=op)
def triplet_norm_swap(anchor, positive, negative, margin, p, eps):  # type: ignore[no-untyped-def]
    d_ap, g_ap = pnorm(anchor - positive + eps, p)
    d_an, g_an = pnorm(anchor - negative + eps, p)
    d_pn, g_pn = pnorm(positive - negative + eps, p)
    w_an, w_pn = swap_weights(d_an, d_pn)
    elements, active = hinge_active(margin + d_ap - op.Min(d_an, d_pn))
    ga = spread(active, g_ap) * g_ap
    gan = spread(active * w_an, g_an) * g_an
    gpn = spread(active * w_pn, g_pn) * g_pn
    return elements, ga - gan, op.Neg(ga) - gpn, gan + gpn


@script(LOSSD, default_opset=op)
def triplet_squared(anchor, positive, negative, margin):  # type: ignore[no-untyped-def]
    axis = op.Constant(value_ints=[-1])
    u = anchor - positive
    v = anchor - negative
    elements, active = hinge_active(
        margin + op.ReduceSum(u * u, axis, keepdims=1) - op.ReduceSum(v * v, axis, keepdims=1)
    )
    gu = (2.0 * active) * u
    gv = (2.0 * active) * v
    return elements, gu - gv, op.Neg(gu), gv


@script(LOSSD, default_opset=op)
def triplet_squared_swap(anchor, positive, negative, margin):  # type: ignore[no-untyped-def]
    axis = op.Constant(value_ints=[-1])
    u = anchor - positive
    v = anchor - negative
    w = positive - negative
    d_an = op.ReduceSum(v * v, axis, keepdims=1)
    d_pn = op.ReduceSum(w * w, axis, keepdims=1)
    w_an, w_pn = swap_weights(d_an, d_pn)
    elements, active = hinge_active(margin + op.ReduceSum(u * u, axis, keepdims=1) - op.Min(d_an, d_pn))
    two = 2.0 * active
    gu = two * u
    gv = (two * w_an) * v
    gw = (two * w_pn) * w
    return elements, gu - gv, op.Neg(gu) - gw, gv + gw


def _triplet_inputs(x: np.ndarray) -> Arrays:
    positive = np.zeros((x.size, 2))
    positive[:, 1] = 0.5
    return {"anchor": np.zeros((x.size, 2)), "positive": positive, "negative": _unit(x)}


@loss(
    name="triplet",
    task="ranking",
    inputs=(
        Input("anchor", ("N", "D"), "real", "Anchor embeddings.", differentiable=True),
        Input("positive", ("N", "D"), "real", "Embeddings of the anchor's class, same shape.", differentiable=True),
        Input("negative", ("N", "D"), "real", "Embeddings of another class, same shape.", differentiable=True),
    ),
    params=TripletParams,
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=False,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Triplet margin loss",
        summary="Pulls each anchor towards its positive and pushes it from its negative until the negative is "
        "at least margin further away: max(margin + d(a, p) - d(a, n), 0), with torch's distance "
        "d(u, v) = ||u - v + eps||_p (eps is added to every component of the difference). swap uses "
        "min(d(a, n), d(p, n)) as the negative distance; squared=true is the FaceNet form on squared Euclidean "
        "distances (p and eps do not apply). Gradients for all three inputs follow torch's conventions: they "
        "pass at a loss of exactly 0 (the hinge's edge), split in half at a swap tie, and a zero difference "
        "has a zero norm gradient. The default (not squared) has gradients of norm at most 1 per distance, so "
        "outlying embeddings do not dominate; the hinge and the norm make it neither convex nor smooth.",
        formula=r"\ell = \max\left(m + d(a, p) - d(a, n),\ 0\right),\quad d(u, v) = \lVert u - v + \epsilon "
        r"\rVert_p \ \ (\text{squared: } d(u, v) = \lVert u - v \rVert_2^2)",
        use_cases=(
            "Face recognition and re-identification embeddings",
            "Metric learning from (anchor, positive, negative) triplets",
            "Retrieval: ranking relevant items above irrelevant ones in embedding space",
        ),
        equivalents={
            "torch": "torch.nn.TripletMarginLoss(margin, p, eps, swap)",
            "torch (squared=true)": "torch.nn.TripletMarginWithDistanceLoss(distance_function=lambda u, v: "
            "(u - v).pow(2).sum(-1), margin, swap)",
            "facenet": "Schroff et al. normalise embeddings to unit length and use margin 0.2 on squared "
            "distances: send L2-normalised embeddings with squared=true, margin=0.2",
            "keras": "none in Keras 3 (TF-Addons triplet_semihard_loss mines triplets inside a batch: a "
            "different loss)",
        },
        references=(
            "Schroff, F., Kalenichenko, D., Philbin, J. (2015). FaceNet: A Unified Embedding for Face "
            "Recognition and Clustering. CVPR.",
            "Balntas, V., Riba, E., Ponsa, D., Mikolajczyk, K. (2016). Learning local feature descriptors with "
            "triplets and shallow convolutional neural networks. BMVC (distance swap).",
        ),
    ),
    curve=Curve(
        "anchor-negative distance (anchor-positive distance 0.5)",
        0.0,
        3.0,
        inputs=_triplet_inputs,
        direction=lambda x: {"negative": _unit(np.ones_like(x))},
    ),
)
def triplet(swap: bool, squared: bool) -> KernelFunction:
    if squared:
        return triplet_squared_swap if swap else triplet_squared
    return triplet_norm_swap if swap else triplet_norm


# --- cosine embedding --------------------------------------------------------------------------------


class CosineEmbeddingParams(Params):
    margin: float = Field(
        0.0, ge=-1, le=1, description="Cosine similarity below which a dissimilar pair (target -1) costs nothing."
    )


@script(LOSSD, default_opset=op)
def cosine_embedding_kernel(x1, x2, targets, margin):  # type: ignore[no-untyped-def]
    axis = op.Constant(value_ints=[-1])
    # torch adds its EPSILON = 1e-12 as a float32 constant, 9.99999996e-13, for float64 inputs too (checked
    # against torch 2.13: exact with that value, 4e-11 off with the float64 1e-12 on small vectors). The
    # float32 literal is that value in both dtypes. Sum, not Add: onnxscript's optimizer rewrites Add(x, c)
    # to x for any constant |c| <= 1e-8.
    tiny = op.CastLike(1e-12, x1)
    # Per-pair values stay 1-D (N,) and reach the (N, D) gradients as outer products: onnxruntime
    # is 10x slower on (N, 1) operands and on a column repeated over short rows (D = 2: 70 ms a million).
    n1 = op.Sqrt(op.Sum(op.ReduceSum(x1 * x1, axis, keepdims=0), tiny))
    n2 = op.Sqrt(op.Sum(op.ReduceSum(x2 * x2, axis, keepdims=0), tiny))
    cos = op.ReduceSum(x1 * x2, axis, keepdims=0) / (n1 * n2)
    hinge, active = hinge_active(cos - margin)
    similar = op.Greater(targets, op.CastLike(0.0, x1))
    elements = select(similar, 1.0 - cos, hinge)
    slope = select(similar, op.CastLike(-1.0, x1), active)
    # d cos / d x1 = (x2 / n2 - cos x1 / n1) / n1, and symmetrically for x2
    a1, a2 = slope / n1, slope / n2
    grad_x1 = spread(op.Unsqueeze(a1 / n2, axis), x2) * x2 - spread(op.Unsqueeze(a1 * cos / n1, axis), x1) * x1
    grad_x2 = spread(op.Unsqueeze(a2 / n1, axis), x1) * x1 - spread(op.Unsqueeze(a2 * cos / n2, axis), x2) * x2
    return op.Unsqueeze(elements, axis), grad_x1, grad_x2


def _on_circle(x: np.ndarray) -> np.ndarray:
    return np.stack([x, np.sqrt(1.0 - x * x)], axis=1)


def _cosine_direction(x: np.ndarray) -> Arrays:
    return {"x1": np.stack([np.ones_like(x), -x / np.sqrt(1.0 - x * x)], axis=1)}


@loss(
    name="cosine_embedding",
    task="ranking",
    inputs=(
        *pair("x1", "x2", "embedding"),
        Input("targets", ("N",), "real", "1 if the pair is similar, -1 if dissimilar.", allowed=(-1.0, 1.0)),
    ),
    params=CosineEmbeddingParams,
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=False,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Cosine embedding loss",
        summary="Compares embedding pairs by angle only: 1 - cos for similar pairs (target 1), max(cos - margin, "
        "0) for dissimilar ones (target -1). The cosine is torch's, with 1e-12 added to each squared norm "
        "(torch's float32 constant 9.99999996e-13, which torch also uses for float64 inputs), so a zero vector "
        "has cosine 0 instead of NaN. Bounded in [0, 2] with "
        "gradients that vanish far from the origin (robust to outlying magnitudes), but not convex, with a "
        "kink where a dissimilar pair's cosine crosses the margin and gradients of order 1/||x|| near the "
        "origin.",
        formula=r"\ell = \begin{cases} 1 - \cos(x_1, x_2) & y = 1 \\ \max(\cos(x_1, x_2) - m,\ 0) & y = -1 "
        r"\end{cases},\quad \cos = \frac{\sum x_1 x_2}{\sqrt{(\sum x_1^2 + 10^{-12})(\sum x_2^2 + 10^{-12})}}",
        use_cases=(
            "Learning embeddings where only direction matters (text, retrieval)",
            "Semi-supervised and multimodal alignment of paired representations",
        ),
        equivalents={
            "torch": "torch.nn.CosineEmbeddingLoss(margin)",
            "keras": "keras.losses.CosineSimilarity is a different loss: -cos(y_true, y_pred), with no targets or "
            "margin (it L2-normalises with its own epsilon); for similar pairs ours = 1 + keras",
        },
        references=("PyTorch documentation, torch.nn.CosineEmbeddingLoss.",),
    ),
    curve=Curve(
        "cosine similarity of a dissimilar pair (target -1)",
        -0.99,
        0.99,
        inputs=lambda x: {
            "x1": _on_circle(x),
            "x2": np.tile([1.0, 0.0], (x.size, 1)),
            "targets": -np.ones(x.size),
        },
        direction=_cosine_direction,
    ),
)
def cosine_embedding() -> KernelFunction:
    return cosine_embedding_kernel


# --- margin ranking ----------------------------------------------------------------------------------


class MarginRankingParams(Params):
    margin: float = Field(
        0.0, allow_inf_nan=False, description="Required score difference in the direction the target says."
    )


@script(LOSSD, default_opset=op)
def margin_ranking_kernel(x1, x2, targets, margin):  # type: ignore[no-untyped-def]
    elements, active = hinge_active(margin - targets * (x1 - x2))
    g = op.Neg(targets) * active
    return op.Unsqueeze(elements, op.Constant(value_ints=[1])), g, op.Neg(g)


@loss(
    name="margin_ranking",
    task="ranking",
    inputs=(
        Input("x1", ("N",), "real", "Score of the first item of each pair.", differentiable=True),
        Input("x2", ("N",), "real", "Score of the second item of each pair.", differentiable=True),
        Input(
            "targets",
            ("N",),
            "real",
            "1 if x1 should rank above x2, -1 if below.",
            allowed=(-1.0, 1.0),
        ),
    ),
    params=MarginRankingParams,
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=True,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Margin ranking loss",
        summary="Pairwise hinge on score differences: zero once the pair is ordered as the target says by at "
        "least margin, linear beyond. Convex with gradients of magnitude 0 or 1; the gradient passes at the "
        "hinge's edge (loss exactly 0), as torch's does.",
        formula=r"\ell = \max\left(0,\ -y (x_1 - x_2) + m\right)",
        use_cases=(
            "Learning to rank from pairwise preferences",
            "Training scorers where only the order of two items is known",
        ),
        equivalents={"torch": "torch.nn.MarginRankingLoss(margin)", "keras": "none in Keras 3"},
        references=(
            "Herbrich, R., Graepel, T., Obermayer, K. (1999). Support Vector Learning for Ordinal Regression. ICANN.",
        ),
    ),
    curve=Curve(
        "score difference x1 - x2 (target 1)",
        -3.0,
        3.0,
        inputs=lambda x: {"x1": x.copy(), "x2": np.zeros(x.size), "targets": np.ones(x.size)},
        direction=lambda x: {"x1": np.ones(x.size)},
    ),
)
def margin_ranking() -> KernelFunction:
    return margin_ranking_kernel
