"""Overlap losses for segmentation (MONAI semantics): Dice, IoU (Jaccard) and Tversky.

Inputs are channel-first, ``(N, C, *spatial)``; the graph sees ``(N, C, R)`` with the
spatial axes collapsed. Each (sample, class) gets one loss from soft overlap statistics
summed over the spatial axis, so the kernel's element losses are ``(N, C')`` (``C' = C``,
or ``C - 1`` without the background channel) and ``per_sample`` is their mean over the
classes, which is MONAI's ``reduction="mean"`` for equal class counts.

All three losses are ``1 - (k tp + s_nr) / (k tp + err + s_dr)`` with ``err`` a weighted
sum of soft false positives and false negatives (``k = 2`` for Dice and IoU, 1 for
Tversky). The kernels compute ``(err + s_dr - s_nr) / (k tp + err + s_dr)``, the same
number without the cancellation in ``1 - ratio`` (accurate down to a perfect prediction),
from sums taken in float64 whatever the request's dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, Literal

import numpy as np
from onnx import TensorProto
from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.curves import Arrays, Curve
from kernels.ops import LOSSD, logistic, row_sum, spread
from kernels.spec import Card, Input, InvalidInput, KernelFunction, MinSize, Params, Properties, loss

F64 = TensorProto.DOUBLE
Activation = Literal["none", "sigmoid", "softmax"]


class OverlapBase(Params):
    activation: Activation = Field(
        "none",
        description="Applied to the predictions first: none (they are probabilities), sigmoid (one logit per "
        "channel, multi-label), or softmax over the channel axis (multi-class logits).",
    )
    smooth_nr: float = Field(1e-5, ge=0, description="Added to the numerator (MONAI smooth_nr).")
    smooth_dr: float = Field(
        1e-5,
        ge=0,
        description="Added to the denominator (MONAI smooth_dr). 0 leaves a class empty in both predictions and "
        "targets undefined (0/0): such a request is a 422 naming this param.",
    )
    include_background: bool = Field(
        True, description="false: channel 0 (the background) is left out of the loss; needs at least 2 channels."
    )
    soft_label: bool = Field(
        False,
        description="MONAI soft_label: overlap from |p - y| (tp = sum min(p, y), fp = sum max(p - y, 0), "
        "fn = sum max(y - p, 0)), so a soft target predicted exactly has loss 0; the same as false for hard "
        "(0/1) targets and for squared_pred.",
    )
    any_range: bool = Field(
        False,
        description="MONAI other_act (a callable, which HTTP cannot carry): apply it yourself (e.g. torch.tanh, or "
        "log_softmax over the channels as MONAI's own tests do) and send its output as the predictions with "
        "activation 'none'; true lifts their [0, 1] check (any finite values, as MONAI takes them), and the "
        "gradients are with respect to what you sent, to chain through your activation. The overlap statistics are "
        "MONAI's sums (sum p y, sum p + sum y, sum p^2 with squared_pred) for any values; soft_label needs "
        "predictions in [0, 1] (MONAI's |p| norms and our min/max forms differ below 0), so negative ones with it "
        "are a 422.",
    )
    batch: bool = Field(
        False,
        description="MONAI batch: sum the overlap statistics of each class over the whole batch before the ratio, "
        "so the loss is one value for the batch (per_sample is [loss], no sample weights): the mean over the kept "
        "classes of the batch-summed ratios, MONAI's reduction='mean' (its 'sum' is that times the number of kept "
        "classes). false: one loss per sample.",
    )


class OverlapParams(OverlapBase):
    class_weights: list[Annotated[float, Field(ge=0)]] | None = Field(
        None,
        min_length=1,
        description="MONAI weight: one non-negative weight per kept class (C, or C - 1 without the background), "
        "multiplying that class's loss before the mean over the classes.",
    )

    def classes(self, shape: tuple[int, ...]) -> int:
        return shape[1] - (0 if self.include_background else 1)

    def classes_description(self) -> str:
        return "one per kept class (axis 1 of the predictions, less the background without include_background)"


class DiceParams(OverlapParams):
    squared_pred: bool = Field(False, description="Denominator from squares: sum p^2 + sum y^2 (V-Net).")


ALPHA = Field(0.5, ge=0, description="Weight of the false positives, sum p (1 - y).")
BETA = Field(0.5, ge=0, description="Weight of the false negatives, sum (1 - p) y.")


class TverskyParams(OverlapParams):
    alpha: float = ALPHA
    beta: float = BETA


class FocalTverskyParams(OverlapBase):
    alpha: float = ALPHA
    beta: float = BETA
    gamma: float = Field(
        1.0,
        gt=0,
        description="Exponent of each (sample, class) Tversky loss, as segmentation_models_pytorch's gamma (1: "
        "Tversky); the paper's gamma is its reciprocal (its recommended 4/3 is gamma=0.75 here).",
    )


class GeneralizedDiceParams(OverlapBase):
    w_type: Literal["square", "simple", "uniform"] = Field(
        "square",
        description="Class weights from the target volume v = sum y of each (sample, class): 1/v^2 (square), 1/v "
        "(simple) or 1 (uniform); a class absent from the sample's target takes the largest weight of its "
        "present classes (MONAI).",
    )


# --- shared pieces ---------------------------------------------------------------------------


@script(LOSSD, default_opset=op)
def overlap_sums(p, y, axes):  # type: ignore[no-untyped-def]
    """Soft true positives, false positives and false negatives of each (sample, class):
    sum p y, sum p (1 - y), sum (1 - p) y over ``axes`` (the spatial axis, or with MONAI's batch the batch axis
    too: ``sum_axes``), in float64 (N, C', 1) (batch: (1, C', 1)).
    Every term is non-negative, so the sums are accurate however they are combined."""
    p64 = op.Cast(p, to=F64)
    y64 = op.Cast(y, to=F64)
    tp = op.ReduceSum(p64 * y64, axes, keepdims=1)
    fp = op.ReduceSum(p64 * (1.0 - y64), axes, keepdims=1)
    fn = op.ReduceSum((1.0 - p64) * y64, axes, keepdims=1)
    return tp, fp, fn


@script(LOSSD, default_opset=op)
def squared_sums(p, y, axes):  # type: ignore[no-untyped-def]
    """squared_pred: sum p y and sum (p - y)^2 = (sum p^2 - sum p y) + (sum y^2 - sum p y),
    the false positives plus false negatives of MONAI's squared (ord 2) statistics."""
    p64 = op.Cast(p, to=F64)
    y64 = op.Cast(y, to=F64)
    d = p64 - y64
    return op.ReduceSum(p64 * y64, axes, keepdims=1), op.ReduceSum(d * d, axes, keepdims=1)


@script(LOSSD, default_opset=op)
def overlap_ratio(ktp, err, smooth_nr, smooth_dr, like):  # type: ignore[no-untyped-def]
    """L = 1 - (k tp + a) / (k tp + err + b) = (err + b - a) / q, q = k tp + err + b, and the
    coefficients of its gradient: dL = u d(err) - (L / q) d(k tp), u = (k tp + a) / q^2.
    Inputs in float64 (N, C', 1); returns L (N, C') and u, L / q (N, C', 1) in ``like``'s dtype."""
    a = op.Cast(smooth_nr, to=F64)
    b = op.Cast(smooth_dr, to=F64)
    q = ktp + err + b
    value = (err + b - a) / q
    u = (ktp + a) / (q * q)
    elements = op.Squeeze(value, op.Constant(value_ints=[-1]))
    return op.CastLike(elements, like), op.CastLike(u, like), op.CastLike(value / q, like)


def sum_axes(batch: bool) -> list[int]:
    """The axes of the kept (N, C', R) maps the overlap statistics sum over: the spatial one, or with MONAI's
    batch the batch axis too (the statistics, hence the loss, are then (1, C'): one row for the batch)."""
    return [0, -1] if batch else [-1]


@cache
def activation_pair(activation: str, include_background: bool) -> tuple[KernelFunction, KernelFunction]:
    """(probabilities, backward) for one activation: ``probabilities(predictions, targets)``
    gives the kept channels' probabilities and targets, and what the backward pass needs;
    ``backward(grad, aux)`` turns d/d(kept probabilities) into d/d(predictions). Softmax runs
    over all channels before the background is dropped (MONAI's order), so channel 0's
    logits still get a gradient; with no activation or sigmoid, channel 0's gradient is 0."""
    sigmoid = activation == "sigmoid"
    softmax = activation == "softmax"
    drop = not include_background

    @script(LOSSD, default_opset=op)
    def probabilities(predictions, targets):  # type: ignore[no-untyped-def]
        if sigmoid:
            p, aux, _, _ = logistic(predictions)
            aux = p * aux  # sigmoid'(x) = sigmoid(x) sigmoid(-x), both accurate
        elif softmax:
            p = op.Softmax(predictions, axis=1)
            aux = p
        else:
            p = predictions
            aux = predictions
        if drop:
            one = op.Constant(value_ints=[1])
            end = op.Constant(value_ints=[2**62])
            kept_p = op.Slice(p, one, end, one)
            kept_y = op.Slice(targets, one, end, one)
        else:
            kept_p = op.Identity(p)
            kept_y = op.Identity(targets)
        return kept_p, kept_y, aux

    @script(LOSSD, default_opset=op)
    def backward(grad, aux):  # type: ignore[no-untyped-def]
        if drop:  # noqa: SIM108 (onnxscript takes a static if, not a conditional expression)
            g = op.Pad(grad, op.Constant(value_ints=[0, 1, 0, 0, 0, 0]))
        else:
            g = op.Identity(grad)
        if sigmoid:
            out = g * aux
        elif softmax:
            # p (g - sum_k g_k p_k), with g first shifted by the most probable channel's g: the
            # same value (sum p = 1), but where p_m ~ 1 the m-term vanishes exactly instead of
            # cancelling (g_m - sum g p ~ 0 would lose every digit of a saturated pixel's gradient).
            top = op.ArgMax(aux, axis=1, keepdims=1)
            h = g - op.GatherElements(g, top, axis=1)
            out = aux * (h - op.ReduceSum(h * aux, op.Constant(value_ints=[1]), keepdims=1))
        else:
            out = op.Identity(g)
        return out

    return probabilities, backward


@script(LOSSD, default_opset=op)
def soft_sums(p, y, axes):  # type: ignore[no-untyped-def]
    """soft_label (MONAI, after Wang et al. 2023): tp = sum min(p, y), fp = sum max(p - y, 0),
    fn = sum max(y - p, 0) in float64 (N, C', 1), and sign(p - y), whose 0 at a tie gives the
    half-gradients of MONAI's |p - y| norms (torch's sign(0) = 0)."""
    p64 = op.Cast(p, to=F64)
    y64 = op.Cast(y, to=F64)
    d = p64 - y64
    tp = op.ReduceSum(op.Min(p64, y64), axes, keepdims=1)
    fp = op.ReduceSum(op.Relu(d), axes, keepdims=1)
    fn = op.ReduceSum(op.Relu(op.Neg(d)), axes, keepdims=1)
    return tp, fp, fn, op.Sign(p - y)


@script(LOSSD, default_opset=op)
def class_weighted(elements, grad, class_weights):  # type: ignore[no-untyped-def]
    """Per-class weights (C',) on the (N, C') losses and their (N, C', R) gradient; an absent
    weight is fed as [1]."""
    w = op.CastLike(class_weights, elements)
    return elements * w, grad * op.Unsqueeze(w, op.Constant(value_ints=[-1]))


@cache
def ratio_kernel(
    jaccard: bool,
    activation: str,
    squared_pred: bool,
    include_background: bool,
    soft_label: bool,
    batch: bool = False,
) -> KernelFunction:
    """Dice (err = fp + fn) or MONAI's Jaccard (err = 2 (fp + fn)), both with k = 2."""
    probabilities, backward = activation_pair(activation, include_background)
    summed = sum_axes(batch)
    c = 2.0 if jaccard else 1.0
    c2 = 2.0 * c  # a Python constant: a product of two literals inside the script would not be cast
    soft = soft_label and not squared_pred  # MONAI's squared (ord 2) statistics are the same either way

    @script(LOSSD, default_opset=op)
    def overlap_kernel(predictions, targets, smooth_nr, smooth_dr, class_weights):  # type: ignore[no-untyped-def]
        p, y, aux = probabilities(predictions, targets)
        axes = op.Constant(value_ints=summed)
        if squared_pred:
            tp, err = squared_sums(p, y, axes)
            d_err = c2 * (p - y)
            d_tp = op.Identity(y)
        elif soft:
            tp, fp, fn, sign = soft_sums(p, y, axes)
            err = fp + fn
            d_err = c * sign
            d_tp = 0.5 - 0.5 * sign
        else:
            tp, fp, fn = overlap_sums(p, y, axes)
            err = fp + fn
            d_err = c * (1.0 - 2.0 * y)
            d_tp = op.Identity(y)
        elements, u, w = overlap_ratio(2.0 * tp, c * err, smooth_nr, smooth_dr, p)
        weighted, grad = class_weighted(elements, u * d_err - (2.0 * w) * d_tp, class_weights)
        return weighted, backward(grad, aux)

    return overlap_kernel


@cache
def tversky_terms(soft_label: bool, batch: bool = False) -> KernelFunction:
    """Tversky's per-(sample, class) losses L (N, C') and dL/d(kept probabilities) (N, C', R); with
    ``batch``, per class over the whole batch (1, C')."""
    summed = sum_axes(batch)

    @script(LOSSD, default_opset=op)
    def terms(p, y, smooth_nr, smooth_dr, alpha, beta):  # type: ignore[no-untyped-def]
        axes = op.Constant(value_ints=summed)
        if soft_label:
            tp, fp, fn, sign = soft_sums(p, y, axes)
            d_tp = 0.5 - 0.5 * sign
            d_err = alpha * (1.0 - d_tp) - beta * d_tp  # d fp = 1 - d tp, d fn = -d tp
        else:
            tp, fp, fn = overlap_sums(p, y, axes)
            d_tp = op.Identity(y)
            d_err = alpha * (1.0 - y) - beta * y
        err = op.CastLike(alpha, tp) * fp + op.CastLike(beta, tp) * fn
        elements, u, w = overlap_ratio(tp, err, smooth_nr, smooth_dr, p)
        return elements, u * d_err - w * d_tp

    return terms


@cache
def tversky_kernel(activation: str, include_background: bool, soft_label: bool, batch: bool = False) -> KernelFunction:
    probabilities, backward = activation_pair(activation, include_background)
    terms = tversky_terms(soft_label, batch)

    @script(LOSSD, default_opset=op)
    def overlap_kernel(predictions, targets, smooth_nr, smooth_dr, alpha, beta, class_weights):  # type: ignore[no-untyped-def]
        p, y, aux = probabilities(predictions, targets)
        elements, grad = terms(p, y, smooth_nr, smooth_dr, alpha, beta)
        weighted, weighted_grad = class_weighted(elements, grad, class_weights)
        return weighted, backward(weighted_grad, aux)

    return overlap_kernel


@cache
def focal_tversky_kernel(
    activation: str, include_background: bool, soft_label: bool, batch: bool = False
) -> KernelFunction:
    """L^gamma of each Tversky loss L, clamped at 0 (a smooth_nr above smooth_dr makes a perfect
    prediction's L negative); its slope gamma L^(gamma - 1) takes L floored at 1e-30, so gamma < 1
    stays finite at a perfect prediction."""
    probabilities, backward = activation_pair(activation, include_background)
    terms = tversky_terms(soft_label, batch)

    @script(LOSSD, default_opset=op)
    def overlap_kernel(predictions, targets, smooth_nr, smooth_dr, alpha, beta, gamma):  # type: ignore[no-untyped-def]
        p, y, aux = probabilities(predictions, targets)
        elements, grad = terms(p, y, smooth_nr, smooth_dr, alpha, beta)
        zero = op.CastLike(0.0, elements)
        positive = op.Max(elements, zero)
        g = op.CastLike(gamma, elements)
        # at L = 0 the slope is 1 (gamma = 1), 0 (gamma > 1, as torch's pow) or infinite: floored to a large one
        exact = op.Or(op.Greater(positive, zero), op.GreaterOrEqual(g, op.CastLike(1.0, g)))
        slope = g * op.Pow(op.Where(exact, positive, op.CastLike(1e-30, elements)), g - 1.0)
        slope = op.Where(op.GreaterOrEqual(elements, zero), slope, zero)  # torch's clamp passes L = 0 through
        return op.Pow(positive, g), backward(grad * op.Unsqueeze(slope, op.Constant(value_ints=[-1])), aux)

    return overlap_kernel


@cache
def generalized_kernel(
    activation: str, include_background: bool, soft_label: bool, w_type: str, batch: bool = False
) -> KernelFunction:
    """Sudre et al.'s generalised Dice as MONAI computes it: per sample,
    1 - (2 sum_c w_c tp_c + s_nr) / (sum_c w_c (sum p_c + sum y_c) + s_dr), taken as
    (sum_c w_c err_c + s_dr - s_nr) / q with err = fp + fn; the weights depend on the targets only. With
    ``batch``, one ratio for the whole batch from statistics (and weights) summed over it (MONAI's batch)."""
    probabilities, backward = activation_pair(activation, include_background)
    summed = sum_axes(batch)
    square = w_type == "square"
    simple = w_type == "simple"
    fill_absent = square or simple  # an absent class takes the largest weight of the present ones

    @script(LOSSD, default_opset=op)
    def generalized(predictions, targets, smooth_nr, smooth_dr):  # type: ignore[no-untyped-def]
        p, y, aux = probabilities(predictions, targets)
        axes = op.Constant(value_ints=summed)
        if soft_label:
            tp, fp, fn, sign = soft_sums(p, y, axes)
            d_err = op.Identity(sign)
        else:
            tp, fp, fn = overlap_sums(p, y, axes)
            d_err = 1.0 - 2.0 * y
        # The per-class arithmetic runs on (N, C') matrices: on the (N, C', 1) statistics, a sum
        # over classes or a value repeated across them takes onnxruntime's rank-3 paths (each 20x
        # slower at 2 classes a sample: 80 ms for 1M elements).
        last = op.Constant(value_ints=[-1])
        tp, fp, fn = op.Squeeze(tp, last), op.Squeeze(fp, last), op.Squeeze(fn, last)
        volume = tp + fn  # sum y, also under soft_label: min(p, y) + max(y - p, 0) = y
        # Masks as products, not Where (onnxruntime's Where is 5 ms per million here); each
        # product or sum below is exact: a factor is 0 or 1, a term added is 0.
        present = op.CastLike(op.Greater(volume, op.CastLike(0.0, volume)), volume)
        absent = 1.0 - present
        if square:
            safe = volume + absent
            w = op.Reciprocal(safe * safe) * present
        elif simple:
            w = op.Reciprocal(volume + absent) * present
        else:
            w = op.Expand(op.CastLike(1.0, volume), op.Shape(volume))
        if fill_absent:
            w = w + absent * spread(op.ReduceMax(w, op.Constant(value_ints=[1]), keepdims=1), w)
        a = op.Cast(smooth_nr, to=F64)
        b = op.Cast(smooth_dr, to=F64)
        q = row_sum(w * (2.0 * tp + fp + fn)) + b  # (N, 1)
        e = row_sum(w * (fp + fn)) + b - a
        kept = (row_sum(w * (2.0 * tp)) + a) / q  # 1 - L, without the cancellation
        elements = e / q  # (N, 1): one element loss a sample
        # dL/dp_ci = w_c (d err_ci - L) / q, as w_c ((d err_ci - 1) + (1 - L)) / q: d err - 1 is -2 y (or
        # sign - 1), so a background pixel's gradient is not the difference of two near-equal terms at L ~ 1
        scale = w * spread(op.Reciprocal(q), w)
        grad = op.Unsqueeze(op.CastLike(scale, p), last) * (d_err - 1.0) + op.Unsqueeze(
            op.CastLike(scale * spread(kept, w), p), last
        )
        return op.CastLike(elements, p), backward(grad, aux)

    return generalized


def kept_probabilities(params: OverlapParams, arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's kept probabilities and targets, (N, C', R) in numpy (for the checks); with MONAI's batch
    the batch laid side by side as one row, (1, C', N R), as the kernel sums them."""
    x = arrays["predictions"]
    x = x.reshape(*x.shape[:2], -1)
    y = arrays["targets"].reshape(x.shape).astype(np.float64)
    if params.activation == "sigmoid":
        p = np.exp(-np.logaddexp(0.0, -x))
    elif params.activation == "softmax":
        z = np.exp(x - x.max(axis=1, keepdims=True))
        p = z / z.sum(axis=1, keepdims=True)
    else:
        p = x
    kept: tuple[np.ndarray, np.ndarray] = (p.astype(np.float64), y)
    if not params.include_background:
        kept = (kept[0][:, 1:], kept[1][:, 1:])
    if params.batch:
        kept = (side_by_side(kept[0]), side_by_side(kept[1]))
    return kept


def side_by_side(a: np.ndarray) -> np.ndarray:
    """(N, C', R) maps as one row (1, C', N R): the batch axis summed with the spatial one (MONAI's batch)."""
    return a.transpose(1, 0, 2).reshape(1, a.shape[1], -1)


def empty_denominator(spec_name: str, where: np.ndarray, batch: bool = False) -> None:
    """A 422 naming the first sample, or (sample, class), whose ratio is 0/0 (smooth_dr = 0); with MONAI's
    batch, the batch (or the class) as a whole."""
    first = [int(i) for i in np.argwhere(where)[0]]
    at = "the batch" if batch else f"sample {first[0]}"
    at += f", kept class {first[1]}" if len(first) > 1 else ""
    raise InvalidInput(
        "params.smooth_dr",
        f"smooth_dr=0 leaves {spec_name}'s ratio 0/0 for {at}, whose denominator vanishes (nothing predicted and "
        "nothing in the target): use smooth_dr > 0",
    )


def check_soft_range(params: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """any_range with soft_label: the soft statistics hold for predictions in [0, 1] only."""
    if params.any_range and params.soft_label and params.activation == "none" and (arrays["predictions"] < 0).any():
        raise InvalidInput(
            "params.soft_label",
            "soft_label takes predictions in [0, 1]: with any_range, negative predictions (e.g. from tanh or "
            "log_softmax) have no soft overlap here (MONAI's |p| norms differ); use soft_label=false",
        )


def check_overlap(params: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Dice and IoU with smooth_dr = 0: every (sample, kept class) needs sum p + sum y > 0."""
    check_soft_range(params, arrays)
    if params.smooth_dr == 0:
        p, y = kept_probabilities(params, arrays)
        empty = (p.sum(axis=-1) + y.sum(axis=-1)) <= 0
        if empty.any():
            empty_denominator("the overlap", empty, params.batch)


def check_tversky(params: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Tversky with smooth_dr = 0: tp + alpha fp + beta fn > 0 for every (sample, kept class)."""
    check_soft_range(params, arrays)
    if params.smooth_dr == 0:
        p, y = kept_probabilities(params, arrays)
        if params.soft_label:
            tp, fp, fn = np.minimum(p, y), np.maximum(p - y, 0.0), np.maximum(y - p, 0.0)
        else:
            tp, fp, fn = p * y, p * (1.0 - y), (1.0 - p) * y
        q = tp.sum(-1) + params.alpha * fp.sum(-1) + params.beta * fn.sum(-1)
        if (q <= 0).any():
            empty_denominator("the Tversky", q <= 0, params.batch)


def check_generalized(params: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Generalised Dice with smooth_dr = 0: each sample needs a weighted denominator > 0, so a class in
    its target (the weights of absent classes are 0 when none is present) or, uniform, anything at all."""
    check_soft_range(params, arrays)
    if params.smooth_dr == 0:
        p, y = kept_probabilities(params, arrays)
        volume = y.sum(-1)
        total = p.sum(-1) + volume
        empty = (total.sum(-1) <= 0) if params.w_type == "uniform" else ((volume > 0) & (total > 0)).sum(-1) == 0
        if empty.any():
            empty_denominator("the generalised Dice", empty, params.batch)


# --- declarations ----------------------------------------------------------------------------

PREDICTIONS = Input(
    "predictions",
    ("N", "C", "..."),
    "score",
    "Per-channel probabilities in [0, 1] (activation none), or logits (sigmoid, softmax); channel-first.",
    differentiable=True,
    probabilities_when=("activation", "none"),
    relaxed_by="any_range",
)
TARGETS = Input(
    "targets",
    ("N", "C", "..."),
    "probability",
    "Target masks in [0, 1] (one-hot or soft), same shape as predictions; or an integer label map (N, ...) or "
    "(N, 1, ...), expanded to one-hot over the C channels (MONAI to_onehot_y).",
    accepts_labels=True,
)
CHANNEL_RULES = (
    MinSize(
        "C",
        2,
        "params.include_background",
        "include_background=false leaves channel 0 out and needs at least 2 channels (MONAI keeps the single "
        "channel with a warning instead)",
        when=(("include_background", False),),
    ),
    MinSize(
        "C",
        2,
        "params.activation",
        "activation='softmax' normalises over the channel axis and needs at least 2 channels (MONAI skips it "
        "with a warning for one channel); use 'sigmoid' for a single foreground channel",
        when=(("activation", "softmax"),),
    ),
)
OVERLAP_PROPERTIES = Properties(
    robust_to_outliers=True,
    smooth_gradient=True,
    convex=False,
    differentiable=True,
    bounded_below=True,
    probabilistic_interpretation=None,
)
SMOOTHNESS = (
    "Properties (default form, probabilities): bounded in [0, 1] and differentiable everywhere; its "
    "gradient is bounded (a confidently wrong pixel pulls no harder than a slightly wrong one, unlike "
    "cross-entropy's 1/p) and Lipschitz: soft Dice/IoU/Tversky are smooth rational functions whose "
    "denominator never vanishes, although tables often call them non-smooth. That holds with a modest "
    "constant for every class present in the target (at least one pixel's worth of foreground); for a class "
    "absent from a sample's target the loss is sum p / (sum p + s_dr)-like, a step of height ~1 over "
    "sum p ~ s_dr with curvature ~2/s_dr^2 at p = 0, practically a kink (the property tests check the claims "
    "on targets with every class present, and this exception separately). Not convex: along a background "
    "pixel the ratio is concave."
)


def foreground_probability(channels: int = 1, pixels: int = 8) -> Curve:
    """A uniform predicted probability x on every pixel of an all-foreground target."""

    def inputs(x: np.ndarray) -> Arrays:
        p = np.broadcast_to(x[:, None, None], (x.size, channels, pixels)).copy()
        return {"predictions": p, "targets": np.ones((x.size, channels, pixels))}

    def direction(x: np.ndarray) -> Arrays:
        return {"predictions": np.ones((x.size, channels, pixels))}

    return Curve("predicted foreground probability (uniform map, all-foreground target)", 0.0, 1.0, inputs, direction)


MONAI_COMMON = (
    "MONAI applies the activation, then drops channel 0 when include_background=false (so softmax still "
    "normalises over every channel), sums over the spatial axes per (sample, class) and averages over both "
    "for reduction='mean', which is our unweighted mean. For one channel MONAI ignores softmax and "
    "include_background=false with a warning; we reject them (422). MONAI's to_onehot_y=True: send the integer "
    "label map, (N, ...) or (N, 1, ...), as targets; soft_label and smooth_dr=0 are ours too (a class whose "
    "denominator then vanishes is a 422, where MONAI returns nan). batch=True is params.batch (one value for the "
    "whole batch: per_sample is [loss], no sample weights; MONAI's reduction='mean' is our loss, and its 'sum' "
    "sums the batch's per-class losses, so it is ours times the number of kept classes, as our 'sum' sums "
    "samples and the batch is one; generalized_dice's batch form is one value, so both match). other_act (a "
    "callable) is any_range: apply it yourself, send its output with activation 'none', and chain the gradients "
    "through it."
)
MONAI_WEIGHT = (
    " MONAI's weight is class_weights (one per kept class; MONAI ignores it when a single class is kept, we apply it)."
)


@loss(
    name="dice",
    task="segmentation",
    inputs=(PREDICTIONS, TARGETS),
    params=DiceParams,
    properties=OVERLAP_PROPERTIES,
    min_sizes=CHANNEL_RULES,
    batch_param="batch",
    check=check_overlap,
    curve=foreground_probability(),
    card=Card(
        title="Soft Dice loss",
        summary="One minus the soft Dice coefficient of each (sample, class), summed over the spatial axes and "
        "averaged over the classes: directly optimises the overlap that segmentation is scored by, and is "
        "insensitive to how much background there is. Exactly MONAI's DiceLoss. " + SMOOTHNESS,
        formula=r"\ell_{n,c} = 1 - \frac{2\sum_i p_i y_i + s_{nr}}{\sum_i p_i + \sum_i y_i + s_{dr}}"
        r"\quad(\text{squared\_pred: } \textstyle\sum_i p_i^2 + \sum_i y_i^2),\qquad "
        r"\ell_n = \frac{1}{C'}\sum_c \ell_{n,c}",
        use_cases=(
            "Medical and semantic segmentation with strong foreground/background imbalance",
            "Combined with cross-entropy (dice_bce) for stable early training",
        ),
        equivalents={
            "monai": "monai.losses.DiceLoss(sigmoid|softmax, squared_pred, include_background, smooth_nr, "
            "smooth_dr, soft_label, weight, reduction) (matched). " + MONAI_COMMON + MONAI_WEIGHT,
            "keras": "keras.losses.Dice(axis=None) computes one Dice over the whole batch with smooth 0 and 1e-7 "
            "in the denominator: send the batch as one sample of one channel, shape (1, 1, -1), with "
            "smooth_nr=0, smooth_dr=1e-7",
            "smp": "segmentation_models_pytorch DiceLoss aggregates over the batch per class, gives classes absent "
            "from the target loss 0 and applies the activation by default; no params reproduce that",
        },
        references=(
            "Milletari, F., Navab, N., Ahmadi, S.-A. (2016). V-Net: Fully Convolutional Neural Networks for "
            "Volumetric Medical Image Segmentation. 3DV.",
            "Sudre, C. H. et al. (2017). Generalised Dice overlap as a deep learning loss function for highly "
            "unbalanced segmentations. DLMIA.",
        ),
    ),
)
def dice(
    activation: str, squared_pred: bool, include_background: bool, soft_label: bool, batch: bool
) -> KernelFunction:
    return ratio_kernel(False, activation, squared_pred, include_background, soft_label, batch)


@loss(
    name="iou",
    aliases=("jaccard",),
    task="segmentation",
    inputs=(PREDICTIONS, TARGETS),
    params=DiceParams,
    properties=OVERLAP_PROPERTIES,
    min_sizes=CHANNEL_RULES,
    batch_param="batch",
    check=check_overlap,
    curve=foreground_probability(),
    card=Card(
        title="Soft IoU (Jaccard) loss",
        summary="One minus the soft intersection over union of each (sample, class), averaged over the classes. "
        "Exactly MONAI's DiceLoss(jaccard=True), whose numerator and denominator are both doubled: "
        "1 - (2 tp + s_nr) / (2 (sum p + sum y - tp) + s_dr), i.e. the textbook (tp + s) / (union + s) with "
        "s = s_nr / 2 and s_dr / 2. " + SMOOTHNESS,
        formula=r"\ell_{n,c} = 1 - \frac{2\sum_i p_i y_i + s_{nr}}{2\left(\sum_i p_i + \sum_i y_i - "
        r"\sum_i p_i y_i\right) + s_{dr}}\quad(\text{squared\_pred: } p_i^2, y_i^2 \text{ in the sums of } p, y)",
        use_cases=(
            "Segmentation scored by IoU (Pascal VOC, COCO masks)",
            "Building and road extraction from aerial imagery",
        ),
        equivalents={
            "monai": "monai.losses.DiceLoss(jaccard=True, ...) (matched). " + MONAI_COMMON + MONAI_WEIGHT + " For "
            "the textbook "
            "soft IoU 1 - (tp + s) / (sum p + sum y - tp + s), pass smooth_nr = smooth_dr = 2 s.",
            "smp": "segmentation_models_pytorch JaccardLoss aggregates over the batch per class and gives classes "
            "absent from the target loss 0",
            "keras": "none in Keras 3",
        },
        references=(
            "Rahman, M. A., Wang, Y. (2016). Optimizing Intersection-Over-Union in Deep Neural Networks for Image "
            "Segmentation. ISVC.",
            "Wang, Z. et al. (2023). Jaccard Metric Losses: Optimizing the Jaccard Index with Soft Labels. NeurIPS.",
        ),
    ),
)
def iou(activation: str, squared_pred: bool, include_background: bool, soft_label: bool, batch: bool) -> KernelFunction:
    return ratio_kernel(True, activation, squared_pred, include_background, soft_label, batch)


@loss(
    name="tversky",
    task="segmentation",
    inputs=(PREDICTIONS, TARGETS),
    params=TverskyParams,
    properties=OVERLAP_PROPERTIES,
    min_sizes=CHANNEL_RULES,
    batch_param="batch",
    check=check_tversky,
    curve=foreground_probability(),
    card=Card(
        title="Tversky loss",
        summary="A Dice loss with separate weights for false positives (alpha) and false negatives (beta): "
        "beta > alpha favours recall, for small structures that Dice under-segments. alpha = beta = 0.5 is Dice "
        "(with the smoothing terms doubled), alpha = beta = 1 is IoU. Exactly MONAI's TverskyLoss. " + SMOOTHNESS,
        formula=r"\ell_{n,c} = 1 - \frac{tp + s_{nr}}{tp + \alpha\, fp + \beta\, fn + s_{dr}},\quad "
        r"tp = \sum_i p_i y_i,\ fp = \sum_i p_i (1 - y_i),\ fn = \sum_i (1 - p_i) y_i",
        use_cases=(
            "Lesion and small-structure segmentation where missing foreground costs more than over-segmenting",
            "Trading precision against recall in a segmentation loss",
        ),
        equivalents={
            "monai": "monai.losses.TverskyLoss(alpha, beta, sigmoid|softmax, include_background, smooth_nr, "
            "smooth_dr, soft_label) (matched; include_background is an addition to the API table, as in MONAI). "
            + MONAI_COMMON
            + " class_weights (per kept class, as DiceLoss's weight) is ours: MONAI's TverskyLoss has none.",
            "keras": "keras.losses.Tversky(alpha, beta, axis=None) is one value over the whole batch: ours with the "
            "same alpha and beta, smooth_nr=0 and smooth_dr=1e-7 on the batch sent as one sample of one channel, "
            "since keras-team/keras#23333 made alpha weigh the false positives. Keras up to 3.15 multiplied alpha "
            "with sum y (1 - p), the false negatives (its docstring said false positives): with those versions send "
            "alpha=b, beta=a for Tversky(alpha=a, beta=b). The goldens check both against the installed Keras.",
            "smp": "segmentation_models_pytorch TverskyLoss aggregates over the batch per class and raises the "
            "class mean to the power gamma (focal Tversky)",
        },
        references=(
            "Salehi, S. S. M., Erdogmus, D., Gholipour, A. (2017). Tversky loss function for image segmentation "
            "using 3D fully convolutional deep networks. MLMI.",
        ),
    ),
)
def tversky(activation: str, include_background: bool, soft_label: bool, batch: bool) -> KernelFunction:
    return tversky_kernel(activation, include_background, soft_label, batch)


@loss(
    name="generalized_dice",
    aliases=("generalised_dice",),
    task="segmentation",
    inputs=(PREDICTIONS, TARGETS),
    params=GeneralizedDiceParams,
    properties=OVERLAP_PROPERTIES,
    min_sizes=CHANNEL_RULES,
    batch_param="batch",
    check=check_generalized,
    curve=foreground_probability(),
    card=Card(
        title="Generalised Dice loss",
        summary="One Dice over all classes of a sample, each class weighted by the inverse of its target volume "
        "(squared by default), so small structures count as much as large ones: for multi-class segmentation "
        "with very unequal class sizes. A class absent from the sample's target takes the largest weight of the "
        "present ones (MONAI's rule); one loss per sample. Exactly MONAI's GeneralizedDiceLoss. " + SMOOTHNESS,
        formula=r"\ell_n = 1 - \frac{2\sum_c w_c \sum_i p_{ci} y_{ci} + s_{nr}}{\sum_c w_c \sum_i (p_{ci} + y_{ci}) "
        r"+ s_{dr}},\quad w_c = \Big(\sum_i y_{ci}\Big)^{-2}\ (\text{square}),\ "
        r"\Big(\sum_i y_{ci}\Big)^{-1}\ (\text{simple}),\ 1\ (\text{uniform})",
        use_cases=(
            "Multi-class medical segmentation with small and large structures together (brain tumour sub-regions)",
            "Highly unbalanced segmentation where plain Dice neglects the small classes",
        ),
        equivalents={
            "monai": "monai.losses.GeneralizedDiceLoss(w_type, sigmoid|softmax, include_background, smooth_nr, "
            "smooth_dr, soft_label, reduction) (matched; MONAI computes the weights in float32, from "
            "target.sum().float(), we in float64: a relative difference ~1e-7 in float64). " + MONAI_COMMON,
            "niftynet": "NiftyNet's generalised_dice_loss (MONAI's source) on one-hot targets, per sample",
        },
        references=(
            "Sudre, C. H. et al. (2017). Generalised Dice overlap as a deep learning loss function for highly "
            "unbalanced segmentations. DLMIA.",
            "Crum, W. R., Camara, O., Hill, D. L. G. (2006). Generalized overlap measures for evaluation and "
            "validation in medical image analysis. IEEE TMI.",
        ),
    ),
)
def generalized_dice(
    activation: str, include_background: bool, soft_label: bool, w_type: str, batch: bool
) -> KernelFunction:
    return generalized_kernel(activation, include_background, soft_label, w_type, batch)


@loss(
    name="focal_tversky",
    task="segmentation",
    inputs=(PREDICTIONS, TARGETS),
    params=FocalTverskyParams,
    properties=OVERLAP_PROPERTIES,
    min_sizes=CHANNEL_RULES,
    batch_param="batch",
    check=check_tversky,
    curve=foreground_probability(),
    card=Card(
        title="Focal Tversky loss",
        summary="The Tversky loss of each (sample, class) raised to the power gamma, averaged over the classes: "
        "gamma < 1 raises the loss (and the gradient) of the classes that are already nearly right relative to "
        "the badly segmented ones, gamma > 1 the reverse; gamma = 1 (the default, as segmentation_models_pytorch) "
        "is the Tversky loss. Where the references disagree we follow segmentation_models_pytorch's exponent "
        "(Abraham and Khan write 1/gamma: their recommended gamma = 4/3 is 0.75 here) and MONAI's per-sample, "
        "per-class Tversky with smooth_nr/smooth_dr (the paper sums over the classes, we average; smp pools the "
        "batch first). A smooth_nr above smooth_dr makes a perfect prediction's Tversky loss negative: it is "
        "clamped at 0. The card's properties are those of the default form (gamma = 1); for gamma < 1 the slope "
        "is unbounded as a class's loss goes to 0. " + SMOOTHNESS,
        formula=r"\ell_{n,c} = \Big(1 - \frac{tp + s_{nr}}{tp + \alpha\, fp + \beta\, fn + s_{dr}}\Big)^{\gamma},"
        r"\qquad \ell_n = \frac{1}{C'}\sum_c \ell_{n,c}",
        use_cases=(
            "Small-lesion segmentation (the paper's breast ultrasound and skin lesion data)",
            "Tversky loss with extra emphasis on the hard or the easy classes",
        ),
        equivalents={
            "smp": "segmentation_models_pytorch.losses.TverskyLoss(mode, alpha, beta, gamma, smooth, "
            "from_logits=False) pools the batch per class (dims (0, 2)), zeroes classes absent from the target, "
            "raises the class mean to gamma and takes its overlap from |p - y| norms: it equals ours with "
            "soft_label=true and smooth_nr = smooth_dr = smooth for one sample and one class present in the target "
            "(checked by the goldens)",
            "paper": "Abraham & Khan's FTL = sum_c (1 - TI_c)^(1/gamma_paper): ours with gamma = 1/gamma_paper, "
            "times the number of kept classes",
            "monai": "none: MONAI's TverskyLoss (our tversky) has no exponent",
        },
        references=(
            "Abraham, N., Khan, N. M. (2019). A Novel Focal Tversky Loss Function with Improved Attention U-Net for "
            "Lesion Segmentation. ISBI.",
            "Salehi, S. S. M., Erdogmus, D., Gholipour, A. (2017). Tversky loss function for image segmentation "
            "using 3D fully convolutional deep networks. MLMI.",
        ),
    ),
)
def focal_tversky(activation: str, include_background: bool, soft_label: bool, batch: bool) -> KernelFunction:
    return focal_tversky_kernel(activation, include_background, soft_label, batch)
