"""Test declarations of the classification losses (kernels/classification.py): binary, categorical and sparse
cross-entropy, NLL, KL."""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.classification import (
    BinaryCrossEntropyParams,
    ChannelCrossEntropyParams,
    CrossEntropyParams,
    KlDivergenceParams,
    LabelSmoothingCrossEntropyParams,
    SparseCrossEntropyParams,
)
from tests.kernels.catalog.base import ALL, BOTH, ELEMENT_SHAPES, ONE, Arrays, Golden, GradientCase, LossInfo
from tests.kernels.catalog.reference import (
    DEFAULT_EPS,
    KERAS_EPS,
    Ctx,
    F,
    Tensor,
    Tensors,
    keras,
    keras_native,
    torch,
    with_keras_eps,
)
from tests.kernels.properties import BinaryProbability, LogProbability, Simplex

# -- references (run by the golden generator only) -------------------------------------------------


def smooth_binary(y: Tensor, s: float) -> Tensor:
    return y * (1.0 - s) + 0.5 * s


def ref_bce(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, y0 = t["predictions"], t["targets"]
    s = c.f("label_smoothing", 0.0)
    y = smooth_binary(y0, s)
    pw = c.f("pos_weight")
    if c.params.get("from_logits", False):
        pos_weight = None if pw is None else torch.tensor(pw, dtype=torch.float64)
        out = F.binary_cross_entropy_with_logits(x, y, pos_weight=pos_weight, reduction="none")
        if pw is None and s and c.dtype == "float64":
            k = keras.losses.binary_crossentropy(y0, x, from_logits=True, label_smoothing=s)
            c.check(
                "keras binary_crossentropy(from_logits, label_smoothing); float32 last-axis mean",
                out.mean(-1),
                k,
                rtol=1e-6,
            )
        return out, None
    lo, hi = c.bounds()
    p = torch.clamp(x, lo, hi)
    if pw is None:
        out = F.binary_cross_entropy(p, y, reduction="none")
    else:
        out = -(torch.tensor(pw, dtype=torch.float64) * y * torch.log(p) + (1 - y) * torch.log(1 - p))
    if pw is None and c.dtype == "float64" and c.params.get("eps", DEFAULT_EPS) == KERAS_EPS:
        k = keras.losses.binary_crossentropy(y0, x, label_smoothing=s)
        c.check(f"keras binary_crossentropy(label_smoothing={s}); float32 last-axis mean", out.mean(-1), k, rtol=1e-6)
    return out, None


def ref_cross_entropy(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, y = t["predictions"], t["targets"]
    s = c.f("label_smoothing", 0.0)
    w = c.f("class_weights")
    weight = None if w is None else torch.tensor(w, dtype=torch.float64)
    classes = x.shape[-1]
    if c.params.get("from_logits", False):
        # torch wants the class axis at 1.
        xt, yt = x.movedim(-1, 1), y.movedim(-1, 1)
        out = F.cross_entropy(xt, yt, weight=weight, label_smoothing=s, reduction="none")
        c.check(
            "torch cross_entropy(reduction='mean') = our unweighted mean (sum / rows)",
            F.cross_entropy(xt, yt, weight=weight, label_smoothing=s).reshape(1),
            out.mean().reshape(1),
        )
        if w is None and c.dtype == "float64":
            k = keras.losses.categorical_crossentropy(y, x, from_logits=True, label_smoothing=s)
            c.check("keras categorical_crossentropy(from_logits)", out, k)
        return out, None
    lo, hi = c.bounds()
    u = y * (1.0 - s) + s / classes
    if weight is not None:
        u = u * weight
    q = x / x.sum(-1, keepdim=True)
    formula = -(u * torch.log(torch.clamp(q, lo, hi))).sum(-1)
    if w is not None:
        return formula, None
    xn, yn = keras_native(t, c)
    eps = c.params.get("eps", DEFAULT_EPS)
    out = with_keras_eps(eps, lambda: keras.losses.categorical_crossentropy(yn, xn, label_smoothing=s))
    c.check(
        "kernel formula -sum(u log clip(p/sum p)) in float64",
        formula,
        out,
        rtol=1e-12 if c.dtype == "float64" else 1e-5,
    )
    return out, None


def channels_last(t: Tensors) -> Tensors:
    """A channel-first case's tensors with the class axis moved last (the autograd leaves stay the originals)."""
    return {k: v.movedim(1, -1) if v.dim() > 1 else v for k, v in t.items()}


def ref_channel_cross_entropy(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """torch's cross_entropy on (N, C, d...) directly for logits (checked against cross_entropy's reference on
    the channel-last layout); probabilities: cross_entropy's reference on the channel-last layout."""
    if c.params.get("from_logits", False):
        x, y = t["predictions"], t["targets"]
        s = c.f("label_smoothing", 0.0)
        w = c.f("class_weights")
        weight = None if w is None else torch.tensor(w, dtype=torch.float64)
        out = F.cross_entropy(x, y, weight=weight, label_smoothing=s, reduction="none")
        c.check(
            "torch CrossEntropyLoss(reduction='mean') on (N, C, d...) = our unweighted mean (sum / positions)",
            F.cross_entropy(x, y, weight=weight, label_smoothing=s).reshape(1),
            out.mean().reshape(1),
        )
        last, _ = ref_cross_entropy(channels_last(t), c)
        c.check("cross_entropy's reference, class axis moved last", last, out)
        return out, None
    return ref_cross_entropy(channels_last(t), c)


def sparse_mass(labels: Tensor, weight: Tensor | None, ignore: int) -> tuple[Tensor, Tensor]:
    """Which labels count, and the element mass: weight[label] (1 without weights), 0 where ignored."""
    keep = labels != ignore
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    w = torch.ones(labels.shape, dtype=torch.float64) if weight is None else weight[safe]
    return keep, torch.where(keep, w, torch.zeros((), dtype=torch.float64))


def ref_sparse(t: Tensors, c: Ctx) -> tuple[Tensor, Tensor]:
    x, labels = t["predictions"], t["targets"]
    s = c.f("label_smoothing", 0.0)
    w = c.f("class_weights")
    ignore = int(c.params.get("ignore_index", -100))
    weight = None if w is None else torch.tensor(w, dtype=torch.float64)
    keep, mass = sparse_mass(labels, weight, ignore)
    classes = x.shape[-1]
    if c.params.get("from_logits", False):
        xt = x.movedim(-1, 1)
        out = F.cross_entropy(xt, labels, weight=weight, ignore_index=ignore, label_smoothing=s, reduction="none")
        c.check(
            "torch cross_entropy(reduction='mean') = sum(E)/sum(mass)",
            F.cross_entropy(xt, labels, weight=weight, ignore_index=ignore, label_smoothing=s).reshape(1),
            (out.sum() / mass.sum()).reshape(1),
        )
        return out, mass
    lo, hi = c.bounds()
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    one_hot = F.one_hot(safe, classes).to(torch.float64)
    u = (one_hot * (1.0 - s) + s / classes) * keep.unsqueeze(-1)
    if weight is not None:
        u = u * weight
    q = x / x.sum(-1, keepdim=True)
    formula = -(u * torch.log(torch.clamp(q, lo, hi))).sum(-1)
    if w is not None or s:
        # Keras has neither class weights nor smoothing here: the documented formula
        # (kernels/classification.py), torch's smoothing convention on clipped probabilities.
        return formula, mass
    xn, ln = keras_native(t, c)
    eps = c.params.get("eps", DEFAULT_EPS)
    out = with_keras_eps(
        eps,
        lambda: keras.losses.sparse_categorical_crossentropy(
            ln, xn, ignore_class=ignore if bool((~keep).any()) else None
        ),
    )
    c.check(
        "kernel formula -log clip(p_y/sum p) in float64", formula, out, rtol=1e-12 if c.dtype == "float64" else 1e-5
    )
    return out, mass


def ref_label_smoothing(t: Tensors, c: Ctx) -> tuple[Tensor, Tensor]:
    """ref_sparse with this loss's default label_smoothing=0.1; on probabilities without class
    weights cross-checked against Keras CategoricalCrossentropy(label_smoothing) on the kept labels'
    one-hot rows (Keras's y(1-s)+s/C is torch's convention without weights)."""
    ctx = Ctx(c.dtype, {"label_smoothing": 0.1, **c.params}, c.checks)
    out, mass = ref_sparse(t, ctx)
    s = ctx.f("label_smoothing")
    if not ctx.params.get("from_logits") and ctx.params.get("class_weights") is None and c.dtype == "float64":
        x, labels = t["predictions"], t["targets"]
        keep = labels != int(ctx.params.get("ignore_index", -100))
        one_hot = F.one_hot(labels[keep], x.shape[-1]).to(torch.float64)
        eps = ctx.params.get("eps", DEFAULT_EPS)
        k = with_keras_eps(eps, lambda: keras.losses.categorical_crossentropy(one_hot, x[keep], label_smoothing=s))
        c.check(f"keras categorical_crossentropy(label_smoothing={s}) on one-hot labels", out[keep], k)
    return out, mass


def ref_nll(t: Tensors, c: Ctx) -> tuple[Tensor, Tensor]:
    x, labels = t["predictions"], t["targets"]
    w = c.f("class_weights")
    ignore = int(c.params.get("ignore_index", -100))
    weight = None if w is None else torch.tensor(w, dtype=torch.float64)
    _, mass = sparse_mass(labels, weight, ignore)
    xt = x.movedim(-1, 1)
    out = F.nll_loss(xt, labels, weight=weight, ignore_index=ignore, reduction="none")
    c.check(
        "torch nll_loss(reduction='mean') = sum(E)/sum(mass)",
        F.nll_loss(xt, labels, weight=weight, ignore_index=ignore).reshape(1),
        (out.sum() / mass.sum()).reshape(1),
    )
    return out, mass


def ref_kl(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, y = t["predictions"], t["targets"]
    if c.params.get("log_target", False):
        lo, _ = c.bounds()
        log_q = F.log_softmax(x, -1) if c.params.get("from_logits", False) else torch.log(torch.clamp(x, lo, 1.0))
        out = F.kl_div(log_q, y, reduction="none", log_target=True).sum(-1)
        c.check("torch kl_div(log_target=True) = kl_div(log q, exp(t)) (no zero target)", out,
                F.kl_div(log_q, torch.exp(y), reduction="none").sum(-1))  # fmt: skip
        return out, None
    if c.params.get("from_logits", False):
        log_q = F.log_softmax(x, -1)
        out = F.kl_div(log_q, y, reduction="none").sum(-1)
        if x.dim() == 2:
            c.check(
                "torch kl_div(reduction='batchmean') = our unweighted mean (2-D)",
                F.kl_div(log_q, y, reduction="batchmean").reshape(1),
                out.mean().reshape(1),
            )
        return out, None
    lo, _ = c.bounds()
    yc, pc = torch.clamp(y, lo, 1.0), torch.clamp(x, lo, 1.0)
    out = (yc * torch.log(yc / pc)).sum(-1)
    xn, yn = keras_native(t, c)
    eps = c.params.get("eps", DEFAULT_EPS)
    k = with_keras_eps(eps, lambda: keras.losses.kl_divergence(yn, xn))
    # Keras's ops.clip turns the Python eps into a float32 tensor on the torch backend, so float64
    # Keras clips at float32(eps) = 1.0000000117e-7; we (and the golden) clip at eps in the dtype.
    c.check(
        "keras.losses.kl_divergence (run in the case dtype; its float64 clip bound is float32(eps))",
        out,
        k,
        rtol=1e-8 if c.dtype == "float64" else 2e-6,
    )
    if bool((y >= lo).all()):
        torch_kl = F.kl_div(torch.log(pc), y, reduction="none").sum(-1)
        c.check("torch kl_div(log clamp(p, eps, 1), y) (no target below eps)", out, torch_kl)
    return out, None


# -- golden inputs ---------------------------------------------------------------------------------


def binary_targets(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    y = rng.integers(0, 2, shape).astype(np.float64)
    soft = rng.random(shape) < 0.2
    y[soft] = rng.uniform(0.05, 0.95, int(soft.sum()))
    return y


def binary_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    logits = params.get("from_logits", False)
    if kind == "random":
        x = rng.normal(0.0, 3.0, shape) if logits else rng.uniform(0.02, 0.98, shape)
        return {"predictions": x, "targets": binary_targets(shape, rng)}
    y = rng.integers(0, 2, shape).astype(np.float64)
    if kind == "confident":
        # every element classified correctly and confidently: the loss is made only of
        # log(1 + tiny) and log(1 - tiny) terms, where float32 needs log1p-quality forms
        if logits:
            return {"predictions": (2 * y - 1) * rng.uniform(4.0, 15.0, shape), "targets": y}
        tiny = 10.0 ** rng.uniform(-5.0, -2.0, shape)
        return {"predictions": y * (1 - tiny) + (1 - y) * tiny, "targets": y}
    if logits:
        # torchvision's focal gradient is non-finite for gamma < 1 at exact saturation
        # (1 - p_t rounds to 0 in float64 beyond |x| ~ 37): stay at +-30 there.
        big = 30.0 if params.get("gamma", 2.0) < 1 else 40.0
        values = [-big, -20.0, -5.0, 0.0, 0.5, 5.0, 20.0, big]
    else:
        values = [0.0, 1e-9, 1e-4, 0.3, 1 - 1e-4, 1 - 1e-9, 1.0]
    return {"predictions": rng.choice(values, size=shape), "targets": y}


def categorical_predictions(kind: str, shape: tuple[int, ...], rng: np.random.Generator, logits: bool) -> np.ndarray:
    classes = shape[-1]
    if kind == "random":
        if logits:
            return rng.normal(0.0, 2.0, shape)
        rows = rng.dirichlet(np.ones(classes), size=shape[:-1]) * rng.uniform(0.8, 1.0, (*shape[:-1], 1))
        return np.clip(rows, 0.01, None)
    if logits:
        x = rng.normal(0.0, 2.0, shape)
        flat = x.reshape(-1, classes)
        for row in flat:
            cols = rng.permutation(classes)
            row[cols[0]] = 40.0
            row[cols[1]] = -40.0
        return x
    values = [0.0, 1e-9, 1e-4, 0.3, 1 - 1e-4, 1 - 1e-9]
    p = rng.choice(values, size=shape)
    flat = p.reshape(-1, classes)
    for row in flat:
        row[rng.integers(classes)] = rng.choice([1 - 1e-9, 1 - 1e-4, 0.3])
    return p


def categorical_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    classes = shape[-1]
    x = categorical_predictions(kind, shape, rng, params.get("from_logits", False))
    y = rng.dirichlet(np.ones(classes) * 0.7, size=shape[:-1])
    hard = rng.random(shape[:-1]) < 0.5
    y[hard] = np.eye(classes)[rng.integers(0, classes, int(hard.sum()))]
    if kind == "extreme":  # one-hot on the largest and on the smallest prediction
        flat_x, flat_y = x.reshape(-1, classes), y.reshape(-1, classes)
        for i in range(flat_x.shape[0]):
            pick = np.argmax(flat_x[i]) if i % 2 == 0 else np.argmin(flat_x[i])
            flat_y[i] = np.eye(classes)[pick]
    return {"predictions": x, "targets": y}


def channel_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """categorical_data drawn channel-last, then the class axis moved to axis 1."""
    drawn = categorical_data(kind, (shape[0], *shape[2:], shape[1]), rng, params)
    return {k: np.moveaxis(v, -1, 1) for k, v in drawn.items()}


CHANNEL_SHAPES: dict[str, tuple[int, ...]] = {"0d": (4, 3), "1d": (3, 4, 5), "2d": (2, 3, 2, 3)}


def sparse_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    classes = shape[-1]
    x = categorical_predictions(kind, shape, rng, params.get("from_logits", False))
    labels = rng.integers(0, classes, shape[:-1])
    ignore = params.get("ignore_index", -100)
    flat = labels.reshape(-1)
    # some ignored labels (when ignore_index is a real class, its labels are dropped)
    flat[[2] if flat.size <= 4 else [2, flat.size - 1]] = ignore
    if kind == "extreme":
        fx = x.reshape(-1, classes)
        for i in range(flat.size):
            if flat[i] != ignore:
                flat[i] = np.argmax(fx[i]) if i % 2 == 0 else np.argmin(fx[i])
    return {"predictions": x, "targets": labels}


def log_probability_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """NLL inputs: log_softmax rows (random), near-certain and near-impossible classes (extreme),
    or arbitrary reals (the loss accepts any finite input)."""
    data = sparse_data("random", shape, rng, {"from_logits": True, **params})
    x = data["predictions"]
    if kind == "reals":
        data["predictions"] = rng.normal(0.0, 5.0, shape)
        return data
    if kind == "extreme":
        x = x * 20.0
    data["predictions"] = (
        x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)
    )
    return data


def distribution_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """KL: predictions (probabilities, not renormalised, or logits) and target distributions;
    extreme: zero and sub-eps targets, predictions at 0, 1e-9 and 1."""
    classes = shape[-1]
    logits = params.get("from_logits", False)
    y = rng.dirichlet(np.ones(classes), size=shape[:-1])
    if kind == "random":
        x = (
            rng.normal(0.0, 2.0, shape)
            if logits
            else np.clip(rng.dirichlet(np.ones(classes), size=shape[:-1]), 1e-3, 1)
        )
        return {"predictions": x, "targets": y}
    flat = y.reshape(-1, classes)
    for i, row in enumerate(flat):
        if i % 3 == 0:
            row[:] = np.eye(classes)[rng.integers(classes)]
        elif i % 3 == 1:
            row[rng.integers(classes)] = 1e-9
            row /= row.sum()
    if logits:
        x = rng.normal(0.0, 2.0, shape)
        x.reshape(-1, classes)[:, 0] = 40.0
        x.reshape(-1, classes)[:, 1] = -40.0
    else:
        x = rng.choice([0.0, 1e-9, 1e-4, 0.3, 0.9, 1.0], size=shape)
    return {"predictions": x, "targets": y}


def kl_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """distribution_data; with log_target the targets as log-probabilities (a zero as log 1e-300 = -690.8, whose
    exp underflows to 0 in float32), 'extreme' adding a target of -1e3 and an unnormalised row."""
    data = distribution_data(kind, shape, rng, params)
    if not params.get("log_target", False):
        return data
    t = np.log(np.maximum(data["targets"], 1e-300))
    if kind == "extreme":
        t.reshape(-1, shape[-1])[0, -1] = -1e3
        t.reshape(-1, shape[-1])[1] += 0.5
    return {**data, "targets": t}


# -- finite-difference inputs ----------------------------------------------------------------------


def fd_log_targets(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """fd_categorical; log-probability targets with log_target."""
    data = fd_categorical(rng, params)
    if not params.get("log_target", False):
        return data
    return {**data, "targets": np.log(rng.dirichlet(np.ones(4), size=(3, 2)))}


CLASS_WEIGHTS = [0.5, 2.0, 1.0, 1.5]


def fd_binary(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    shape = (3, 2, 4)
    # probabilities stay far from the clip at eps
    x = rng.normal(0.0, 2.0, shape) if params.get("from_logits") else rng.uniform(0.05, 0.95, shape)
    y = rng.integers(0, 2, shape).astype(np.float64)
    y[0, 0, :2] = [0.3, 0.8]  # soft targets too
    return {"predictions": x, "targets": y}


def class_scores(rng: np.random.Generator, params: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
    if params.get("from_logits"):
        return rng.normal(0.0, 2.0, shape)
    return rng.uniform(0.05, 1.0, shape)  # renormalised rows stay well inside the clip


def fd_categorical(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    shape = (3, 2, 4)
    y = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    y[0, 0] = np.eye(shape[-1])[1]
    return {"predictions": class_scores(rng, params, shape), "targets": y}


def fd_channels(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """fd_categorical's (3, 2, 4) rows, channel-first: (3, 4, 2)."""
    return {k: np.moveaxis(v, -1, 1) for k, v in fd_categorical(rng, params).items()}


def fd_sparse(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    shape = (3, 2, 4)
    labels = rng.integers(0, shape[-1], shape[:-1])
    labels[1, 0] = params.get("ignore_index", -100)
    labels[2, 1] = 1  # a label equal to ignore_index=1, where that is tried
    return {"predictions": class_scores(rng, params, shape), "targets": labels}


def fd_log_probabilities(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    data = fd_sparse(rng, {**params, "from_logits": True})
    x = data["predictions"]
    data["predictions"] = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    data["predictions"][0, 1] += 0.7  # not normalised: any reals are accepted
    return data


# -- declarations ----------------------------------------------------------------------------------

LOSSES = (
    LossInfo(
        "binary_cross_entropy",
        golden=Golden(
            shapes=ELEMENT_SHAPES,
            reference=ref_bce,
            data=binary_data,
            describe=lambda p: (
                "torch.nn.functional.binary_cross_entropy_with_logits(pos_weight, reduction='none') on targets "
                "smoothed y(1-s)+s/2"
                if p.get("from_logits")
                else (
                    "torch.nn.functional.binary_cross_entropy(clamp(p, eps, 1-eps), reduction='none')"
                    if p.get("pos_weight") is None
                    else "formula -(pos_weight y log c + (1-y) log(1-c)), c = clamp(p, eps, 1-eps), torch float64"
                )
                + " on targets smoothed y(1-s)+s/2 (Keras clipping; torch BCELoss itself caps log at -100 instead)"
            ),
            combos=(
                ({"from_logits": True}, ALL),
                ({"from_logits": True, "pos_weight": 2.5}, BOTH),
                ({"from_logits": True, "pos_weight": "per_class"}, ONE),
                ({"from_logits": True, "label_smoothing": 0.1}, BOTH),
                ({"from_logits": True, "pos_weight": "per_class", "label_smoothing": 0.2}, ONE),
                ({}, ALL),
                ({"pos_weight": 2.5}, BOTH),
                ({"pos_weight": "per_class"}, ONE),
                ({"label_smoothing": 0.1}, BOTH),
                ({"pos_weight": 0.5, "label_smoothing": 0.2}, ONE),
                ({"eps": 1e-3}, BOTH),
            ),
        ),
        gradients=GradientCase(
            fd_binary,
            ({}, {"pos_weight": 2.0, "label_smoothing": 0.1}, {"pos_weight": CLASS_WEIGHTS}),
        ),
        domain=BinaryProbability(eps=BinaryCrossEntropyParams().eps),
    ),
    LossInfo(
        "cross_entropy",
        golden=Golden(
            reference=ref_cross_entropy,
            data=categorical_data,
            describe=lambda p: (
                "torch.nn.functional.cross_entropy(probability targets, weight, label_smoothing, reduction='none'), "
                "class axis moved to dim 1"
                if p.get("from_logits")
                else (
                    "keras.losses.categorical_crossentropy(label_smoothing) (renormalise + clip; Keras 3 torch "
                    "backend, run in the case dtype)"
                    if p.get("class_weights") is None
                    else "formula -sum_c w_c (y_c(1-s)+s/C) log clip(p_c/sum p), torch float64 "
                    "(kernels/classification.py; Keras has no class weights)"
                )
            ),
            combos=(
                ({"from_logits": True}, BOTH),
                ({"from_logits": True, "label_smoothing": 0.1}, ONE),
                ({"from_logits": True, "class_weights": "per_class"}, BOTH),
                ({"from_logits": True, "class_weights": "per_class", "label_smoothing": 0.2}, ONE),
                ({}, BOTH),
                ({"label_smoothing": 0.1}, ONE),
                ({"class_weights": "per_class"}, BOTH),
                ({"class_weights": "per_class", "label_smoothing": 0.2}, ONE),
                ({"eps": 1e-3}, BOTH),
            ),
        ),
        gradients=GradientCase(
            fd_categorical,
            ({}, {"label_smoothing": 0.1}, {"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.2}),
        ),
        domain=Simplex(eps=CrossEntropyParams().eps),
    ),
    LossInfo(
        "channel_cross_entropy",
        golden=Golden(
            reference=ref_channel_cross_entropy,
            data=channel_data,
            shapes=CHANNEL_SHAPES,
            describe=lambda p: (
                "torch.nn.functional.cross_entropy(probability targets (N, C, d...), weight, label_smoothing, "
                "reduction='none')"
                if p.get("from_logits")
                else (
                    "keras.losses.categorical_crossentropy(label_smoothing) on the class axis moved last (renormalise "
                    "+ clip; Keras 3 torch backend, run in the case dtype)"
                    if p.get("class_weights") is None
                    else "formula -sum_c w_c (y_c(1-s)+s/C) log clip(p_c/sum p) over axis 1, torch float64"
                )
            ),
            combos=(
                ({"from_logits": True}, BOTH),
                ({"from_logits": True, "label_smoothing": 0.1}, ONE),
                ({"from_logits": True, "class_weights": "per_channel"}, BOTH),
                ({"from_logits": True, "class_weights": "per_channel", "label_smoothing": 0.2}, ONE),
                ({}, BOTH),
                ({"label_smoothing": 0.1}, ONE),
                ({"class_weights": "per_channel"}, ONE),
                ({"eps": 1e-3}, ONE),
            ),
        ),
        gradients=GradientCase(
            fd_channels,
            ({}, {"label_smoothing": 0.1}, {"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.2}),
        ),
        domain=Simplex(eps=ChannelCrossEntropyParams().eps, channel_first=True),
    ),
    LossInfo(
        "sparse_cross_entropy",
        whole="masses",
        golden=Golden(
            reference=ref_sparse,
            data=sparse_data,
            describe=lambda p: (
                "torch.nn.functional.cross_entropy(index targets, weight, ignore_index, label_smoothing, "
                "reduction='none'), class axis moved to dim 1; mass = weight[label] (0 where ignored)"
                if p.get("from_logits")
                else (
                    "keras.losses.sparse_categorical_crossentropy(ignore_class) (renormalise + clip; Keras 3 torch "
                    "backend, run in the case dtype); mass = 1 (0 where ignored)"
                    if p.get("class_weights") is None and not p.get("label_smoothing")
                    else "formula -sum_c w_c keep ((1-s) onehot_c + s/C) log clip(p_c/sum p), torch float64 "
                    "(torch's weighting and smoothing conventions on Keras-clipped probabilities; Keras has "
                    "neither); mass = weight[label] (0 where ignored)"
                )
            ),
            combos=(
                ({"from_logits": True}, BOTH),
                ({"from_logits": True, "class_weights": "per_class"}, BOTH),
                ({"from_logits": True, "label_smoothing": 0.1}, ONE),
                ({"from_logits": True, "class_weights": "per_class", "label_smoothing": 0.1}, ONE),
                ({"from_logits": True, "ignore_index": -1}, ONE),
                ({"from_logits": True, "ignore_index": 2, "class_weights": "per_class", "label_smoothing": 0.2}, ONE),
                ({}, BOTH),
                ({"ignore_index": -1}, ONE),
                ({"class_weights": "per_class"}, BOTH),
                ({"label_smoothing": 0.1}, ONE),
                ({"class_weights": "per_class", "label_smoothing": 0.2, "ignore_index": 2}, ONE),
                ({"eps": 1e-3}, ONE),
            ),
        ),
        gradients=GradientCase(
            fd_sparse,
            ({}, {"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.1}, {"ignore_index": 1, "label_smoothing": 0.1}),
        ),
        domain=Simplex(eps=SparseCrossEntropyParams().eps, labels=True),
    ),
    LossInfo(
        "label_smoothing_cross_entropy",
        whole="masses",
        golden=Golden(
            reference=ref_label_smoothing,
            data=sparse_data,
            describe=lambda p: (
                "torch.nn.functional.cross_entropy(index targets, label_smoothing (default 0.1), weight, "
                "ignore_index, reduction='none'), class axis moved to dim 1; mass = weight[label] (0 where ignored)"
                if p.get("from_logits")
                else (
                    "keras.losses.sparse_categorical_crossentropy(ignore_class) (label_smoothing=0: renormalise + "
                    "clip; run in the case dtype); mass = 1 (0 where ignored)"
                    if p.get("class_weights") is None and p.get("label_smoothing", 0.1) == 0
                    else "formula -sum_c w_c keep ((1-s) onehot_c + s/C) log clip(p_c/sum p), s = 0.1 by default, "
                    "torch float64 (torch's smoothing and weighting on Keras-clipped probabilities; without class "
                    "weights cross-checked against keras CategoricalCrossentropy(label_smoothing)); mass = "
                    "weight[label] (0 where ignored)"
                )
            ),
            combos=(
                ({"from_logits": True}, BOTH),
                ({"from_logits": True, "label_smoothing": 0.3, "class_weights": "per_class"}, ONE),
                ({"from_logits": True, "ignore_index": 1}, ONE),
                ({}, BOTH),
                ({"class_weights": "per_class"}, ONE),
                ({"label_smoothing": 0.0}, ONE),
                ({"from_logits": True, "label_smoothing": 0.0}, ONE),
                ({"eps": 1e-3}, ONE),
            ),
        ),
        gradients=GradientCase(
            fd_sparse, ({}, {"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.3}, {"ignore_index": 1})
        ),
        domain=Simplex(eps=LabelSmoothingCrossEntropyParams().eps, labels=True),
    ),
    LossInfo(
        "nll",
        whole="masses",
        golden=Golden(
            reference=ref_nll,
            data=log_probability_data,
            describe=lambda p: (
                "torch.nn.functional.nll_loss(weight, ignore_index, reduction='none'), class axis moved to dim 1; "
                "mass = weight[label] (0 where ignored)"
            ),
            combos=(
                ({}, ("random", "extreme", "reals")),
                ({"class_weights": "per_class"}, ("random", "reals")),
                ({"ignore_index": 1}, ONE),
                ({"class_weights": "per_class_with_zero", "ignore_index": 0}, ONE),
            ),
        ),
        gradients=GradientCase(
            fd_log_probabilities,
            ({}, {"class_weights": CLASS_WEIGHTS}, {"class_weights": CLASS_WEIGHTS, "ignore_index": 1}),
        ),
        domain=LogProbability(),
    ),
    LossInfo(
        "kl_divergence",
        golden=Golden(
            reference=ref_kl,
            data=kl_data,
            describe=lambda p: (
                "torch.nn.functional.kl_div(log q, t, log_target=True, reduction='none') summed over the last axis, "
                "log q = log_softmax(x) (from_logits) or log clamp(p, eps, 1)"
                if p.get("log_target")
                else "torch.nn.functional.kl_div(log_softmax(x), y, reduction='none') summed over the last axis (0 "
                "log 0 = 0)"
                if p.get("from_logits")
                else "keras.losses.kl_divergence formula sum y' log(y'/p'), y' = clip(y, eps, 1), "
                "p' = clip(p, eps, 1), in torch float64 with the case dtype's eps, checked against Keras run in the "
                "case dtype"
            ),
            combos=(
                ({}, BOTH),
                ({"eps": 1e-3}, BOTH),
                ({"from_logits": True}, BOTH),
                ({"log_target": True}, BOTH),
                ({"from_logits": True, "log_target": True}, BOTH),
            ),
        ),
        gradients=GradientCase(fd_log_targets, ({}, {"eps": 1e-3}, {"log_target": True})),
        domain=Simplex(eps=KlDivergenceParams().eps),
    ),
)
