"""Lovász losses (Berman et al. 2018): the Lovász extension of the Jaccard loss, a convex surrogate
of 1 - IoU that sorts the pixel errors, binary (hinge errors of logits) and multi-class (absolute
errors of class probabilities). One loss per sample (segmentation_models_pytorch's per_image=True).

Sorting is ONNX TopK over the pixel axis (k = all pixels, descending); the extension's weights come
from cumulative sums of the sorted ground truth, and the gradient is scattered back through the
same permutation. At tied errors the order, hence the gradient, is one of the valid subgradients
(torch's sort picks another); the loss itself does not depend on it.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np
from onnx import TensorProto
from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.curves import Arrays, Curve
from kernels.ops import LOSSD
from kernels.segmentation import CHANNEL_RULES, TARGETS, activation_pair, foreground_probability
from kernels.spec import Card, Input, KernelFunction, Params, Properties, loss

F64 = TensorProto.DOUBLE


@script(LOSSD, default_opset=op)
def lovasz_weights(gt_sorted):  # type: ignore[no-untyped-def]
    """The gradient of the Lovász extension at sorted errors (Alg. 1): the increments of the Jaccard
    loss J_i = 1 - I_i / U_i of the first i + 1 pixels, from the ground truth in that order (float64,
    any leading axes; pixels last). 1 - I/U = (U - I)/U = (i + 1)/U_i, so no cancellation."""
    axis = op.Constant(value_int=-1)
    total = op.ReduceSum(gt_sorted, op.Constant(value_ints=[-1]), keepdims=1)
    union = total + op.CumSum(1.0 - gt_sorted, axis)
    jaccard = op.CumSum(gt_sorted * 0.0 + 1.0, axis) / union
    first = op.Slice(jaccard, op.Constant(value_ints=[0]), op.Constant(value_ints=[1]), op.Constant(value_ints=[-1]))
    before = op.Slice(jaccard, op.Constant(value_ints=[0]), op.Constant(value_ints=[-1]), op.Constant(value_ints=[-1]))
    return jaccard - op.Concat(first * 0.0, before, axis=-1)


@script(LOSSD, default_opset=op)
def sorted_extension(errors, truth):  # type: ignore[no-untyped-def]
    """Errors sorted descending along the last axis, the Lovász weights of that order (float64) and
    the permutation."""
    k = op.Shape(errors, start=-1)
    ordered, index = op.TopK(errors, k, axis=-1, largest=1, sorted=1)
    weights = lovasz_weights(op.Cast(op.GatherElements(truth, index, axis=-1), to=F64))
    return ordered, weights, index


@script(LOSSD, default_opset=op)
def lovasz_hinge_kernel(predictions, targets):  # type: ignore[no-untyped-def]
    rows = op.Constant(value_ints=[0, -1])  # (N, P, R) -> (N, P R): each sample's pixels in one row
    x = op.Reshape(predictions, rows)
    signs = 2.0 * op.Reshape(targets, rows) - 1.0
    errors = 1.0 - x * signs
    ordered, weights, index = sorted_extension(errors, 0.5 * signs + 0.5)
    hinge = op.Relu(ordered)
    value = op.ReduceSum(op.Cast(hinge, to=F64) * weights, op.Constant(value_ints=[-1]), keepdims=1)
    active = op.CastLike(op.Greater(ordered, op.CastLike(0.0, ordered)), x)  # relu'(0) = 0, as torch
    slope = op.ScatterElements(op.Mul(errors, 0.0), index, op.CastLike(weights, x) * active, axis=-1)
    return op.CastLike(value, x), op.Reshape(op.Neg(signs) * slope, op.Shape(predictions))


class LovaszHingeParams(Params):
    pass


class LovaszSoftmaxParams(Params):
    activation: Literal["none", "softmax"] = Field(
        "none",
        description="Applied to the predictions first: none (class probabilities, as Berman et al.'s "
        "lovasz_softmax takes them) or softmax over the channel axis (logits, as segmentation_models_pytorch's "
        "LovaszLoss('multiclass') does).",
    )
    average: Literal["present", "all"] = Field(
        "present",
        description="Average over the classes present in the sample's target (the reference default), or all.",
    )


@cache
def softmax_kernel(activation: str, present_only: bool) -> KernelFunction:
    probabilities, backward = activation_pair(activation, True)

    @script(LOSSD, default_opset=op)
    def lovasz_softmax_kernel(predictions, targets):  # type: ignore[no-untyped-def]
        p, y, aux = probabilities(predictions, targets)
        errors = op.Abs(y - p)
        ordered, weights, index = sorted_extension(errors, y)
        per_class = op.ReduceSum(op.Cast(ordered, to=F64) * weights, op.Constant(value_ints=[-1]), keepdims=0)
        if present_only:
            largest = op.ReduceMax(y, op.Constant(value_ints=[-1]), keepdims=0)
            present = op.Cast(op.Greater(largest, op.CastLike(0.0, largest)), to=F64)
        else:
            present = per_class * 0.0 + 1.0
        count = op.Max(op.ReduceSum(present, op.Constant(value_ints=[1]), keepdims=1), op.CastLike(1.0, present))
        scale = present / count  # (N, C): a sample with no class present has loss 0, as the reference's empty mean
        value = op.ReduceSum(per_class * scale, op.Constant(value_ints=[1]), keepdims=1)
        slope = op.ScatterElements(op.Mul(errors, 0.0), index, op.CastLike(weights, p), axis=-1)
        grad = op.CastLike(op.Unsqueeze(scale, op.Constant(value_ints=[-1])), p) * slope * op.Sign(p - y)
        return op.CastLike(value, p), backward(grad, aux)

    return lovasz_softmax_kernel


LOVASZ_PROPERTIES = Properties(
    robust_to_outliers=True,
    smooth_gradient=False,
    convex=True,
    differentiable=False,
    bounded_below=True,
    probabilistic_interpretation=None,
)
REFERENCES = (
    "Berman, M., Rannen Triki, A., Blaschko, M. B. (2018). The Lovász-Softmax loss: A tractable surrogate for the "
    "optimization of the intersection-over-union measure in neural networks. CVPR.",
    "Yu, J., Blaschko, M. B. (2018). The Lovász Hinge: A Novel Convex Surrogate for Submodular Losses. TPAMI.",
)


def foreground_logit(pixels: int = 8) -> Curve:
    """A uniform logit x on every pixel of an all-foreground mask."""

    def inputs(x: np.ndarray) -> Arrays:
        return {
            "predictions": np.broadcast_to(x[:, None], (x.size, pixels)).copy(),
            "targets": np.ones((x.size, pixels)),
        }

    def direction(x: np.ndarray) -> Arrays:
        return {"predictions": np.ones((x.size, pixels))}

    return Curve("logit of the foreground (uniform map, all-foreground mask)", -3.0, 3.0, inputs, direction)


@loss(
    name="lovasz_hinge",
    task="segmentation",
    inputs=(
        # P: at least one pixel axis, so that the batch is never laid out as one row (the column layout of
        # element-wise losses): the extension sorts each sample's pixels together
        Input("predictions", ("N", "P", "..."), "real", "Logit maps of the foreground, (N, *spatial).", True),
        Input(
            "targets",
            ("N", "P", "..."),
            "probability",
            "Binary masks (0 or 1), same shape as predictions.",
            allowed=(0.0, 1.0),
        ),
    ),
    properties=LOVASZ_PROPERTIES,
    curve=foreground_logit(),
    card=Card(
        title="Lovász hinge loss",
        summary="The Lovász extension of the Jaccard loss applied to the hinge errors max(0, 1 - x s) of each "
        "sample's pixels (s = 2y - 1): a convex, piecewise-linear surrogate of 1 - IoU that weighs the pixels by "
        "their rank among the errors. One loss per sample, over all its pixels (binary segmentation with one "
        "logit map). Convex in the logits, with gradients bounded by 1 per pixel; not differentiable where two "
        "errors tie or one reaches the hinge.",
        formula=r"\ell_n = \sum_i \max(0, e_{\pi(i)})\, g_i(\pi),\quad e = 1 - x \odot (2y - 1),\quad "
        r"g_i = J(\{\pi(1..i)\}) - J(\{\pi(1..i-1)\}),\ J = 1 - \frac{|y \cap \cdot|}{|y \cup \cdot|}",
        use_cases=(
            "Binary segmentation scored by IoU (fine-tuning after cross-entropy)",
            "Building, road and salt segmentation from aerial or seismic imagery",
        ),
        equivalents={
            "smp": "segmentation_models_pytorch.losses.LovaszLoss('binary', per_image=True) (matched); its default "
            "per_image=False pools the whole batch: send the batch as one sample, shape (1, -1)",
            "paper": "lovasz_hinge(logits, labels, per_image=True) of Berman et al.'s reference code",
        },
        references=REFERENCES,
    ),
)
def lovasz_hinge() -> KernelFunction:
    return lovasz_hinge_kernel


@loss(
    name="lovasz_softmax",
    task="segmentation",
    inputs=(
        Input(
            "predictions",
            ("N", "C", "..."),
            "score",
            "Class probabilities over the channel axis (activation none), or logits (softmax); channel-first.",
            differentiable=True,
            probabilities_when=("activation", "none"),
        ),
        TARGETS,
    ),
    params=LovaszSoftmaxParams,
    min_sizes=CHANNEL_RULES[1:],
    curve=foreground_probability(),
    properties=LOVASZ_PROPERTIES.model_copy(update={"robust_to_outliers": False}),
    card=Card(
        title="Lovász-Softmax loss",
        summary="For each class, the Lovász extension of its Jaccard loss at the absolute errors |y - p| of its "
        "pixels, averaged over the classes present in the sample's target: a convex, piecewise-linear surrogate "
        "of the mean IoU of a multi-class segmentation. One loss per sample (per_image=True). Convex in the "
        "probabilities (the default form; not in the logits with softmax) and not differentiable where two "
        "errors of a class tie. Its gradient never exceeds 1 per pixel, but a pixel's pull grows as its error "
        "climbs the ranking (the largest Lovász weights go to the top errors), so a confidently wrong pixel "
        "pulls harder than a slightly wrong one: not robust to outliers in the card's sense. Targets are one-hot "
        "masks or an integer label map; "
        "soft masks are taken as they are (the reference takes labels).",
        formula=r"\ell_n = \frac{1}{|K|}\sum_{c \in K} \sum_i e^c_{\pi(i)}\, g_i(\pi),\quad e^c = |y_c - p_c|,"
        r"\quad K = \text{classes present in } y_n",
        use_cases=(
            "Multi-class semantic segmentation scored by mean IoU (Pascal VOC, Cityscapes)",
            "Fine-tuning a segmentation network trained with cross-entropy",
        ),
        equivalents={
            "smp": "segmentation_models_pytorch.losses.LovaszLoss('multiclass', per_image=True) on logits = ours with "
            "activation='softmax' and label-map targets (matched); per_image=False pools the batch",
            "paper": "lovasz_softmax(probas, labels, classes='present', per_image=True) of Berman et al.'s "
            "reference code = ours with the default activation='none' (classes='all': average='all')",
        },
        references=REFERENCES,
    ),
)
def lovasz_softmax(activation: str, average: str) -> KernelFunction:
    return softmax_kernel(activation, average == "present")
