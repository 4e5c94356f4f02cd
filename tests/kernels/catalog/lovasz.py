"""Test declarations of the Lovász losses (kernels/lovasz.py): segmentation_models_pytorch's LovaszLoss
(Berman et al.'s reference code) per image."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from kernels.spec import LossSpec
from tests.kernels.catalog.base import BOTH, ONE, Arrays, Golden, GradientCase, LossInfo
from tests.kernels.catalog.reference import Ctx, Tensor, Tensors, float_keeps_double, smp_losses, torch
from tests.kernels.properties import REAL_CENTRAL, ChannelMasks, Domain, Floats, Line

# -- references (run by the golden generator only) -------------------------------------------------


def ref_lovasz_hinge(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """smp's _lovasz_hinge on each sample alone: (N, 1); LovaszLoss('binary', per_image=True) is their mean."""
    x, y = t["predictions"], t["targets"]
    lovasz = smp_losses().lovasz
    with float_keeps_double():  # smp's weights are float32 (gt_sorted.float())
        out = torch.stack(
            [lovasz._lovasz_hinge(x[n : n + 1], y[n : n + 1], per_image=False) for n in range(x.shape[0])]
        )
    whole = smp_losses().LovaszLoss("binary", per_image=True)(x.float(), y.float())
    c.check(
        "smp LovaszLoss('binary', per_image=True) in float32 = the mean of the per-sample losses",
        whole,
        out.mean(),
        rtol=1e-5,
    )
    return out.reshape(-1, 1), None


def ref_lovasz_softmax(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """smp's _lovasz_softmax(probabilities, labels, classes) on each sample alone: (N, 1); with softmax,
    LovaszLoss('multiclass', per_image=True) on the logits is their mean."""
    x, y = t["predictions"], t["targets"]
    softmax = c.params.get("activation", "none") == "softmax"
    average = c.params.get("average", "present")
    probabilities = torch.softmax(x, 1) if softmax else x
    # smp takes a 3-d input for sigmoid maps (B, H, W): the spatial axes as (pixels, 1)
    image = (1, x.shape[1], -1, 1)
    labels = y.argmax(1)
    flat = labels.reshape(x.shape[0], -1, 1)
    lovasz = smp_losses().lovasz
    with float_keeps_double():  # smp's weights are float32 (gt_sorted.float())
        out = torch.stack(
            [
                lovasz._lovasz_softmax(
                    probabilities[n].reshape(image), flat[n : n + 1], classes=average, per_image=False
                )
                for n in range(x.shape[0])
            ]
        )
    if softmax and average == "present":
        whole = smp_losses().LovaszLoss("multiclass", per_image=True)(x.float().reshape(x.shape[0], *image[1:]), flat)
        what = "smp LovaszLoss('multiclass', per_image=True) on logits in float32 = the mean of the per-sample losses"
        c.check(what, whole, out.mean(), rtol=1e-5)
    return out.reshape(-1, 1), None


# -- golden and finite-difference inputs -----------------------------------------------------------


def hinge_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Logits without ties among a sample's hinge errors; ``extreme``: large logits, a sample without
    foreground and one whose logits all clear the margin (loss 0)."""
    y = (rng.random(shape) < 0.45).astype(np.float64)
    scale = 2.0 if kind == "random" else 40.0
    x = rng.normal(0.0, scale, shape)
    if kind == "extreme":
        y[0] = 0.0
        x[-1] = (2.0 * y[-1] - 1.0) * rng.uniform(1.5, 30.0, shape[1:])
    return {"predictions": x, "targets": y}


def softmax_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Channel-first one-hot masks and probabilities (or logits) without ties among a class's errors;
    ``extreme``: confident predictions and a class absent from sample 0's target."""
    n, ch = shape[:2]
    labels = rng.integers(0, ch, (n, *shape[2:]))
    if kind == "extreme":
        labels[0] = np.where(labels[0] == ch - 1, 0, labels[0])  # class C-1 absent from sample 0
    y = np.moveaxis(np.eye(ch)[labels], -1, 1)
    logits = rng.normal(0.0, 1.5 if kind == "random" else 6.0, shape)
    if params.get("activation", "none") == "softmax":
        return {"predictions": logits, "targets": y}
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return {"predictions": z / z.sum(axis=1, keepdims=True), "targets": y}


def fd_hinge(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Logits whose hinge errors are distinct and away from 0 (the loss is linear around them)."""
    y = (rng.random((2, 3, 4)) < 0.5).astype(np.float64)
    x = rng.normal(0.0, 2.0, (2, 3, 4))
    errors = 1.0 - x * (2.0 * y - 1.0)
    x = np.where(np.abs(errors) < 0.05, x + 0.2 * (2.0 * y - 1.0), x)
    return {"predictions": x, "targets": y}


def fd_softmax(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    return softmax_data("random", (2, 3, 2, 3), rng, params)


# -- the binary domain -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogitMasks(Domain):
    """Binary segmentation logits: one sample's logit map of ``pixels`` values, any reals, against a hard
    mask with both foreground and background; along one pixel's logit, all of them, or random chords."""

    pixels: int = 4

    def line(self, target: Floats, origin: Floats, direction: Floats) -> Line:
        return Line(
            target=target,
            origin=origin,
            direction=direction,
            lo=-math.inf,
            hi=math.inf,
            central=(-REAL_CENTRAL, REAL_CENTRAL),
            extremes=(-1e12, 1e12),
        )

    def canonical_target(self) -> Floats:
        target = np.zeros(self.pixels)
        target[: self.pixels // 2] = 1.0
        return target

    def canonical_lines(self) -> tuple[Line, ...]:
        target = self.canonical_target()
        pixel = np.zeros(self.pixels)
        pixel[0] = 1.0
        chord = np.linspace(-1.0, 1.0, self.pixels)
        origin = np.linspace(-0.7, 0.9, self.pixels)
        return (
            self.line(target, np.zeros(self.pixels), np.ones(self.pixels)),
            self.line(target, origin, pixel),
            self.line(target, origin, chord / np.linalg.norm(chord)),
        )

    def lines(self) -> st.SearchStrategy[Line]:
        n = self.pixels

        @st.composite
        def draw_line(draw: st.DrawFn) -> Line:
            target = np.array(draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n)))
            target[0], target[-1] = 1.0, 0.0
            origin = np.array(draw(st.lists(st.floats(-3.0, 3.0), min_size=n, max_size=n)))
            direction = np.array(draw(st.lists(st.floats(-1.0, 1.0), min_size=n, max_size=n)))
            norm = float(np.linalg.norm(direction))
            return self.line(target, origin, direction / norm if norm > 1e-3 else np.ones(n))

        return draw_line()

    def mismatch(self, spec: LossSpec) -> str | None:
        predictions, targets = spec.inputs[0], spec.inputs[1]
        if predictions.kind != "real" or predictions.shape != ("N", "P", "..."):
            return f"predictions are {predictions.kind!r} of shape {predictions.shape}, not logit maps"
        allowed = targets.allowed or ()
        return None if set(allowed) == {0.0, 1.0} else f"targets allow {allowed}, not 0 and 1"


# -- declarations ----------------------------------------------------------------------------------

PER_SAMPLE = (
    "one loss per sample (smp's per_image=True), elements (N, 1); per_sample = that loss; mean = sum(w*l)/sum(w); "
    "sum = sum(w*l); none = per_sample, gradients of per_sample.sum(). Reference evaluated in float64 on inputs "
    "rounded to the case dtype; see the script's docstring."
)

LOSSES = (
    LossInfo(
        "lovasz_hinge",
        golden=Golden(
            reference=ref_lovasz_hinge,
            data=hinge_data,
            shapes={"1d": (3, 7), "2d": (2, 3, 4)},
            conventions=PER_SAMPLE,
            describe=lambda p: "segmentation_models_pytorch.losses.lovasz._lovasz_hinge per sample (per_image=True)",
            combos=(({}, BOTH),),
            versions=("segmentation-models-pytorch",),
        ),
        gradients=GradientCase(fd_hinge),
        domain=LogitMasks(),
    ),
    LossInfo(
        "lovasz_softmax",
        golden=Golden(
            reference=ref_lovasz_softmax,
            data=softmax_data,
            shapes={"1d": (3, 3, 6), "2d": (2, 3, 2, 3)},
            conventions=PER_SAMPLE,
            describe=lambda p: (
                "segmentation_models_pytorch.losses.lovasz._lovasz_softmax(probabilities, labels, classes) per "
                "sample (per_image=True); softmax first for activation softmax"
            ),
            combos=(
                ({}, BOTH),
                ({"activation": "softmax"}, BOTH),
                ({"average": "all"}, BOTH),
                ({"average": "all", "activation": "softmax"}, ONE),
            ),
            versions=("segmentation-models-pytorch",),
        ),
        gradients=GradientCase(
            fd_softmax, ({}, {"activation": "softmax"}, {"average": "all"}, {"activation": "softmax", "average": "all"})
        ),
        domain=ChannelMasks(),
    ),
)
