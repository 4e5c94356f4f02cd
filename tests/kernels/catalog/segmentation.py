"""Test declarations of the overlap losses (kernels/segmentation.py): Dice, IoU, Tversky (MONAI)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.kernels.catalog.base import (
    BOTH,
    ONE,
    Arrays,
    Combo,
    Golden,
    GradientCase,
    LossInfo,
    Reference,
    ShapedCombo,
)
from tests.kernels.catalog.reference import Ctx, Tensor, Tensors, float_keeps_double, keras, monai, smp_losses, torch
from tests.kernels.properties import ChannelMasks

# -- references (run by the golden generator only) -------------------------------------------------


def monai_activation(c: Ctx) -> dict[str, bool]:
    activation = c.params.get("activation", "none")
    return {"sigmoid": activation == "sigmoid", "softmax": activation == "softmax"}


def other_act_check(c: Ctx, make: Any, x: Tensor, y: Tensor, out: Tensor) -> None:
    """any_range: the predictions are other_act's output (golden data kinds ``tanh`` and ``log_softmax``), so
    MONAI with that other_act on their pre-activations gives the same losses: log_softmax is idempotent over the
    channels, tanh is undone by atanh. ``make(other_act)`` builds the module (reduction 'none')."""
    if not c.params.get("any_range", False) or c.dtype != "float64":
        return
    if bool(torch.allclose(x.exp().sum(1), torch.ones(1, dtype=x.dtype))):
        theirs = monai_per_class(make(lambda t: torch.log_softmax(t, dim=1)), x, y)
        c.check("monai other_act=log_softmax(dim=1) on the same maps (idempotent) = ours with any_range", theirs, out)
    else:
        theirs = monai_per_class(make(torch.tanh), torch.atanh(x), y)
        c.check("monai other_act=torch.tanh on atanh(predictions) = ours with any_range", theirs, out, rtol=1e-9)


def monai_per_class(module: Any, x: Tensor, y: Tensor) -> Tensor:
    """MONAI's reduction='none' output (N, C', 1, ...) as the (N, C') per-class losses; with batch=True its
    (C', 1, ...) as the one row (1, C') of the whole batch."""
    out: Tensor = module(x, y)
    return out.reshape(1 if getattr(module, "batch", False) else x.shape[0], -1)


def batch_checks(c: Ctx, make: Any, x: Tensor, y: Tensor, out: Tensor) -> None:
    """MONAI's batch=True cross-checked: its own reduction='mean' is the mean of the (1, C') row over the classes
    (our per_sample), and it equals MONAI's batch=False on the batch laid side by side as one sample (the
    statistics summed over the batch and the spatial axes alike); ``make(batch)`` builds the module."""
    if not c.params.get("batch", False):
        return
    c.check(
        "monai batch=True reduction='mean' = the mean over the kept classes",
        make(True, "mean")(x, y).reshape(1),
        out.mean().reshape(1),
    )
    side = (x.movedim(0, 1).reshape(1, x.shape[1], -1), y.movedim(0, 1).reshape(1, y.shape[1], -1))
    c.check(
        "monai batch=True = monai batch=False on the batch laid side by side as one sample",
        monai_per_class(make(False, "none"), *side),
        out,
        rtol=1e-10,
    )


def keras_single_sample(c: Ctx, what: str, ours: Tensor, keras_value: Tensor) -> None:
    """Keras's one-value-per-batch overlap losses = ours on the batch sent as one sample of one channel."""
    c.check(
        f"{what} (axis=None: one value over the whole batch, smooth 0, eps 1e-7) = monai on shape (1, 1, -1) with "
        "smooth_nr=0, smooth_dr=1e-7",
        ours.reshape(1),
        keras_value.reshape(1),
    )


def ref_dice(t: Tensors, c: Ctx, jaccard: bool = False) -> tuple[Tensor, None]:
    x, y = t["predictions"], t["targets"]
    kwargs = dict(
        include_background=c.params.get("include_background", True),
        squared_pred=c.params.get("squared_pred", False),
        smooth_nr=c.f("smooth_nr", 1e-5),
        smooth_dr=c.f("smooth_dr", 1e-5),
        soft_label=c.params.get("soft_label", False),
        batch=c.params.get("batch", False),
        **monai_activation(c),
    )
    out = monai_per_class(monai.losses.DiceLoss(jaccard=jaccard, reduction="none", **kwargs), x, y)
    other_act_check(
        c, lambda act: monai.losses.DiceLoss(jaccard=jaccard, reduction="none", other_act=act, **kwargs), x, y, out
    )
    batch_checks(
        c,
        lambda batch, reduction: monai.losses.DiceLoss(
            jaccard=jaccard, reduction=reduction, **{**kwargs, "batch": batch}
        ),
        x,
        y,
        out,
    )
    weights = c.f("class_weights")
    if weights is not None:  # MONAI holds its weight in float32 (torch.as_tensor): the golden in float64
        weighted = monai.losses.DiceLoss(jaccard=jaccard, reduction="none", weight=weights, **kwargs)
        out = out * torch.tensor(weights, dtype=out.dtype)
        c.check(
            "monai weight (held in float32) = per-class losses times the weights",
            monai_per_class(weighted, x, y),
            out,
            rtol=1e-6,
        )
    else:
        c.check(
            "monai reduction='mean' = our unweighted mean",
            monai.losses.DiceLoss(jaccard=jaccard, reduction="mean", **kwargs)(x, y).reshape(1),
            out.mean().reshape(1),
        )
    p = x if c.params.get("activation", "none") == "none" else None
    if kwargs["soft_label"] and kwargs["squared_pred"]:
        hard = monai_per_class(
            monai.losses.DiceLoss(jaccard=jaccard, reduction="none", **{**kwargs, "soft_label": False}), x, y
        )
        c.check("monai soft_label=True with squared_pred = soft_label=False (its ord-2 statistics)", out, hard)
    if (
        p is not None
        and not kwargs["squared_pred"]
        and c.dtype == "float64"
        and weights is None
        and not kwargs["batch"]
    ):
        if jaccard:  # MONAI's Jaccard = the textbook soft IoU with halved smoothing
            tp = (torch.minimum(x, y) if kwargs["soft_label"] else x * y).flatten(2).sum(-1)
            union = x.flatten(2).sum(-1) + y.flatten(2).sum(-1) - tp
            textbook = 1 - (tp + kwargs["smooth_nr"] / 2) / (union + kwargs["smooth_dr"] / 2)
            kept = textbook if kwargs["include_background"] else textbook[:, 1:]
            c.check("monai jaccard = 1 - (tp + s_nr/2) / (sum p + sum y - tp + s_dr/2)", out, kept)
        else:
            ours = monai.losses.DiceLoss(reduction="none", smooth_nr=0.0, smooth_dr=1e-7)(
                x.reshape(1, 1, -1), y.reshape(1, 1, -1)
            )
            keras_single_sample(c, "keras.losses.dice", ours, keras.losses.dice(y, x))
    return out, None


def ref_iou(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    return ref_dice(t, c, jaccard=True)


def ref_tversky(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, y = t["predictions"], t["targets"]
    alpha, beta = c.f("alpha", 0.5), c.f("beta", 0.5)
    smooth_nr, smooth_dr = c.f("smooth_nr", 1e-5), c.f("smooth_dr", 1e-5)
    soft_label = c.params.get("soft_label", False)
    common = dict(
        include_background=c.params.get("include_background", True),
        batch=c.params.get("batch", False),
        **monai_activation(c),
    )

    def make(batch: bool, reduction: str, other_act: Any = None) -> Any:
        return monai.losses.TverskyLoss(
            alpha=alpha,
            beta=beta,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            soft_label=soft_label,
            reduction=reduction,
            other_act=other_act,
            **{**common, "batch": batch},
        )

    out = monai_per_class(make(common["batch"], "none"), x, y)
    other_act_check(c, lambda act: make(common["batch"], "none", act), x, y, out)
    batch_checks(c, make, x, y, out)
    weights = c.f("class_weights")
    if weights is not None:  # MONAI's TverskyLoss has no weight: DiceLoss's (the per-class loss times it)
        out = out * torch.tensor(weights, dtype=out.dtype)
    elif alpha == beta and alpha in (
        0.5,
        1.0,
    ):  # Tversky(1/2, 1/2) is Dice and Tversky(1, 1) MONAI's Jaccard, smooth x2
        other = monai.losses.DiceLoss(
            jaccard=alpha == 1.0,
            smooth_nr=2 * smooth_nr,
            smooth_dr=2 * smooth_dr,
            soft_label=soft_label,
            reduction="none",
            **common,
        )
        name = "DiceLoss(jaccard=True)" if alpha == 1.0 else "DiceLoss"
        c.check(
            f"monai TverskyLoss(alpha=beta={alpha}, s) = monai {name}(2 s)",
            out,
            monai_per_class(other, x, y),
        )
    if c.params.get("activation", "none") == "none" and c.dtype == "float64" and not soft_label and not common["batch"]:
        keras_tversky_checks(c, x, y, alpha, beta)
    return out, None


def keras_swaps_tversky() -> bool:
    """Whether this Keras multiplies alpha with the false negatives, sum y (1 - p): Keras up to 3.15
    (its code read y_true as the predictions); keras-team/keras#23333 made alpha weigh the false
    positives, as its docstring and the paper say. Told apart on a prediction with one false positive."""
    y, p = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    only_alpha = float(keras.losses.tversky(y, p, alpha=1.0, beta=0.0))
    return only_alpha < 1e-6  # alpha on the (absent) false negatives: loss 0; on the false positive: 1/2


def keras_tversky_checks(c: Ctx, x: Tensor, y: Tensor, alpha: float, beta: float) -> None:
    """Keras's Tversky before and after keras-team/keras#23333, both against ours on the batch as one
    sample: fixed, Tversky(alpha=a, beta=b) = ours(alpha=a, beta=b); before, ours(alpha=b, beta=a). The
    installed Keras is one of the two; the other is its own code on swapped arguments (its y_true
    read as the predictions is the fix's y_pred)."""
    swapped = keras_swaps_tversky()
    straight = monai.losses.TverskyLoss(alpha=alpha, beta=beta, smooth_nr=0.0, smooth_dr=1e-7, reduction="none")
    reverse = monai.losses.TverskyLoss(alpha=beta, beta=alpha, smooth_nr=0.0, smooth_dr=1e-7, reduction="none")
    one = (x.reshape(1, 1, -1), y.reshape(1, 1, -1))
    fixed = keras.losses.tversky(x, y, alpha=alpha, beta=beta) if swapped else keras.losses.tversky(y, x, alpha, beta)
    old = keras.losses.tversky(y, x, alpha=alpha, beta=beta) if swapped else keras.losses.tversky(x, y, alpha, beta)
    version = keras.__version__
    keras_single_sample(
        c,
        f"keras.losses.tversky(alpha=a, beta=b) since keras#23333 ({'emulated on ' if swapped else ''}keras "
        f"{version}) with alpha=a, beta=b",
        straight(*one),
        fixed,
    )
    keras_single_sample(
        c,
        f"keras.losses.tversky(alpha=a, beta=b) up to Keras 3.15 ({'' if swapped else 'emulated on '}keras "
        f"{version}; alpha weighs the false negatives) with alpha=b, beta=a",
        reverse(*one),
        old,
    )


def ref_generalized_dice(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """MONAI's GeneralizedDiceLoss with its weights in float64: MONAI casts the target volumes to float32
    (``ground_o.float()``) first, which the kernel does not; the unpatched MONAI is the cross-check."""
    x, y = t["predictions"], t["targets"]

    def make(batch: bool, reduction: str) -> Any:
        return monai.losses.GeneralizedDiceLoss(
            include_background=c.params.get("include_background", True),
            w_type=c.params.get("w_type", "square"),
            smooth_nr=c.f("smooth_nr", 1e-5),
            smooth_dr=c.f("smooth_dr", 1e-5),
            soft_label=c.params.get("soft_label", False),
            reduction=reduction,
            batch=batch,
            **monai_activation(c),
        )

    module = make(c.params.get("batch", False), "none")
    with float_keeps_double():
        out = monai_per_class(module, x, y)
        batch_checks(c, make, x, y, out)
    c.check("monai GeneralizedDiceLoss (weights in float32)", monai_per_class(module, x, y), out, rtol=1e-6)
    return out, None


def ref_focal_tversky(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """MONAI's per-(sample, class) Tversky losses, clamped at 0, to the power gamma; cross-checked with
    segmentation_models_pytorch's TverskyLoss(gamma) on each single (sample, class) present in the target."""
    x, y = t["predictions"], t["targets"]
    alpha, beta, gamma = c.f("alpha", 0.5), c.f("beta", 0.5), c.f("gamma", 1.0)
    smooth_nr, smooth_dr = c.f("smooth_nr", 1e-5), c.f("smooth_dr", 1e-5)
    include_background = c.params.get("include_background", True)
    module = monai.losses.TverskyLoss(
        alpha=alpha,
        beta=beta,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        soft_label=c.params.get("soft_label", False),
        include_background=include_background,
        reduction="none",
        batch=c.params.get("batch", False),
        **monai_activation(c),
    )
    out = monai_per_class(module, x, y).clamp_min(0.0) ** gamma
    plain = c.params.get("activation", "none") == "none" and include_background and smooth_nr == smooth_dr
    plain = plain and not c.params.get("batch", False)
    if plain and c.params.get("soft_label", False) and c.dtype == "float64":  # smp's overlap is MONAI's soft one
        theirs = smp_losses().TverskyLoss(
            "binary", alpha=alpha, beta=beta, gamma=gamma, smooth=smooth_nr, from_logits=False, eps=1e-300
        )
        present = [(n, k) for n in range(x.shape[0]) for k in range(x.shape[1]) if float(y[n, k].sum()) > 0]
        single = [theirs(x[n : n + 1, k : k + 1], y[n : n + 1, k : k + 1]) for n, k in present]
        c.check(
            "smp TverskyLoss('binary', alpha, beta, gamma, smooth) = ours with soft_label on each (sample, class) "
            "present in the target",
            torch.stack([out[n, k] for n, k in present]),
            torch.stack(single),
        )
    return out, None


# -- golden inputs ---------------------------------------------------------------------------------


def mask_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Channel-first probability maps (or logits) and masks: one-hot over the channels for softmax,
    independent binary masks otherwise, a few soft target values. ``extreme``: saturated predictions,
    a class absent from a sample's target, and a sample predicted perfectly."""
    activation = params.get("activation", "none")
    n, ch = shape[:2]
    if activation == "softmax" or kind == "log_softmax":
        y = np.moveaxis(np.eye(ch)[rng.integers(0, ch, (n, *shape[2:]))], -1, 1)
    else:
        y = (rng.random(shape) < 0.4).astype(np.float64)
    if kind in ("tanh", "log_softmax"):  # any_range: MONAI's other_act applied by the client (its own tests' two)
        z = rng.normal(0.0, 1.5, shape)
        x = np.tanh(z) if kind == "tanh" else z - np.log(np.exp(z).sum(1, keepdims=True))
        return {"predictions": x, "targets": y}
    if kind == "random":
        flat = y.reshape(-1)
        flat[rng.permutation(flat.size)[:3]] = rng.uniform(0.1, 0.9, 3)
        x = rng.normal(0.0, 2.0, shape) if activation != "none" else rng.uniform(0.02, 0.98, shape)
        return {"predictions": x, "targets": y}
    if activation == "sigmoid":
        values = [-40.0, -5.0, 0.0, 5.0, 40.0]
    elif activation == "softmax":
        # torch's softmax backward p (g - sum g p) cancels for a saturated pixel (its float64 reference
        # gradient there is rounding noise ~1e-16 |g|): logit gaps up to 24 keep it accurate
        values = [-12.0, -4.0, 0.0, 4.0, 12.0]
    else:
        values = [0.0, 1e-9, 0.5, 1 - 1e-9, 1.0]
    if params.get("soft_label") and activation == "none":
        # MONAI's |p|_1 has gradient 0 at p = 0 exactly (torch's sign(0)); the kernel's is the one-sided 1
        values = [1e-9 if v == 0.0 else v for v in values]
    x = rng.choice(values, size=shape)
    if activation != "none":
        x.reshape(n, ch, -1)[:, :, 0] = 0.0  # one unsaturated pixel per sample sets the gradient's scale
    y[0, -1] = 0.0  # a class absent from sample 0's target
    if activation == "none":
        x[-1] = np.maximum(y[-1], 1e-9) if params.get("soft_label") else y[-1]  # predicted (almost) perfectly
    return {"predictions": x, "targets": y}


PER_CHANNEL = (
    "inputs (N, C, ...) channel-first; the reference gives one loss per (sample, kept channel); per_sample = their "
    "mean over the channels; mean = sum(w*l)/sum(w); sum = sum(w*l); none = per_sample, gradients of "
    "per_sample.sum(). Reference evaluated in float64 on inputs (and float params) rounded to the case dtype; see "
    "the script's docstring."
)


MASK_SHAPES: dict[str, tuple[int, ...]] = {"1d": (3, 2, 5), "2d": (2, 3, 2, 3)}


OVERLAP_COMBOS: tuple[Combo, ...] = (
    ({}, BOTH),
    ({"activation": "sigmoid"}, BOTH),
    ({"activation": "softmax"}, BOTH),
    ({"include_background": False}, BOTH),
    ({"activation": "sigmoid", "include_background": False}, ONE),
    ({"activation": "softmax", "include_background": False}, BOTH),
    ({"smooth_nr": 0.0, "smooth_dr": 1e-6}, BOTH),
    ({"smooth_nr": 1.0, "smooth_dr": 1.0, "activation": "sigmoid"}, ONE),
)


def soft_twins(combos: tuple[Combo, ...]) -> tuple[Combo, ...]:
    """Each combo again with soft_label (a graph variant of its own), random data only."""
    return tuple(({**params, "soft_label": True}, ONE) for params, _ in combos)


WEIGHTED_COMBOS: tuple[Combo, ...] = (
    # MONAI ignores weight for a single kept class: the shapes' C' > 1 only with the background kept
    ({"class_weights": "per_channel"}, BOTH),
    ({"class_weights": "per_channel", "activation": "softmax", "soft_label": True}, ONE),
    ({"soft_label": True}, ("extreme",)),
    ({"smooth_nr": 0.0, "smooth_dr": 0.0}, ONE),
)


SQUARED_COMBOS: tuple[Combo, ...] = (
    ({"squared_pred": True, "include_background": False}, ONE),
    ({"squared_pred": True, "activation": "sigmoid"}, ONE),
    ({"squared_pred": True, "activation": "sigmoid", "include_background": False}, ONE),
    ({"squared_pred": True, "activation": "softmax"}, BOTH),
    ({"squared_pred": True, "activation": "softmax", "include_background": False}, ONE),
)


BATCH_SHAPES: dict[str, tuple[int, ...]] = {"2d": (2, 3, 2, 3), "3d": (3, 3, 2, 2, 2)}
"""MONAI's batch=True on 2-D and 3-D images (N, C, H, W) and (N, C, D, H, W)."""


def batch_combos(**choices: tuple[Any, ...]) -> tuple[ShapedCombo, ...]:
    """MONAI's batch=True for every graph variant the structural ``choices`` span (each on one of the batch
    shapes, alternately, random data), then the usual forms on both shapes with extreme data too: the
    default, softmax without the background, sigmoid with per-class weights where the loss takes them."""
    variants: list[dict[str, Any]] = [{}]
    for name, values in choices.items():
        variants = [{**v, name: value} for v in variants for value in values]
    names = list(BATCH_SHAPES)
    out: list[ShapedCombo] = []
    for index, variant in enumerate(variants):
        changed = {k: v for k, v in variant.items() if v not in (False, "none") and k != "include_background"}
        if variant.get("include_background") is False:
            changed["include_background"] = False
        name = names[index % len(names)]
        out.append(({"batch": True, **changed}, ONE, {name: BATCH_SHAPES[name]}))
    out.append(({"batch": True}, ("extreme",), BATCH_SHAPES))
    out.append(({"batch": True, "activation": "softmax", "include_background": False}, BOTH, BATCH_SHAPES))
    return tuple(out)


BASE_CHOICES: dict[str, tuple[Any, ...]] = {
    "activation": ("none", "sigmoid", "softmax"),
    "include_background": (True, False),
    "soft_label": (False, True),
}
OTHER_ACT: tuple[Combo, ...] = (
    ({"any_range": True}, ("tanh", "log_softmax")),
    ({"any_range": True, "include_background": False, "batch": True}, ("tanh",)),
)
"""MONAI's other_act (torch.tanh, log_softmax over the channels): the client applies it, any_range takes it."""
WEIGHTED_BATCH: tuple[ShapedCombo, ...] = (
    ({"batch": True, "activation": "sigmoid", "class_weights": "per_channel"}, ONE, BATCH_SHAPES),
)


# -- finite-difference inputs ----------------------------------------------------------------------


def fd_masks(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Channel-first maps (N, C, H, W): probabilities inside (0, 1), or logits; masks with soft values and a
    class absent from one sample (its loss stays smooth while sum p is far from 0); any_range: tanh outputs in
    (-1, 1), as MONAI's other_act=torch.tanh gives."""
    shape = (2, 3, 2, 3)
    logits = params.get("activation", "none") != "none"
    x = rng.normal(0.0, 2.0, shape) if logits else rng.uniform(0.05, 0.95, shape)
    if params.get("any_range"):
        x = np.tanh(rng.normal(0.0, 1.0, shape))
    y = (rng.random(shape) < 0.4).astype(np.float64)
    y[0, 0, 0, :2] = [0.3, 0.8]
    y[1, 2] = 0.0
    return {"predictions": x, "targets": y}


OVERLAP: tuple[dict[str, Any], ...] = (
    {},
    {"soft_label": True, "class_weights": [0.5, 2.0, 1.5]},
    {"soft_label": True, "activation": "softmax", "include_background": False},
    {"smooth_nr": 0.0, "smooth_dr": 0.0, "activation": "sigmoid", "class_weights": [1.0, 0.0, 3.0]},
    {"activation": "sigmoid", "squared_pred": True},
    {"activation": "softmax", "include_background": False},
    {"activation": "softmax", "squared_pred": True, "smooth_nr": 0.5, "smooth_dr": 1.0},
    {"squared_pred": True, "include_background": False},
    {"batch": True},
    {"batch": True, "activation": "softmax", "include_background": False, "class_weights": [0.5, 2.0]},
    {"batch": True, "activation": "sigmoid", "squared_pred": True, "soft_label": True},
    {"any_range": True},
)


# -- declarations ----------------------------------------------------------------------------------


def batch_text(description: str) -> Any:
    """A case's reference text: the declaration's, and MONAI's batch=True where the case has it."""
    return lambda p: (
        description
        + (
            "; batch=True: the statistics summed over the batch, one row (1, C') for the whole batch"
            if p.get("batch")
            else ""
        )
    )


def dice_like(name: str, reference: Reference, description: str) -> LossInfo:
    """Dice and IoU share their inputs, variants and checks; only the reference differs."""
    return LossInfo(
        name,
        golden=Golden(
            reference=reference,
            data=mask_data,
            shapes=MASK_SHAPES,
            conventions=PER_CHANNEL,
            describe=batch_text(description),
            combos=(
                *OVERLAP_COMBOS,
                ({"squared_pred": True}, BOTH),
                *SQUARED_COMBOS,
                *soft_twins((*OVERLAP_COMBOS, ({"squared_pred": True}, ONE), *SQUARED_COMBOS)),
                *WEIGHTED_COMBOS,
                *OTHER_ACT,
                ({"any_range": True, "squared_pred": True}, ("tanh",)),
            ),
            shaped=(*batch_combos(**BASE_CHOICES, squared_pred=(False, True)), *WEIGHTED_BATCH),
            batch_param="batch",
            versions=("monai",),
        ),
        gradients=GradientCase(fd_masks, OVERLAP),
        domain=ChannelMasks(),
    )


OVERLAP_LOSSES: tuple[LossInfo, ...] = (
    dice_like(
        "dice",
        ref_dice,
        "monai.losses.DiceLoss(reduction='none', sigmoid/softmax, squared_pred, include_background, "
        "smooth_nr, smooth_dr): per-class losses (N, C')",
    ),
    dice_like(
        "iou",
        ref_iou,
        "monai.losses.DiceLoss(jaccard=True, reduction='none', sigmoid/softmax, squared_pred, "
        "include_background, smooth_nr, smooth_dr): per-class losses (N, C')",
    ),
    LossInfo(
        "tversky",
        golden=Golden(
            reference=ref_tversky,
            data=mask_data,
            shapes=MASK_SHAPES,
            conventions=PER_CHANNEL,
            describe=lambda p: (
                "monai.losses.TverskyLoss(alpha, beta, reduction='none', sigmoid/softmax, include_background, "
                "smooth_nr, smooth_dr): per-class losses (N, C')"
            ),
            combos=(
                *OVERLAP_COMBOS,
                *soft_twins(OVERLAP_COMBOS),
                *WEIGHTED_COMBOS,
                ({"alpha": 0.3, "beta": 0.7, "soft_label": True}, BOTH),
                ({"alpha": 0.3, "beta": 0.7}, BOTH),
                ({"alpha": 1.0, "beta": 1.0}, ONE),
                ({"alpha": 0.8, "beta": 0.1, "activation": "softmax", "include_background": False}, ONE),
                ({"alpha": 0.0, "beta": 2.0, "activation": "sigmoid"}, ONE),
                *OTHER_ACT,
            ),
            shaped=(
                *batch_combos(**BASE_CHOICES),
                *WEIGHTED_BATCH,
                ({"batch": True, "alpha": 0.3, "beta": 0.7}, ONE, BATCH_SHAPES),
            ),
            batch_param="batch",
            versions=("monai",),
        ),
        gradients=GradientCase(
            fd_masks,
            (
                {},
                {"alpha": 0.3, "beta": 0.7, "activation": "sigmoid"},
                {"alpha": 0.3, "beta": 0.7, "soft_label": True, "class_weights": [0.5, 2.0, 1.5]},
                {"alpha": 0.8, "beta": 0.2, "activation": "softmax", "include_background": False},
                {"batch": True, "alpha": 0.3, "beta": 0.7, "soft_label": True, "class_weights": [0.5, 2.0, 1.5]},
                {"batch": True, "activation": "softmax", "include_background": False},
                {"any_range": True, "alpha": 0.3, "beta": 0.7},
            ),
        ),
        domain=ChannelMasks(),
    ),
)


GENERALIZED_COMBOS: tuple[Combo, ...] = tuple(
    ({**params, "w_type": w_type}, kinds if w_type == "square" else ONE)
    for params, kinds in (*OVERLAP_COMBOS, *soft_twins(OVERLAP_COMBOS))
    for w_type in ("square", "simple", "uniform")
)
FOCAL_TVERSKY_COMBOS: tuple[Combo, ...] = (
    *OVERLAP_COMBOS,
    *soft_twins(OVERLAP_COMBOS),
    ({"gamma": 2.0}, BOTH),
    ({"gamma": 4 / 3, "alpha": 0.3, "beta": 0.7}, BOTH),
    ({"gamma": 0.75, "alpha": 0.7, "beta": 0.3, "activation": "sigmoid"}, BOTH),
    # not on extreme data: its near-perfect soft sample's L ~ 1e-9 is where MONAI's soft overlap, a difference of
    # norms, has lost its last digits, which L^(gamma - 1) amplifies beyond the float64 tolerance
    ({"gamma": 0.75, "soft_label": True}, ONE),
    ({"gamma": 0.75}, ONE),  # a loss near 0 stays off its infinite slope: random data has no perfect sample
    ({"gamma": 2.0, "smooth_nr": 1.0, "smooth_dr": 0.5}, ("extreme",)),  # a perfect sample clamped at 0
)

LOSSES: tuple[LossInfo, ...] = (
    *OVERLAP_LOSSES,
    LossInfo(
        "generalized_dice",
        golden=Golden(
            reference=ref_generalized_dice,
            data=mask_data,
            shapes=MASK_SHAPES,
            conventions=PER_CHANNEL.replace("one loss per (sample, kept channel)", "one loss per sample"),
            describe=lambda p: (
                "monai.losses.GeneralizedDiceLoss(w_type, reduction='none', sigmoid/softmax, include_background, "
                "smooth_nr, smooth_dr, soft_label) with its weights in float64: one loss per sample (N, 1)"
            ),
            combos=(*GENERALIZED_COMBOS, *OTHER_ACT),
            shaped=batch_combos(**BASE_CHOICES, w_type=("square", "simple", "uniform")),
            batch_param="batch",
            versions=("monai",),
        ),
        gradients=GradientCase(
            fd_masks,
            (
                {},
                {"w_type": "simple", "activation": "softmax", "include_background": False},
                {"w_type": "uniform", "activation": "sigmoid", "soft_label": True},
                {"soft_label": True},
                {"batch": True, "w_type": "simple", "activation": "sigmoid"},
                {"batch": True, "activation": "softmax", "include_background": False, "soft_label": True},
            ),
        ),
        domain=ChannelMasks(),
    ),
    LossInfo(
        "focal_tversky",
        golden=Golden(
            reference=ref_focal_tversky,
            data=mask_data,
            shapes=MASK_SHAPES,
            conventions=PER_CHANNEL,
            describe=lambda p: (
                "monai.losses.TverskyLoss(alpha, beta, reduction='none', sigmoid/softmax, include_background, "
                "smooth_nr, smooth_dr, soft_label) per class, clamped at 0, ** gamma: per-class losses (N, C')"
            ),
            combos=(*FOCAL_TVERSKY_COMBOS, *OTHER_ACT),
            shaped=(
                *batch_combos(**BASE_CHOICES),
                ({"batch": True, "gamma": 0.75, "alpha": 0.3, "beta": 0.7}, ONE, BATCH_SHAPES),
            ),
            batch_param="batch",
            versions=("monai", "segmentation-models-pytorch"),
        ),
        gradients=GradientCase(
            fd_masks,
            (
                {},
                {"gamma": 2.0, "alpha": 0.3, "beta": 0.7, "activation": "sigmoid"},
                {"gamma": 0.75, "activation": "softmax", "include_background": False},
                {"gamma": 4 / 3, "soft_label": True},
                {"batch": True, "gamma": 2.0, "activation": "sigmoid"},
                {"batch": True, "gamma": 0.75, "activation": "softmax", "include_background": False},
            ),
        ),
        domain=ChannelMasks(),
    ),
)
