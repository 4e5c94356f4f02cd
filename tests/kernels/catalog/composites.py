"""Test declarations of the composite losses (kernels/composites.py): weighted sums of catalog losses."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.kernels.catalog.base import BOTH, Arrays, Golden, GradientCase, LossInfo
from tests.kernels.catalog.classification import ref_bce
from tests.kernels.catalog.imbalance import ref_focal
from tests.kernels.catalog.reference import Ctx, F, Tensor, Tensors, monai
from tests.kernels.catalog.segmentation import MASK_SHAPES, fd_masks, mask_data, ref_dice
from tests.kernels.properties import ChannelMasks

# -- references (run by the golden generator only) -------------------------------------------------


COMPOSITE = (
    "a weighted sum of catalog losses (weights 1, default params): the reference returns one element per sample, the "
    "sum of the terms' per-sample losses (each its own mean over its elements or channels), so mean = "
    "sum(w*l)/sum(w), sum = sum(w*l) and none = per_sample are the sums of the terms'. Reference evaluated in "
    "float64 on inputs rounded to the case dtype; see the script's docstring."
)


def per_sample_sum(*elements: Tensor) -> Tensor:
    """Terms' element losses as one (N, 1) element: the sum of their per-sample means."""
    n = elements[0].shape[0]
    return sum(e.reshape(n, -1).mean(1) for e in elements).reshape(n, 1)


def ref_dice_bce(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    dice, _ = ref_dice(t, Ctx(c.dtype, {}, c.checks))
    bce, _ = ref_bce(t, Ctx(c.dtype, {}, c.checks))
    return per_sample_sum(dice, bce), None


def ref_focal_dice(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    focal, _ = ref_focal(t, Ctx(c.dtype, {}, c.checks))
    dice, _ = ref_dice(t, Ctx(c.dtype, {}, c.checks))
    return per_sample_sum(focal, dice), None


def ref_dice_ce(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """MONAI DiceCELoss() (defaults): Dice on the predictions as probabilities plus torch's cross-entropy over
    axis 1 on them as logits, per sample; checked against DiceCELoss's own mean, with one-hot targets and with
    the label map (to_onehot_y=True)."""
    x, y = t["predictions"], t["targets"]
    if c.params.get("batch", False):  # MONAI's batch applies to the Dice only: CE stays a mean over everything
        dice, _ = ref_dice(t, Ctx(c.dtype, {"batch": True}, c.checks))
        out = (dice.mean() + F.cross_entropy(x, y)).reshape(1, 1)
        c.check(
            "monai DiceCELoss(batch=True) = the batch Dice's class mean + the CE's mean over everything",
            monai.losses.DiceCELoss(batch=True)(x, y).reshape(1),
            out.reshape(1),
        )
        return out, None
    dice, _ = ref_dice(t, Ctx(c.dtype, {}, c.checks))
    ce = F.cross_entropy(x, y, reduction="none")
    out = per_sample_sum(dice, ce)
    c.check(
        "monai DiceCELoss() (reduction='mean') = our unweighted mean",
        monai.losses.DiceCELoss()(x, y).reshape(1),
        out.mean().reshape(1),
    )
    if bool(((y == 0) | (y == 1)).all()) and bool((y.sum(1) == 1).all()):
        labels = y.argmax(1, keepdim=True)
        c.check(
            "monai DiceCELoss(to_onehot_y=True) on the label map (N, 1, ...) = the same on one-hot targets",
            monai.losses.DiceCELoss(to_onehot_y=True)(x, labels).reshape(1),
            out.mean().reshape(1),
        )
    return out, None


def dice_ce_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """mask_data's probability maps with one-hot targets (its softmax form's), a few soft in random cases."""
    x = mask_data(kind, shape, rng, {})["predictions"]
    y = mask_data(kind, shape, rng, {"activation": "softmax"})["targets"]
    return {"predictions": x, "targets": y}


def fd_dice_ce(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Probability maps inside (0, 1) with one-hot targets, one pixel's target soft."""
    shape = (2, 3, 2, 3)
    x = rng.uniform(0.05, 0.95, shape)
    y = np.moveaxis(np.eye(3)[rng.integers(0, 3, (2, 2, 3))], -1, 1)
    y[0, :, 0, 0] = [0.3, 0.5, 0.2]
    return {"predictions": x, "targets": y}


# -- declarations ----------------------------------------------------------------------------------

LOSSES = (
    LossInfo(
        "dice_bce",
        golden=Golden(
            reference=ref_dice_bce,
            data=mask_data,
            shapes=MASK_SHAPES,
            conventions=COMPOSITE,
            describe=lambda p: (
                "monai.losses.DiceLoss(reduction='none') per-class losses averaged over the channels, plus "
                "torch.nn.functional.binary_cross_entropy on p clamped to [eps, 1-eps] averaged over the elements"
            ),
            combos=(({}, BOTH),),
            versions=("monai",),
        ),
        gradients=GradientCase(fd_masks),
        domain=ChannelMasks(empty_class=True),
    ),
    LossInfo(
        "focal_dice",
        golden=Golden(
            reference=ref_focal_dice,
            data=mask_data,
            shapes=MASK_SHAPES,
            conventions=COMPOSITE,
            describe=lambda p: (
                "torchvision sigmoid_focal_loss formulas on p clamped to [eps, 1-eps] averaged over the elements, "
                "plus monai.losses.DiceLoss(reduction='none') per-class losses averaged over the channels"
            ),
            combos=(({}, BOTH),),
            versions=("monai",),
        ),
        gradients=GradientCase(fd_masks),
        domain=ChannelMasks(empty_class=True),
    ),
    LossInfo(
        "dice_ce",
        golden=Golden(
            reference=ref_dice_ce,
            data=dice_ce_data,
            shapes=MASK_SHAPES,
            conventions=COMPOSITE,
            describe=lambda p: (
                "monai.losses.DiceLoss(reduction='none') per-class losses averaged over the channels, plus "
                "torch.nn.functional.cross_entropy on the predictions as logits (probability targets, class axis 1) "
                "averaged over the positions; checked against monai.losses.DiceCELoss()"
                + (
                    "; batch=True: DiceLoss(batch=True) averaged over the classes plus the cross-entropy's mean over "
                    "every sample and position, one value for the batch (monai.losses.DiceCELoss(batch=True))"
                    if p.get("batch")
                    else ""
                )
            ),
            combos=(({}, BOTH), ({"batch": True}, BOTH)),
            batch_param="batch",
            versions=("monai",),
        ),
        gradients=GradientCase(fd_dice_ce, ({}, {"batch": True})),
        domain=ChannelMasks(empty_class=True),
    ),
)
