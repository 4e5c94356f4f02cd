"""Sequence losses: connectionist temporal classification (CTC).

The kernel runs the CTC forward recursion (Graves et al. 2006) in log space with one ONNX
``Scan`` over time. The backward variables come from the same recursion run on each sample's
reversed problem (frames reversed within its input length, extended labels reversed within
``2L + 1``): the forward variable of the reversed problem at ``(T_n - 1 - t, 2L - s)`` is the
backward variable ``beta_t(s)`` (emission at ``t`` included, PyTorch's convention). Both problems
share one ``Scan`` over a doubled batch, state ``(1, 2N, 2S + 1)``, so a request costs T steps of a
14-node element-wise body whatever N. The state is the transition part of the next forward variable
(``alpha_t = sigma_t + e_t``), so the body emits ``alpha_t`` without a copy. Nothing is frozen inside
the loop: the log-likelihood is read at each sample's last frame afterwards, and frames beyond it are
masked out of the posterior.

Log zero is a true ``-inf`` (a -1e30 stand-in would make impossible alignments finite). The
three-way log-sum-exp is written out, shifted by the max of its terms and the lowest finite float,
so three ``-inf`` give ``-inf`` and ``-inf - -inf`` is never formed; written out it is 4x faster in
onnxruntime than ``ReduceLogSumExp`` (or ``ReduceSum``) over a stacked axis at (64, 81) states. The
posterior's shift (the negative log-likelihood) is taken as 0 for impossible samples.

Everything runs in float64 whatever the requested dtype, like the shared reductions: the
recursion is a T-step accumulation, and in float32 the posterior of a confident frame (log-
probabilities near -60) loses 1e-4 relative, as PyTorch's float32 kernel does; results are rounded
to the requested dtype at the end.

The exact derivative of the loss w.r.t. the log-probabilities is ``-gamma``, the posterior
occupancy ``gamma_t(c) = sum_{s: l'_s = c} alpha_t(s) beta_t(s) / (p y_t(c))``; with logits it
goes through the log-softmax: ``softmax(x) sum_c gamma - gamma``. (PyTorch's backward returns
``exp(log_probs) - gamma`` w.r.t. log-probabilities: the two agree after a log-softmax.)
"""

import math
from collections.abc import Mapping

import numpy as np
from onnx import TensorProto, numpy_helper
from onnxscript import graph, script
from onnxscript import opset18 as op
from pydantic import Field

from kernels.curves import Curve
from kernels.ops import LOSSD
from kernels.spec import Card, Input, InvalidInput, KernelFunction, Params, Properties, loss

F64 = TensorProto.DOUBLE
NEG_INF = -math.inf
"""log 0, exact in both dtypes."""
LOWEST = numpy_helper.from_array(np.array(np.finfo(np.float64).min), "lowest")
"""The most negative finite float64: the recursion's max shift never goes below it."""


class CtcParams(Params):
    blank: int = Field(0, ge=0, description="Index of the blank class, in [0, C). Targets must not contain it.")
    from_logits: bool = Field(
        False,
        description="Predictions are raw scores: a log-softmax over the class axis C is applied. Otherwise they "
        "are log-probabilities, used as given (not renormalised, as in PyTorch).",
    )
    zero_infinity: bool = Field(
        False,
        description="Samples whose target cannot be aligned within their input length (infinite loss) count as "
        "0, with zero gradient. Otherwise a request with such a sample is a 422.",
    )


@script(LOSSD, default_opset=op)
def ctc_occupancy(lp, targets, input_lengths, target_lengths, blank):  # type: ignore[no-untyped-def]
    """The negative log-likelihood (N,) of each target (+inf where no alignment exists), and the
    posterior occupancy gamma (N, T, C) of each class at each frame (zero beyond a sample's input
    length and for impossible samples): d nll / d lp = -gamma."""
    neg = op.CastLike(NEG_INF, lp)
    zero = op.CastLike(0.0, lp)
    one = op.Constant(value_ints=[1])
    # Extended labels l' = (blank, y_1, blank, ..., y_S, blank): (N, K), K = 2S + 1.
    column = op.Unsqueeze(targets, op.Constant(value_ints=[2]))
    pairs = op.Concat(op.Expand(blank, op.Shape(column)), column, axis=2)
    batch = op.Shape(targets, start=0, end=1)
    ext = op.Concat(
        op.Reshape(pairs, op.Constant(value_ints=[0, -1])), op.Expand(blank, op.Concat(batch, one, axis=0)), axis=1
    )
    k = op.Shape(ext, start=1, end=2)
    states = op.Range(op.Constant(value_int=0), op.Squeeze(k), op.Constant(value_int=1))
    two_l = op.Unsqueeze(target_lengths * op.Constant(value_int=2), one)  # (N, 1)
    inside = op.LessOrEqual(states, two_l)  # (N, K): s <= 2L
    reverse = op.Where(inside, two_l - states, states)  # s -> 2L - s within the target, else s
    # The forward problem and each sample's reversed problem, as one batch of 2N.
    ext2 = op.Concat(ext, op.GatherElements(ext, reverse, axis=1), axis=0)
    lp2 = op.Concat(lp, op.ReverseSequence(lp, input_lengths, batch_axis=0, time_axis=1), axis=0)
    shape2 = op.Concat(op.Shape(lp2, start=0, end=2), k, axis=0)
    emissions = op.GatherElements(lp2, op.Expand(op.Unsqueeze(ext2, one), shape2), axis=2)  # (2N, T, K)
    # s - 2 -> s is allowed where l'_s != l'_{s-2} (never for blanks, which equal their neighbours').
    distinct = op.Not(
        op.Equal(
            op.Slice(ext2, op.Constant(value_ints=[2]), op.Constant(value_ints=[9223372036854775807]), one),
            op.Slice(ext2, op.Constant(value_ints=[0]), op.Constant(value_ints=[-2]), one),
        )
    )
    skip = op.Unsqueeze(
        op.Pad(op.Where(distinct, zero, neg), op.Constant(value_ints=[0, 2, 0, 0]), neg),
        op.Constant(value_ints=[0]),
    )  # (1, 2N, K): 0 where the skip is allowed, -inf elsewhere
    start = op.Where(op.Equal(states, op.Constant(value_int=0)), zero, neg)  # alpha_{-1}: all mass on s = 0
    # The state is the transition part of the next alpha: alpha_t = sigma_t + e_t, sigma_0 = (0, 0, -inf, ...).
    opening = op.Where(op.Less(states, op.Constant(value_int=2)), zero, neg)
    initial = op.Expand(opening, op.Concat(one, op.Shape(ext2), axis=0))  # (1, 2N, K)
    shift1 = op.Constant(value_ints=[0, 0, 1, 0, 0, -1])
    shift2 = op.Constant(value_ints=[0, 0, 2, 0, 0, -2])
    first = op.Constant(value_ints=[0])
    floor = op.Constant(value=LOWEST)

    @graph()
    def step(sigma, emission):  # type: ignore[no-untyped-def]
        alpha = sigma + emission
        moved = op.Pad(alpha, shift1, neg)
        skipped = op.Pad(alpha, shift2, neg) + skip
        top = op.Max(alpha, moved, skipped, floor)  # floor: all three -inf gives -inf, never -inf - -inf
        total = op.Sum(op.Exp(alpha - top), op.Exp(moved - top), op.Exp(skipped - top))
        return op.Log(total) + top, alpha

    _final, alphas = op.Scan(
        initial,
        op.Unsqueeze(emissions, first),
        body=step,
        num_scan_inputs=1,
        scan_input_axes=[2],
        scan_output_axes=[2],
    )
    alpha, alpha_reversed = op.Split(op.Squeeze(alphas, first), num_outputs=2, axis=0)  # (N, T, K) each
    emission, _reversed = op.Split(emissions, num_outputs=2, axis=0)
    # log p = logaddexp(alpha_{T_n - 1}(2L), alpha_{T_n - 1}(2L - 1)); alpha_{-1} for T_n = 0.
    shape = op.Shape(alpha)
    row = op.Expand(op.Unsqueeze(start, op.Constant(value_ints=[0, 1])), op.Concat(batch, one, k, axis=0))
    history = op.Concat(row, alpha, axis=1)  # (N, T + 1, K)
    frames = op.Unsqueeze(input_lengths, op.Constant(value_ints=[1, 2]))
    at_end = op.Squeeze(op.GatherElements(history, op.Expand(frames, op.Shape(row)), axis=1), one)  # (N, K)
    ends = op.Concat(two_l, two_l - op.Constant(value_int=1), axis=1)  # (N, 2)
    picked = op.GatherElements(at_end, op.Max(ends, op.Constant(value_int=0)), axis=1)
    picked = op.Where(op.GreaterOrEqual(ends, op.Constant(value_int=0)), picked, neg)
    # Written out like the step's, not ReduceLogSumExp: onnxruntime's (CPU, 1.32) returns -inf for
    # (-inf, -751), so an input just long enough for its target, with log p below about -708, had an
    # infinite (or, from -708 down, an inexact) loss.
    end_top = op.Max(op.ReduceMax(picked, one, keepdims=1), floor)  # (N, 1)
    nll = op.Neg(op.Log(op.ReduceSum(op.Exp(picked - end_top), one, keepdims=0)) + op.Squeeze(end_top, one))
    # gamma_t(s) = alpha_t(s) beta_t(s) / y_t(l'_s) / p, on valid frames and states.
    beta = op.GatherElements(
        op.ReverseSequence(alpha_reversed, input_lengths, batch_axis=0, time_axis=1),
        op.Expand(op.Unsqueeze(reverse, one), shape),
        axis=2,
    )
    possible = op.Not(op.IsInf(nll))
    shift = op.Unsqueeze(op.Where(possible, nll, zero), op.Constant(value_ints=[1, 2]))
    time = op.Range(op.Constant(value_int=0), op.Squeeze(op.Shape(lp, start=1, end=2)), op.Constant(value_int=1))
    active = op.Unsqueeze(op.Less(time, op.Unsqueeze(input_lengths, one)), op.Constant(value_ints=[2]))  # (N, T, 1)
    valid = op.And(active, op.Unsqueeze(inside, one))
    gamma = op.Where(valid, op.Exp(alpha + beta - emission + shift), zero)
    index = op.Expand(op.Unsqueeze(ext, one), shape)
    occupancy = op.ScatterElements(op.Expand(zero, op.Shape(lp)), index, gamma, axis=2, reduction="add")
    return nll, occupancy


@script(LOSSD, default_opset=op)
def ctc_outputs(predictions, per_sample, gradient, target_lengths, weights, mean):  # type: ignore[no-untyped-def]
    """(loss, per_sample, d loss / d predictions) in the predictions' dtype, from float64 per-sample
    losses and per-sample gradients: mean = sum_n w_n l_n / max(L_n, 1) / sum_n w_n (PyTorch's
    mean when w = 1), sum = sum_n w_n l_n; each sample's gradient scaled by d loss / d l_n."""
    w = op.Cast(weights, to=F64)
    lengths = op.Cast(op.Max(target_lengths, op.Constant(value_int=1)), to=F64)
    coef = op.Where(mean, w / (lengths * op.ReduceSum(w, keepdims=0)), w)
    loss = op.ReduceSum(coef * per_sample, keepdims=0)
    scaled = op.Unsqueeze(coef, op.Constant(value_ints=[1, 2])) * gradient
    return op.CastLike(loss, predictions), op.CastLike(per_sample, predictions), op.CastLike(scaled, predictions)


@script(LOSSD, default_opset=op)
def finite_or_zero(nll):  # type: ignore[no-untyped-def]
    """zero_infinity: an impossible alignment's infinite loss counts as 0 (its gradient already is 0)."""
    return op.Where(op.IsInf(nll), op.CastLike(0.0, nll), nll)


@script(LOSSD, default_opset=op)
def log_softmax_classes(logits):  # type: ignore[no-untyped-def]
    x = op.Cast(logits, to=F64)
    return x - op.ReduceLogSumExp(x, op.Constant(value_ints=[-1]), keepdims=1)


@script(LOSSD, default_opset=op)
def logits_gradient(lp, occupancy):  # type: ignore[no-untyped-def]
    """-gamma through the log-softmax: softmax(x) * sum_c gamma - gamma."""
    return op.Exp(lp) * op.ReduceSum(occupancy, op.Constant(value_ints=[-1]), keepdims=1) - occupancy


@script(LOSSD, default_opset=op)
def ctc_log_probs(predictions, targets, input_lengths, target_lengths, blank, weights, mean):  # type: ignore[no-untyped-def]
    lp = op.Cast(predictions, to=F64)
    nll, occupancy = ctc_occupancy(lp, targets, input_lengths, target_lengths, blank)
    loss, per_sample, gradient = ctc_outputs(predictions, nll, op.Neg(occupancy), target_lengths, weights, mean)
    return loss, per_sample, gradient


@script(LOSSD, default_opset=op)
def ctc_log_probs_zero_infinity(predictions, targets, input_lengths, target_lengths, blank, weights, mean):  # type: ignore[no-untyped-def]
    lp = op.Cast(predictions, to=F64)
    nll, occupancy = ctc_occupancy(lp, targets, input_lengths, target_lengths, blank)
    loss, per_sample, gradient = ctc_outputs(
        predictions, finite_or_zero(nll), op.Neg(occupancy), target_lengths, weights, mean
    )
    return loss, per_sample, gradient


@script(LOSSD, default_opset=op)
def ctc_logits(predictions, targets, input_lengths, target_lengths, blank, weights, mean):  # type: ignore[no-untyped-def]
    lp = log_softmax_classes(predictions)
    nll, occupancy = ctc_occupancy(lp, targets, input_lengths, target_lengths, blank)
    gradient = logits_gradient(lp, occupancy)
    loss, per_sample, scaled = ctc_outputs(predictions, nll, gradient, target_lengths, weights, mean)
    return loss, per_sample, scaled


@script(LOSSD, default_opset=op)
def ctc_logits_zero_infinity(predictions, targets, input_lengths, target_lengths, blank, weights, mean):  # type: ignore[no-untyped-def]
    lp = log_softmax_classes(predictions)
    nll, occupancy = ctc_occupancy(lp, targets, input_lengths, target_lengths, blank)
    gradient = logits_gradient(lp, occupancy)
    loss, per_sample, scaled = ctc_outputs(predictions, finite_or_zero(nll), gradient, target_lengths, weights, mean)
    return loss, per_sample, scaled


def check_ctc(params: CtcParams, arrays: Mapping[str, np.ndarray]) -> None:
    """What the declared input kinds cannot say: blank is a class, targets hold no blank within
    their length, and (unless zero_infinity) each target fits its input length. A target of length L
    with r adjacent repeats needs L + r frames (a blank separates repeats); fewer means no alignment
    exists and the loss is infinite, which JSON cannot carry."""
    classes = arrays["predictions"].shape[-1]
    blank = params.blank
    if blank >= classes:
        raise InvalidInput(
            "params.blank", f"blank {blank} is not a class: C = {classes} (the last axis of predictions)"
        )
    targets, lengths = arrays["targets"], arrays["target_lengths"]
    within = np.arange(targets.shape[1])[None, :] < lengths[:, None]
    is_blank = within & (targets == blank)
    if is_blank.any():
        n, s = (int(i) for i in np.argwhere(is_blank)[0])
        raise InvalidInput(
            "targets",
            f"label {blank} at index [{n}, {s}] is the blank (params.blank): targets within target_lengths must be "
            "non-blank labels",
        )
    if params.zero_infinity:
        return
    repeats = (within[:, 1:] & (targets[:, 1:] == targets[:, :-1])).sum(axis=1)
    needed = lengths + repeats
    short = arrays["input_lengths"] < needed
    if short.any():
        n = int(np.argmax(short))
        raise InvalidInput(
            "input_lengths",
            f"sample {n} has input_length {int(arrays['input_lengths'][n])}, but its target (target_length "
            f"{int(lengths[n])}, {int(repeats[n])} adjacent repeats, each needing a blank between) needs "
            f"{int(needed[n])} frames: no alignment exists and its loss is infinite. Set params.zero_infinity=true "
            "to count such samples as 0 (with zero gradient)",
        )


CURVE_FRAMES, CURVE_CLASSES = 5, 4
CURVE_TARGET = np.array([1, 2, 2])
CURVE_PATH = np.array([1, 0, 2, 0, 2])
"""One alignment of the target (1, 2, 2) over five frames: 1, blank, 2, blank, 2."""


def _curve_inputs(x: np.ndarray) -> dict[str, np.ndarray]:
    """Every frame gives log-probability x to its symbol on the alignment, the rest shared evenly."""
    k = x.size
    rest = np.log(-np.expm1(x)) - np.log(CURVE_CLASSES - 1)
    lp = np.repeat(rest[:, None, None], CURVE_FRAMES, axis=1).repeat(CURVE_CLASSES, axis=2)
    lp[:, np.arange(CURVE_FRAMES), CURVE_PATH] = x[:, None]
    return {
        "predictions": lp,
        "targets": np.tile(CURVE_TARGET, (k, 1)),
        "input_lengths": np.full(k, CURVE_FRAMES),
        "target_lengths": np.full(k, CURVE_TARGET.size),
    }


def _curve_direction(x: np.ndarray) -> dict[str, np.ndarray]:
    d_rest = -np.exp(x) / -np.expm1(x)  # d/dx log((1 - e^x) / (C - 1))
    d = np.repeat(d_rest[:, None, None], CURVE_FRAMES, axis=1).repeat(CURVE_CLASSES, axis=2)
    d[:, np.arange(CURVE_FRAMES), CURVE_PATH] = 1.0
    return {"predictions": d}


PATH_MASS = Curve(
    "log-probability of one alignment's symbol at every frame (target 1 2 2 over 5 frames, C = 4)",
    -6.0,
    -0.01,
    inputs=_curve_inputs,
    direction=_curve_direction,
)


@loss(
    name="ctc",
    task="sequence",
    inputs=(
        Input(
            "predictions",
            ("N", "T", "C"),
            "real",
            "Per-frame class log-probabilities (batch first; e.g. log_softmax outputs), or raw scores when "
            "from_logits.",
            differentiable=True,
        ),
        Input(
            "targets",
            ("N", "S"),
            "label",
            "Target label sequences in [0, C), padded to S; entries beyond target_lengths are ignored (any valid "
            "class, e.g. the blank); no blank within the target.",
        ),
        Input("input_lengths", ("N",), "count", "Frames of each sample that count (at most T).", bound="T"),
        Input("target_lengths", ("N",), "count", "Length of each target sequence (at most S).", bound="S"),
    ),
    params=CtcParams,
    check=check_ctc,
    curve=PATH_MASS,
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=True,
        convex=False,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation="Negative log-likelihood of the target sequence, marginalised over every "
        "alignment (blank-augmented frame-level path that collapses to it).",
    ),
    card=Card(
        title="Connectionist temporal classification (CTC)",
        summary="Negative log-likelihood of an unsegmented target sequence under per-frame class distributions, "
        "summed over all alignments (paths of labels and blanks that collapse to the target once repeats are "
        "merged and blanks removed), computed by the forward-backward recursion in log space. per_sample is "
        "each sample's loss l_n and 'sum' is sum_n w_n l_n, as torch's 'none' and 'sum'; the canonical mean "
        "follows torch and divides each loss by its target length: sum_n w_n l_n / max(L_n, 1) / sum_n w_n. "
        "Properties are those of the default form on log-probabilities (every entry <= 0): the loss is "
        "-logsumexp of linear functions, hence concave, not convex; its gradient (minus the posterior "
        "occupancy, each entry in [0, 1]) is bounded and Lipschitz, so the loss grows at most linearly as "
        "log-probabilities fall (robust in that sense); it is >= 0 on normalised log-probabilities "
        "(and >= -log(number of alignments) on any). Values above 0 are accepted, as torch does, but are not "
        "log-probabilities, and there the loss is unbounded below: send raw scores with from_logits. Gradients "
        "are exact: -gamma, the posterior occupancy of each class at each frame from the forward-backward "
        "recursion (zero beyond a sample's input length); with from_logits, softmax(x) sum_c gamma - gamma. "
        "Impossible alignments (an input shorter than its target needs) are a 422 unless zero_infinity. The "
        "recursion runs in float64 for both dtypes; results are rounded to the requested one.",
        formula=r"\ell_n = -\log \sum_{\pi \in \mathcal{B}^{-1}(y_n)} \prod_{t=1}^{T_n} p_{t, \pi_t},\quad "
        r"\text{mean} = \frac{\sum_n w_n \ell_n / \max(L_n, 1)}{\sum_n w_n}",
        use_cases=(
            "Speech recognition acoustic models (characters or word pieces from audio frames)",
            "Handwriting and OCR line recognition without character segmentation",
            "Any sequence labelling where the input is longer than the output and unaligned",
        ),
        equivalents={
            "torch": "torch.nn.CTCLoss(blank, reduction, zero_infinity) on log_probs.transpose(0, 1) (time first "
            "there): same per-sample losses, sum and mean. torch's backward w.r.t. log_probs returns "
            "exp(log_probs) - gamma (it folds in the Jacobian of a log_softmax it assumes), not the derivative "
            "-gamma returned here; the two agree once chained through log_softmax, so with from_logits=true the "
            "gradient equals torch autograd of ctc_loss(log_softmax(x)). torch's value on log-probabilities is ours "
            "plus exp(predictions) times d loss / d l_n on frames t < input_length of samples with a finite loss.",
            "keras": "keras.losses.CTC / keras.ops.ctc_loss (logits, blank = mask_index = 0, all T frames, "
            "target length = count of non-blank labels): same per-sample losses as from_logits=true, but its mean "
            "is the plain batch mean without division by target length: use reduction 'sum' / N (or 'none').",
        },
        references=(
            "Graves, A., Fernández, S., Gomez, F., Schmidhuber, J. (2006). Connectionist Temporal Classification: "
            "Labelling Unsegmented Sequence Data with Recurrent Neural Networks. ICML.",
        ),
    ),
)
def ctc(from_logits: bool, zero_infinity: bool) -> KernelFunction:
    if from_logits:
        return ctc_logits_zero_infinity if zero_infinity else ctc_logits
    return ctc_log_probs_zero_infinity if zero_infinity else ctc_log_probs
