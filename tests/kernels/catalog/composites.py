"""Test declarations of the composite losses (kernels/composites.py): weighted sums of catalog losses."""

from __future__ import annotations

from tests.kernels.catalog.base import BOTH, Golden, GradientCase, LossInfo
from tests.kernels.catalog.classification import ref_bce
from tests.kernels.catalog.imbalance import ref_focal
from tests.kernels.catalog.reference import Ctx, Tensor, Tensors
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


# -- declarations ----------------------------------------------------------------------------------

LOSSES = (
    LossInfo(
        "dice_bce",
        whole="composite (its graph is not marked row-wise)",
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
        whole="composite (its graph is not marked row-wise)",
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
)
