"""Test declarations of the class-imbalance losses (kernels/imbalance.py): focal, weighted and categorical focal
cross-entropy."""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.classification import SparseCrossEntropyParams
from kernels.imbalance import CategoricalFocalParams, FocalParams
from tests.kernels.catalog.base import ALL, BOTH, ELEMENT_SHAPES, ONE, Arrays, Golden, GradientCase, LossInfo
from tests.kernels.catalog.classification import (
    CLASS_WEIGHTS,
    binary_data,
    categorical_data,
    fd_binary,
    fd_categorical,
    fd_sparse,
    ref_sparse,
    smooth_binary,
    sparse_data,
)
from tests.kernels.catalog.reference import (
    DEFAULT_EPS,
    Ctx,
    F,
    Tensor,
    Tensors,
    keras,
    keras_native,
    monai,
    torch,
    with_keras_eps,
)
from tests.kernels.properties import BinaryProbability, Simplex

# -- references (run by the golden generator only) -------------------------------------------------


def ref_focal(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """torchvision.ops.sigmoid_focal_loss (v0.2x source), reduction='none', copied exactly but for
    two cancellations on logits, which cost its float64 losses up to 1.3% at |x| = 30 (checked
    against 50-digit arithmetic): 1 - p_t is formed as (1 - p) y + p (1 - y) with
    1 - p = sigmoid(-x), and the cross-entropy as (1 - y) softplus(x) + y softplus(-x) (torch's
    binary_cross_entropy_with_logits takes log(1 + e^-30) as a log of a sum near 1). Targets
    smoothed first; on probabilities the same with clipped p and BCE on p."""
    x, y0 = t["predictions"], t["targets"]
    alpha, gamma = c.f("alpha", 0.25), c.f("gamma", 2.0)
    y = smooth_binary(y0, c.f("label_smoothing", 0.0))
    if c.params.get("from_logits", False):
        p = torch.sigmoid(x)
        ce_loss = (1 - y) * F.softplus(x) + y * F.softplus(-x)
    else:
        lo, hi = c.bounds()
        p = torch.clamp(x, lo, hi)
        ce_loss = F.binary_cross_entropy(p, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    one_minus_p_t = torch.sigmoid(-x) * y + p * (1 - y) if c.params.get("from_logits", False) else 1 - p_t
    loss = ce_loss * (one_minus_p_t**gamma)
    if alpha >= 0:
        alpha_t = alpha * y + (1 - alpha) * (1 - y)
        loss = alpha_t * loss
    keras_comparable = c.params.get("class_weights") is None
    if (
        keras_comparable
        and not c.params.get("from_logits", False)
        and alpha >= 0
        and c.dtype == "float64"
        and not c.params.get("eps")
    ):
        lo, hi = c.bounds()
        inside = bool(((x > lo) & (x < hi)).all())
        if inside:
            k = keras.losses.binary_focal_crossentropy(
                y0, x, apply_class_balancing=True, alpha=alpha, gamma=gamma, label_smoothing=c.f("label_smoothing", 0.0)
            )
            c.check(
                "keras binary_focal_crossentropy(apply_class_balancing=True); float32 last-axis mean",
                loss.mean(-1),
                k,
                rtol=1e-6,
            )
    weights = c.f("class_weights")
    if weights is not None:  # MONAI FocalLoss's weight: one per channel (axis 1)
        w = torch.tensor(weights, dtype=loss.dtype).reshape(-1, *([1] * (loss.dim() - 2)))
        loss = loss * w
        if c.params.get("from_logits", False) and not c.params.get("label_smoothing") and x.dim() > 1:
            theirs = monai.losses.FocalLoss(
                gamma=gamma, alpha=None if alpha < 0 else alpha, weight=weights, reduction="none"
            )(x, y0)
            # MONAI's modulator exp(gamma logsigmoid(-x (2y - 1))) is (1 - p_t)^gamma for hard targets only, its
            # logit forms lose digits on saturated logits (see above), and it holds the weights in float32
            moderate = (x.abs() < 8) & ((y0 == 0) | (y0 == 1))
            c.check(
                "monai FocalLoss(gamma, alpha, weight, reduction='none') on logits (|x| < 8, hard targets)",
                theirs[moderate],
                loss[moderate],
                rtol=1e-6,
            )
    return loss, None


def stable_softmax_parts(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """log softmax, softmax and 1 - softmax in float64 with the dominant class's 1 - p taken as
    (sum of the others) / (sum of all), so a confident row keeps its tiny 1 - p."""
    z = x - x.max(-1, keepdim=True).values
    e = torch.exp(z)
    top = z == 0
    rest = torch.where(top, torch.zeros_like(e), e).sum(-1, keepdim=True) + (top.sum(-1, keepdim=True) - 1)
    log_p = z - torch.log1p(rest)
    p = torch.exp(log_p)
    return log_p, p, torch.where(p > 0.5, rest / (1 + rest), 1 - p)


def ref_categorical_focal(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, y0 = t["predictions"], t["targets"]
    gamma, s = c.f("gamma", 2.0), c.f("label_smoothing", 0.0)
    alpha = torch.tensor(c.f("alpha", 0.25), dtype=torch.float64)
    classes = x.shape[-1]
    y = y0 * (1.0 - s) + s / classes
    if c.params.get("from_logits", False):
        log_p, _, q = stable_softmax_parts(x)
        out = -(alpha * q**gamma * y * log_p).sum(-1)
        naive_p = torch.softmax(x, -1)
        naive = -(alpha * (1 - naive_p) ** gamma * y * F.log_softmax(x, -1)).sum(-1)
        c.check("plain torch softmax / log_softmax formula", out, naive, rtol=1e-9)
        lo, hi = c.bounds()
        if c.dtype == "float64" and bool(((naive_p >= lo) & (naive_p <= hi)).all()):
            k = keras.losses.categorical_focal_crossentropy(
                y0, x, alpha=alpha, gamma=gamma, from_logits=True, label_smoothing=s
            )
            c.check("keras categorical_focal_crossentropy(from_logits) where its clip does not bind", out, k)
        return out, None
    lo, hi = c.bounds()
    q = x / x.sum(-1, keepdim=True)
    o = torch.clamp(q, lo, hi)
    out = -(alpha * (1 - o) ** gamma * y * torch.log(o)).sum(-1)
    xn, yn = keras_native(t, c)
    eps = c.params.get("eps", DEFAULT_EPS)
    alpha_n = alpha.to(xn.dtype)
    k = with_keras_eps(
        eps,
        lambda: keras.losses.categorical_focal_crossentropy(yn, xn, alpha=alpha_n, gamma=gamma, label_smoothing=s),
    )
    # As for kl_divergence: Keras's ops.clip bounds are float32 on the torch backend, also for float64.
    c.check(
        "keras.losses.categorical_focal_crossentropy (run in the case dtype; float64 clip bounds in float32)",
        out,
        k,
        rtol=1e-8 if c.dtype == "float64" else 1e-5,
    )
    return out, None


# -- golden inputs ---------------------------------------------------------------------------------


def focal_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """categorical_data, with extreme logits kept at +-30 for gamma < 1 (the reference's
    gamma q^(gamma-1) needs q > 0 in float64) and no exactly-zero probability rows."""
    data = categorical_data(kind, shape, rng, params)
    if kind == "extreme" and params.get("from_logits") and params.get("gamma", 2.0) < 1:
        data["predictions"] = np.clip(data["predictions"], -30.0, 30.0)
    return data


# -- declarations ----------------------------------------------------------------------------------

LOSSES = (
    LossInfo(
        "focal",
        golden=Golden(
            shapes=ELEMENT_SHAPES,
            reference=ref_focal,
            data=binary_data,
            describe=lambda p: (
                "torchvision.ops.sigmoid_focal_loss(reduction='none') source re-implemented in torch float64 "
                "(torchvision has no CPU build here) on targets smoothed y(1-s)+s/2"
                if p.get("from_logits")
                else "torchvision sigmoid_focal_loss formulas on p clamped to [eps, 1-eps] with "
                "torch.nn.functional.binary_cross_entropy, torch float64, targets smoothed y(1-s)+s/2"
            ),
            combos=(
                ({"from_logits": True}, ALL),
                ({"from_logits": True, "alpha": -1.0}, BOTH),
                ({"from_logits": True, "gamma": 0.0}, BOTH),
                ({"from_logits": True, "gamma": 0.5}, ALL),
                ({"from_logits": True, "label_smoothing": 0.1}, BOTH),
                ({"from_logits": True, "alpha": 0.6, "gamma": 1.5}, ONE),
                ({}, ALL),
                ({"alpha": -1.0}, ONE),
                ({"gamma": 0.0}, ALL),
                ({"gamma": 0.5}, ALL),
                ({"label_smoothing": 0.1}, BOTH),
                ({"eps": 1e-3}, ONE),
                ({"from_logits": True, "class_weights": "per_channel"}, BOTH),
                ({"from_logits": True, "alpha": -1.0, "class_weights": "per_channel"}, ONE),
                ({"from_logits": True, "label_smoothing": 0.1, "class_weights": "per_channel"}, ONE),
                ({"class_weights": "per_channel"}, BOTH),
                ({"label_smoothing": 0.1, "class_weights": "per_channel"}, ONE),
            ),
        ),
        gradients=GradientCase(
            fd_binary,
            (
                {},
                {"alpha": -1.0, "gamma": 0.5},
                {"gamma": 0.0, "label_smoothing": 0.1},
                {"alpha": 0.7, "gamma": 3.0},
                {"class_weights": [0.5, 2.0], "label_smoothing": 0.1},
                {"class_weights": [3.0, 0.0], "from_logits": True},
            ),
        ),
        domain=BinaryProbability(eps=FocalParams().eps),
    ),
    LossInfo(
        "weighted_cross_entropy",
        whole="masses",
        golden=Golden(
            reference=ref_sparse,
            data=sparse_data,
            describe=lambda p: (
                "torch.nn.functional.cross_entropy(index targets, weight=class_weights, ignore_index, "
                "label_smoothing, reduction='none'), class axis moved to dim 1; mass = weight[label] (0 where "
                "ignored)"
                if p.get("from_logits")
                else "formula -sum_c w_c keep ((1-s) onehot_c + s/C) log clip(p_c/sum p), torch float64 (torch's "
                "weighting and smoothing conventions on Keras-clipped probabilities; Keras has no class weights); "
                "mass = weight[label] (0 where ignored)"
            ),
            combos=(
                ({"from_logits": True, "class_weights": "per_class"}, BOTH),
                ({"from_logits": True, "class_weights": "per_class_with_zero"}, ONE),
                ({"from_logits": True, "class_weights": "per_class", "label_smoothing": 0.1}, ONE),
                ({"from_logits": True, "class_weights": "per_class", "ignore_index": 2}, ONE),
                ({"class_weights": "per_class"}, BOTH),
                ({"class_weights": "per_class_with_zero", "label_smoothing": 0.2}, ONE),
                ({"class_weights": "per_class", "eps": 1e-3}, ONE),
            ),
        ),
        gradients=GradientCase(
            fd_sparse,
            (
                {"class_weights": CLASS_WEIGHTS},
                {"class_weights": [0.0, 2.0, 1.0, 1.5], "label_smoothing": 0.1, "ignore_index": 1},
            ),
        ),
        domain=Simplex(eps=SparseCrossEntropyParams().eps, labels=True),
        property_params={"class_weights": [0.5, 2.0, 1.0]},
    ),
    LossInfo(
        "categorical_focal",
        golden=Golden(
            reference=ref_categorical_focal,
            data=focal_data,
            describe=lambda p: (
                "formula -sum_c alpha_c (1-p_c)^gamma y~_c log p_c with p = softmax(x) (log_softmax, and 1 - p of "
                "the dominant class as the others' share), y~ = y(1-s)+s/C, torch float64; checked against plain "
                "softmax and against keras categorical_focal_crossentropy(from_logits) where its clip does not bind"
                if p.get("from_logits")
                else "keras.losses.categorical_focal_crossentropy formula -sum_c alpha_c (1-o_c)^gamma y~_c log o_c, "
                "o = clip(p/sum p, eps, 1-eps) with the case dtype's bounds, in torch float64; checked against Keras "
                "run in the case dtype"
            ),
            combos=(
                ({}, BOTH),
                ({"alpha": "per_class"}, ONE),
                ({"gamma": 0.0}, ONE),
                ({"gamma": 0.5}, BOTH),
                ({"label_smoothing": 0.1, "alpha": 1.0}, ONE),
                ({"eps": 1e-3}, ONE),
                ({"from_logits": True}, BOTH),
                ({"from_logits": True, "alpha": "per_class", "gamma": 3.0}, ONE),
                ({"from_logits": True, "gamma": 0.5}, BOTH),
                ({"from_logits": True, "label_smoothing": 0.2}, ONE),
            ),
        ),
        gradients=GradientCase(
            fd_categorical,
            (
                {},
                {"alpha": CLASS_WEIGHTS, "gamma": 0.5},
                {"gamma": 0.0, "label_smoothing": 0.1},
                {"alpha": 1.0, "gamma": 3.0, "label_smoothing": 0.2},
            ),
        ),
        domain=Simplex(eps=CategoricalFocalParams().eps),
    ),
)
