"""Test declarations of the box regression losses (kernels/boxes.py): GIoU, DIoU, CIoU (torchvision.ops)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from kernels.spec import LossSpec
from tests.kernels.catalog.base import Arrays, Frozen, Golden, GradientCase, LossInfo, Reference
from tests.kernels.catalog.reference import Ctx, Tensor, Tensors, torchvision_ops
from tests.kernels.properties import REAL_CENTRAL, Domain, Floats, Line

# -- references (run by the golden generator only) -------------------------------------------------


def box_reference(function: str) -> Reference:
    def reference(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
        eps = c.f("eps", 1e-7)
        out = getattr(torchvision_ops(), function)(t["predictions"], t["targets"], reduction="none", eps=eps)
        c.check(
            f"torchvision.ops.{function}(reduction='mean') = mean of reduction='none'",
            getattr(torchvision_ops(), function)(t["predictions"], t["targets"], reduction="mean", eps=eps).reshape(1),
            out.mean().reshape(1),
        )
        return out, None

    return reference


# -- golden inputs ---------------------------------------------------------------------------------


def random_boxes(rng: np.random.Generator, n: int, low: float = 0.5) -> np.ndarray:
    corner = rng.uniform(0.0, 10.0, (n, 2))
    return np.concatenate([corner, corner + rng.uniform(low, 6.0, (n, 2))], axis=1)


def box_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Boxes (N, 4) xyxy, overlapping or not; 'extreme': identical boxes (every edge tied), shared edges,
    nested, disjoint, far apart and huge, a zero-width box, touching boxes."""
    n = shape[0]
    targets = random_boxes(rng, n)
    predictions = targets + rng.normal(0.0, 1.5, (n, 4))
    predictions[:, 2:] = np.maximum(predictions[:, 2:], predictions[:, :2] + 0.1)
    if kind == "extreme":
        predictions[0] = targets[0]  # identical
        predictions[2, :2] = targets[2, :2]  # two shared edges
        predictions[3] = targets[3] + [0.5, 0.5, -0.5, -0.5]  # nested
        predictions[4] = targets[4] + [30.0, -40.0, 30.0, -40.0]  # disjoint, far
        predictions[5] = targets[5] * 1e3  # huge
        predictions[6, 2] = predictions[6, 0]  # zero width
        predictions[7] = [targets[7, 2], targets[7, 1], targets[7, 2] + 1.0, targets[7, 3]]  # touching
    return {"predictions": predictions, "targets": targets}


# -- finite-difference inputs ----------------------------------------------------------------------


def fd_boxes(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Boxes whose edges are at least 0.1 from the target's edges along each axis (no max/min switch, the
    intersection neither appearing nor vanishing within the step)."""
    while True:
        targets = random_boxes(rng, 5, low=1.0)
        predictions = targets + rng.normal(0.0, 1.0, (5, 4))
        sides = predictions[:, 2:] - predictions[:, :2]
        ok = bool(np.all(sides > 0.3))
        for axis in (0, 1):
            edges = predictions[:, [axis, axis + 2]]
            others = targets[:, [axis, axis + 2]]
            ok &= bool(np.all(np.abs(edges[:, :, None] - others[:, None, :]) > 0.1))
        if ok:
            return {"predictions": predictions, "targets": targets}


def ciou_alpha_frozen(inputs: Arrays, base: Arrays, params: dict[str, Any]) -> np.ndarray:
    """CIoU's alpha is a constant of its gradient (torchvision computes it under no_grad): the correction
    (alpha(base) - alpha(inputs)) v(inputs), numpy's float64 atan and IoU (DIoU's eps 1e-7, alpha's eps)."""
    eps = params.get("eps", 1e-7)

    def alpha_v(boxes: Arrays) -> tuple[np.ndarray, np.ndarray]:
        p, g = boxes["predictions"], boxes["targets"]
        iw = np.minimum(p[:, 2], g[:, 2]) - np.maximum(p[:, 0], g[:, 0])
        ih = np.minimum(p[:, 3], g[:, 3]) - np.maximum(p[:, 1], g[:, 1])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
        w, h, gw, gh = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1], g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
        iou = inter / (w * h + gw * gh - inter + 1e-7)
        v = 4 / math.pi**2 * (np.arctan(gw / gh) - np.arctan(w / h)) ** 2
        return v / (1 - iou + v + eps), v

    alpha_base, _ = alpha_v(base)
    alpha, v = alpha_v(inputs)
    correction: np.ndarray = (alpha_base - alpha) * v
    return correction


# -- the property domain ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Boxes(Domain):
    """A predicted box ``(x1, y1, x2, y2)`` moving along ``origin + t v`` against a fixed target box, for every
    ``t`` where its width and height stay at least ``least_side`` (the ends of a line are where the box
    degenerates). Canonical lines from a box equal to the 2 x 1 target: a translation along x (kinks: the edges
    meeting at 0, the overlap vanishing at +-2), a diagonal one, a growing right edge, a uniform scaling about
    the centre, and two fixed random lines."""

    least_side: float = 0.0

    def line(self, target: Floats, origin: Floats, direction: Floats, kinks: tuple[float, ...] = ()) -> Line:
        lo, hi = -math.inf, math.inf
        for a, b in ((0, 2), (1, 3)):  # side = origin[b] - origin[a] + t (v[b] - v[a]) >= least_side
            start, slope = origin[b] - origin[a] - self.least_side, direction[b] - direction[a]
            if slope > 0:
                lo = max(lo, -start / slope)
            elif slope < 0:
                hi = min(hi, -start / slope)
        if math.isfinite(lo) and math.isinf(hi):
            # the bounded-below check clips points beyond the ends of a line with a finite lo to >= 0 (a
            # probability vertex): walk such a line the other way, so that a finite end is always hi
            direction, lo, hi, kinks = -direction, -math.inf, -lo, tuple(-k for k in kinks)
        central = (max(lo, -REAL_CENTRAL), min(hi, REAL_CENTRAL))
        extremes = (None if math.isfinite(lo) else -1e12, None if math.isfinite(hi) else 1e12)
        return Line(target, origin, direction, lo, hi, central, kinks, extremes)

    def canonical_lines(self) -> tuple[Line, ...]:
        target = np.array([0.0, 0.0, 2.0, 1.0])
        rng = np.random.default_rng(0)
        lines = [
            self.line(target, target, np.array([1.0, 0.0, 1.0, 0.0]), (-2.0, 0.0, 2.0)),
            self.line(target, target, np.array([1.0, 1.0, 1.0, 1.0]) / 2, (-2.0, -1.0, 0.0, 1.0, 2.0)),
            self.line(target, target, np.array([0.0, 0.0, 1.0, 0.0]), (0.0,)),
            self.line(target, target, np.array([-1.0, -0.5, 1.0, 0.5]) / math.sqrt(2.5), (0.0,)),
        ]
        for _ in range(2):
            origin = np.concatenate([rng.uniform(-2, 2, 2), rng.uniform(2.5, 4, 2)])
            v = rng.normal(size=4)
            lines.append(self.line(target, origin, v / np.linalg.norm(v)))
        return tuple(lines)

    def lines(self) -> st.SearchStrategy[Line]:
        @st.composite
        def draw_line(draw: st.DrawFn) -> Line:
            def box() -> Floats:
                corner = np.array(draw(st.lists(st.floats(-5.0, 5.0), min_size=2, max_size=2)))
                side = np.array(draw(st.lists(st.floats(0.1, 5.0), min_size=2, max_size=2)))
                return np.concatenate([corner, corner + side])

            target, origin = box(), box()
            v = np.array(draw(st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4)))
            # A tiny component beside large ones (1e-8 of them) makes one side grow a hundred million times
            # slower than another: the loss then converges to its bound over more decades than the
            # bounded-below check follows (GIoU: 1.25 -> 1.00002 at t = -1e12, a false counterexample).
            v[np.abs(v) < 0.05] = 0.0
            norm = float(np.linalg.norm(v))
            return self.line(target, origin, v / norm if norm > 1e-3 else np.array([1.0, 0.0, 1.0, 0.0]))

        return draw_line()

    def mismatch(self, spec: LossSpec) -> str | None:
        predictions = spec.inputs[0]
        if predictions.shape != ("N", "4") or predictions.kind != "real":
            return f"predictions are {predictions.kind!r} of shape {predictions.shape}, not boxes (N, 4)"
        return None


# -- declarations ----------------------------------------------------------------------------------

SHAPES = {"8": (8, 4), "11": (11, 4)}


def box_loss(name: str, function: str, least_side: float = 0.0, frozen: Frozen | None = None) -> LossInfo:
    return LossInfo(
        name,
        golden=Golden(
            reference=box_reference(function),
            data=box_data,
            shapes=SHAPES,
            describe=lambda p: f"torchvision.ops.{function}(reduction='none', eps); gradients by torch autograd",
            combos=(({}, ("random", "extreme")), ({"eps": 1e-3}, ("random",))),
            versions=("torchvision",),
        ),
        gradients=GradientCase(fd_boxes, ({}, {"eps": 0.01}), frozen=frozen),
        domain=Boxes(least_side),
    )


LOSSES = (
    box_loss("giou", "generalized_box_iou_loss"),
    box_loss("diou", "distance_box_iou_loss"),
    box_loss("ciou", "complete_box_iou_loss", least_side=1e-3, frozen=ciou_alpha_frozen),
)
