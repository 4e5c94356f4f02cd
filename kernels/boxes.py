"""Bounding-box regression losses: 1 - GIoU, DIoU and CIoU of predicted against target boxes, exactly as
torchvision.ops computes them (generalized_box_iou_loss, distance_box_iou_loss, complete_box_iou_loss).

Boxes are ``(N, 4)`` rows ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``. The gradients are
written out by hand (every term is a product or ratio of the box edges); where torch's ``max``/``min``
of two equal edges meets a tie, the gradient is split in half between them, as torch's
``maximum``/``minimum`` backward does, and an empty intersection has gradient 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from onnx import TensorProto
from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.curves import Arrays, Curve
from kernels.ops import LOSSD
from kernels.regression import exact
from kernels.spec import Card, Input, InvalidInput, KernelFunction, Params, Properties, loss

F64 = TensorProto.DOUBLE
HALF_PI = exact("half_pi", math.pi / 2.0)
ASPECT = exact("aspect", 4.0 / math.pi**2)
SERIES = tuple(exact(f"atan_{k}", (-1.0) ** k / (2 * k + 1)) for k in range(12))
"""Exact float64 constants (a float literal in a kernel is a float32 constant)."""


class BoxParams(Params):
    eps: float = Field(1e-7, gt=0, le=1, description="Added to the denominators (torchvision's eps).")


@script(LOSSD, default_opset=op)
def first_share(a, b):  # type: ignore[no-untyped-def]
    """d max(a, b) / da: 1 where a > b, 1/2 at a tie (torch), 0 below; d min(a, b)/da is first_share(b, a)."""
    half = op.CastLike(0.5, a)
    return op.Where(op.Greater(a, b), op.CastLike(1.0, a), op.Where(op.Equal(a, b), half, op.CastLike(0.0, a)))


@script(LOSSD, default_opset=op)
def overlap(predictions, targets, eps):  # type: ignore[no-untyped-def]
    """IoU = I / (U + eps) and its gradient (N, 4); the boxes' columns; the enclosing box's sides, and
    the gradients of its corners (dcx1/dx1, dcy1/dy1, dcx2/dx2, dcy2/dy2); the union and its gradient."""
    x1, y1, x2, y2 = op.Split(predictions, num_outputs=4, axis=1)
    gx1, gy1, gx2, gy2 = op.Split(targets, num_outputs=4, axis=1)
    iw = op.Min(x2, gx2) - op.Max(x1, gx1)
    ih = op.Min(y2, gy2) - op.Max(y1, gy1)
    zero = op.CastLike(0.0, iw)
    inside = op.CastLike(op.And(op.Greater(iw, zero), op.Greater(ih, zero)), iw)
    intersection = inside * iw * ih
    # dI: the intersection's sides move with an edge of the prediction where it is the inner one
    di_x1 = op.Neg(inside * ih * first_share(x1, gx1))
    di_x2 = inside * ih * first_share(gx2, x2)
    di_y1 = op.Neg(inside * iw * first_share(y1, gy1))
    di_y2 = inside * iw * first_share(gy2, y2)
    w = x2 - x1
    h = y2 - y1
    union = w * h + (gx2 - gx1) * (gy2 - gy1) - intersection
    du_x1 = op.Neg(h) - di_x1
    du_x2 = h - di_x2
    du_y1 = op.Neg(w) - di_y1
    du_y2 = w - di_y2
    d_intersection = op.Concat(di_x1, di_y1, di_x2, di_y2, axis=1)
    d_union = op.Concat(du_x1, du_y1, du_x2, du_y2, axis=1)
    shifted = union + eps
    iou = intersection / shifted
    d_iou = (d_intersection * shifted - intersection * d_union) / (shifted * shifted)
    cw = op.Max(x2, gx2) - op.Min(x1, gx1)
    ch = op.Max(y2, gy2) - op.Min(y1, gy1)
    corners = op.Concat(first_share(gx1, x1), first_share(gy1, y1), first_share(x2, gx2), first_share(y2, gy2), axis=1)
    return iou, d_iou, cw, ch, corners, union, d_union


@script(LOSSD, default_opset=op)
def giou_kernel(predictions, targets, eps):  # type: ignore[no-untyped-def]
    iou, d_iou, cw, ch, corners, union, d_union = overlap(predictions, targets, eps)
    area = cw * ch
    # dA: the enclosing box grows with an outer edge (left and top edges shrink it as they grow)
    d_area = corners * op.Concat(op.Neg(ch), op.Neg(cw), ch, cw, axis=1)
    shifted = area + eps
    elements = 1.0 - iou + (area - union) / shifted
    d_penalty = (d_area * (union + eps) - d_union * shifted) / (shifted * shifted)
    return elements, d_penalty - d_iou


@script(LOSSD, default_opset=op)
def diou_terms(predictions, targets, eps):  # type: ignore[no-untyped-def]
    """1 - IoU + rho^2 / (c^2 + eps) (torchvision's _diou_iou_loss), its gradient, and the IoU."""
    iou, d_iou, cw, ch, corners, _, _ = overlap(predictions, targets, eps)
    diagonal = cw * cw + ch * ch + eps
    d_diagonal = corners * op.Concat(-2.0 * cw, -2.0 * ch, 2.0 * cw, 2.0 * ch, axis=1)
    x1, y1, x2, y2 = op.Split(predictions, num_outputs=4, axis=1)
    gx1, gy1, gx2, gy2 = op.Split(targets, num_outputs=4, axis=1)
    dx = 0.5 * ((x1 + x2) - (gx1 + gx2))
    dy = 0.5 * ((y1 + y2) - (gy1 + gy2))
    rho = dx * dx + dy * dy
    d_rho = op.Concat(dx, dy, dx, dy, axis=1)  # each edge moves its centre by half its own step
    elements = 1.0 - iou + rho / diagonal
    d_distance = (d_rho * diagonal - rho * d_diagonal) / (diagonal * diagonal)
    return elements, d_distance - d_iou, iou


@script(LOSSD, default_opset=op)
def diou_kernel(predictions, targets, eps):  # type: ignore[no-untyped-def]
    elements, gradient, _ = diou_terms(predictions, targets, eps)
    return elements, gradient


@script(LOSSD, default_opset=op)
def atan64(z):  # type: ignore[no-untyped-def]
    """arctan in float64 (onnxruntime has no float64 Atan): |z| > 1 folds by atan z = sign(z) pi/2 - atan(1/z),
    two halvings atan z = 2 atan(z / (1 + sqrt(1 + z^2))) bring |z| below tan(pi/16) = 0.2, where 12 terms of
    the series leave an error below 0.2^25 / 25 (1e-19)."""
    one = op.CastLike(1.0, z)
    far = op.Greater(op.Abs(z), one)
    u = op.Where(far, one / op.Where(far, z, one), z)
    u = u / (one + op.Sqrt(one + u * u))
    u = u / (one + op.Sqrt(one + u * u))
    s = u * u
    series = op.CastLike(op.Constant(value=SERIES[11]), z)
    series = series * s + op.CastLike(op.Constant(value=SERIES[10]), z)
    series = series * s + op.CastLike(op.Constant(value=SERIES[9]), z)
    series = series * s + op.CastLike(op.Constant(value=SERIES[8]), z)
    series = series * s + op.CastLike(op.Constant(value=SERIES[7]), z)
    series = series * s + op.CastLike(op.Constant(value=SERIES[6]), z)
    series = series * s + op.CastLike(op.Constant(value=SERIES[5]), z)
    series = series * s + op.CastLike(op.Constant(value=SERIES[4]), z)
    series = series * s + op.CastLike(op.Constant(value=SERIES[3]), z)
    series = series * s + op.CastLike(op.Constant(value=SERIES[2]), z)
    series = series * s + op.CastLike(op.Constant(value=SERIES[1]), z)
    series = series * s + one
    inner = 4.0 * u * series
    half_pi = op.CastLike(op.Constant(value=HALF_PI), z)
    return op.Where(far, op.Sign(z) * half_pi - inner, inner)


@script(LOSSD, default_opset=op)
def ciou_kernel(predictions, targets, eps):  # type: ignore[no-untyped-def]
    # torchvision computes the DIoU part with its default eps whatever eps is (only alpha takes eps)
    diou, d_diou, iou = diou_terms(predictions, targets, op.CastLike(1e-7, eps))
    x1, y1, x2, y2 = op.Split(op.Cast(predictions, to=F64), num_outputs=4, axis=1)
    gx1, gy1, gx2, gy2 = op.Split(op.Cast(targets, to=F64), num_outputs=4, axis=1)
    w = x2 - x1
    h = y2 - y1
    gw = gx2 - gx1
    gh = gy2 - gy1
    # atan(gw / gh) - atan(w / h) = atan((gw h - w gh) / (gh h + gw w)): exact for non-negative ratios
    angle = atan64((gw * h - w * gh) / (gh * h + gw * w))
    k = op.CastLike(op.Constant(value=ASPECT), angle)
    v = k * angle * angle
    # alpha is a constant of the backward pass (torchvision computes it under no_grad)
    alpha = v / (1.0 - op.Cast(iou, to=F64) + v + op.Cast(eps, to=F64))
    # dv/dw = -2k angle h / (w^2 + h^2), dv/dh = 2k angle w / (w^2 + h^2)
    scale = 2.0 * k * angle * alpha / (w * w + h * h)
    dw = op.Neg(scale * h)
    dh = scale * w
    d_aspect = op.Concat(op.Neg(dw), op.Neg(dh), dw, dh, axis=1)
    elements = diou + op.CastLike(alpha * v, diou)
    return elements, d_diou + op.CastLike(d_aspect, d_diou)


def check_boxes(params: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Four coordinates per box, x1 <= x2 and y1 <= y2 (torchvision's convention)."""
    for name in ("predictions", "targets"):
        boxes = arrays[name]
        if boxes.shape[-1] != 4:
            raise InvalidInput(name, f"expected boxes (N, 4) as (x1, y1, x2, y2), got a last axis of {boxes.shape[-1]}")
        inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if inverted.any():
            row = int(np.argmax(inverted))
            raise InvalidInput(
                name, f"box {row} {boxes[row].tolist()} has x2 < x1 or y2 < y1 (expected x1 <= x2, y1 <= y2)"
            )


def check_boxes_with_height(params: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """As check_boxes, and every box has a positive height (CIoU's aspect term divides by it)."""
    check_boxes(params, arrays)
    for name in ("predictions", "targets"):
        flat = arrays[name][:, 3] <= arrays[name][:, 1]
        if flat.any():
            row = int(np.argmax(flat))
            raise InvalidInput(name, f"box {row} {arrays[name][row].tolist()} has zero height: ciou needs y2 > y1")


BOXES = (
    Input(
        "predictions", ("N", "4"), "real", "Predicted boxes, one (x1, y1, x2, y2) row each, x1 <= x2, y1 <= y2.",
        differentiable=True,
    ),
    Input("targets", ("N", "4"), "real", "Target boxes, same format."),
)  # fmt: skip
PROPERTIES = Properties(
    robust_to_outliers=True,
    smooth_gradient=False,
    convex=False,
    differentiable=False,
    bounded_below=True,
    probabilistic_interpretation=None,
)
PROPERTY_TEXT = (
    "Properties, as a function of the predicted box's four coordinates: bounded below (by 0), not convex, the "
    "gradient jumps where the intersection appears or an edge passes the target's (the max/min of two edges: half "
    "to each at a tie, as torch), and it stays bounded as the box moves far away (the penalty saturates)."
)
REFERENCES_IOU = (
    "Rezatofighi, H., Tsoi, N., Gwak, J., Sadeghian, A., Reid, I., Savarese, S. (2019). Generalized Intersection "
    "over Union: A Metric and A Loss for Bounding Box Regression. CVPR.",
)
REFERENCES_DIOU = (
    "Zheng, Z., Wang, P., Liu, W., Li, J., Ye, R., Ren, D. (2020). Distance-IoU Loss: Faster and Better Learning "
    "for Bounding Box Regression. AAAI.",
)


def box_offset() -> Curve:
    """The predicted unit box slid x to the right of the target unit box (0, 0, 1, 1)."""

    def inputs(x: np.ndarray) -> Arrays:
        predictions = np.stack([x, np.zeros_like(x), x + 1.0, np.ones_like(x)], axis=1)
        return {"predictions": predictions, "targets": np.tile([0.0, 0.0, 1.0, 1.0], (x.size, 1))}

    def direction(x: np.ndarray) -> Arrays:
        return {"predictions": np.tile([1.0, 0.0, 1.0, 0.0], (x.size, 1))}

    return Curve("horizontal offset of the predicted box (unit boxes)", -2.0, 2.0, inputs, direction)


@loss(
    name="giou",
    aliases=("generalized_box_iou",),
    task="regression",
    inputs=BOXES,
    params=BoxParams,
    check=check_boxes,
    curve=box_offset(),
    properties=PROPERTIES,
    card=Card(
        title="Generalized IoU loss (1 - GIoU)",
        summary="One minus the generalized intersection over union of each predicted box with its target: 1 - IoU "
        "plus the share of the smallest enclosing box that the union leaves empty, so boxes that do not overlap "
        "still get a gradient. Exactly torchvision.ops.generalized_box_iou_loss (eps added to the union and to "
        "the enclosing area). In [0, 2). " + PROPERTY_TEXT,
        formula=r"\ell = 1 - \frac{I}{U + \epsilon} + \frac{A_C - U}{A_C + \epsilon}",
        use_cases=("Bounding-box regression in object detectors (DETR, FCOS)",),
        equivalents={
            "torchvision": "torchvision.ops.generalized_box_iou_loss(boxes1, boxes2, eps)",
            "keras": "keras_cv.losses.GIoULoss (xyxy format)",
        },
        references=REFERENCES_IOU,
    ),
)
def giou() -> KernelFunction:
    return giou_kernel


@loss(
    name="diou",
    aliases=("distance_box_iou",),
    task="regression",
    inputs=BOXES,
    params=BoxParams,
    check=check_boxes,
    curve=box_offset(),
    properties=PROPERTIES,
    card=Card(
        title="Distance IoU loss",
        summary="1 - IoU plus the squared distance between the boxes' centres over the squared diagonal of their "
        "smallest enclosing box (plus eps), which pulls non-overlapping boxes together faster than GIoU. Exactly "
        "torchvision.ops.distance_box_iou_loss. In [0, 2). " + PROPERTY_TEXT,
        formula=r"\ell = 1 - \frac{I}{U + \epsilon} + \frac{\rho^2(b, b^{gt})}{c^2 + \epsilon}",
        use_cases=("Bounding-box regression (YOLO-style detectors)", "Non-maximum suppression criteria (DIoU-NMS)"),
        equivalents={"torchvision": "torchvision.ops.distance_box_iou_loss(boxes1, boxes2, eps)"},
        references=REFERENCES_DIOU,
    ),
)
def diou() -> KernelFunction:
    return diou_kernel


@loss(
    name="ciou",
    aliases=("complete_box_iou",),
    task="regression",
    inputs=BOXES,
    params=BoxParams,
    check=check_boxes_with_height,
    curve=box_offset(),
    properties=PROPERTIES,
    card=Card(
        title="Complete IoU loss",
        summary="The distance IoU loss plus an aspect-ratio term alpha v, v = 4/pi^2 (atan(w_gt/h_gt) - "
        "atan(w/h))^2, alpha = v / (1 - IoU + v + eps). Follows torchvision.ops.complete_box_iou_loss exactly, "
        "where it departs from the paper too: the DIoU part always uses eps = 1e-7 (torchvision does not pass "
        "its eps on), and alpha is a constant of the gradient (computed under no_grad, as in the paper's "
        "reference code). Boxes need a positive height (w/h). " + PROPERTY_TEXT,
        formula=r"\ell = \ell_{DIoU} + \alpha v,\quad v = \frac{4}{\pi^2}\left(\arctan\frac{w^{gt}}{h^{gt}} - "
        r"\arctan\frac{w}{h}\right)^2,\ \alpha = \frac{v}{1 - IoU + v + \epsilon}",
        use_cases=("Bounding-box regression where the aspect ratio matters (YOLOv4/v5 default)",),
        equivalents={"torchvision": "torchvision.ops.complete_box_iou_loss(boxes1, boxes2, eps)"},
        references=REFERENCES_DIOU,
    ),
)
def ciou() -> KernelFunction:
    return ciou_kernel
