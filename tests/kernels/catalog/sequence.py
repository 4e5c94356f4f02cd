"""Test declarations of the sequence loss (kernels/sequence.py): CTC."""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.sequence import CtcParams
from tests.kernels.catalog.base import ONE, Arrays, Golden, GradientCase, LossInfo
from tests.kernels.catalog.reference import Ctx, F, Tensor, Tensors, keras, torch
from tests.kernels.properties import LogProbabilitySequence

# -- references (run by the golden generator only) -------------------------------------------------


def ctc_alpha_nll(lp: Tensor, targets: Tensor, il: Tensor, tl: Tensor, blank: int) -> Tensor:
    """An independent float64 CTC forward recursion in plain torch ops (log space, -1e200 as log 0 so
    that autograd stays finite): its autograd gradient is the exact derivative of the loss."""
    neg = -1e200
    out = []
    for n in range(lp.shape[0]):
        ext = [blank]
        for label in targets[n, : int(tl[n])].tolist():
            ext += [label, blank]
        k = len(ext)
        skip = torch.tensor([s >= 2 and ext[s] != ext[s - 2] for s in range(k)])
        alpha = torch.tensor([0.0] + [neg] * (k - 1), dtype=torch.float64)
        for t in range(int(il[n])):
            pad1 = torch.cat([torch.full((1,), neg, dtype=torch.float64), alpha[:-1]])
            pad2 = torch.where(skip, torch.cat([torch.full((2,), neg, dtype=torch.float64), alpha[:-2]]), neg)
            alpha = torch.logsumexp(torch.stack([alpha, pad1, pad2]), 0) + lp[n, t, ext]
        ll = torch.logsumexp(alpha[-2:], 0) if k > 1 else alpha[0]
        out.append(torch.where(ll < -1e100, torch.tensor(np.inf, dtype=torch.float64), -ll))
    return torch.stack(out)


def ref_ctc(t: Tensors, c: Ctx) -> tuple[Tensor, Tensor]:
    """torch ctc_loss per sample (time first there). With log-probabilities, torch's backward gives
    exp(lp) - gamma on frames t < T_n of possible samples; the exact derivative is -gamma: the
    reference subtracts S - S.detach(), S_n = sum of exp(lp) over those frames (value 0, gradient
    exp(lp)), and checks the result against autograd of an independent alpha recursion."""
    x, targets, il, tl = t["predictions"], t["targets"], t["input_lengths"], t["target_lengths"]
    blank = int(c.params.get("blank", 0))
    zero_infinity = bool(c.params.get("zero_infinity", False))
    logits = bool(c.params.get("from_logits", False))
    lp = x.log_softmax(-1) if logits else x
    out = F.ctc_loss(lp.transpose(0, 1), targets, il, tl, blank=blank, reduction="none", zero_infinity=zero_infinity)
    mass = tl.clamp(min=1).to(torch.float64)
    plain = F.ctc_loss(lp.detach().transpose(0, 1), targets, il, tl, blank=blank, reduction="none")
    possible = torch.isfinite(plain)
    independent = ctc_alpha_nll(x.detach().log_softmax(-1) if logits else x.detach(), targets, il, tl, blank)
    c.check(
        "independent float64 alpha recursion: per-sample losses",
        torch.where(possible, plain, 0),
        torch.where(possible, independent, 0),
    )
    if zero_infinity and not bool(possible.all()):
        c.check(
            "zero_infinity: impossible samples are 0",
            out[~possible],
            torch.zeros(int((~possible).sum()), dtype=torch.float64),
        )
    mean = F.ctc_loss(lp.transpose(0, 1), targets, il, tl, blank=blank, zero_infinity=zero_infinity)
    c.check(
        "torch ctc_loss(reduction='mean') = mean_n(l_n / max(L_n, 1))", mean.reshape(1), (out / mass).mean().reshape(1)
    )
    if not logits:
        frames = (torch.arange(x.shape[1])[None, :] < il[:, None]).to(torch.float64)
        total = (x.exp() * frames[..., None]).sum((1, 2)) * possible
        out = out - (total - total.detach())
    # the exact derivative, checked on a detached copy
    probe = x.detach().clone().requires_grad_(True)
    probe_lp = probe.log_softmax(-1) if logits else probe
    ours = F.ctc_loss(probe_lp.transpose(0, 1), targets, il, tl, blank=blank, reduction="none", zero_infinity=True)
    if not logits:
        frames = (torch.arange(x.shape[1])[None, :] < il[:, None]).to(torch.float64)
        total = (probe.exp() * frames[..., None]).sum((1, 2)) * possible
        ours = ours - (total - total.detach())
    (ours_grad,) = torch.autograd.grad(ours.sum(), probe)
    exact = x.detach().clone().requires_grad_(True)
    nll = ctc_alpha_nll(exact.log_softmax(-1) if logits else exact, targets, il, tl, blank)
    (exact_grad,) = torch.autograd.grad(torch.where(possible, nll, 0).sum(), exact)
    c.check(
        "gradient = autograd of the independent alpha recursion (the exact derivative)",
        ours_grad,
        exact_grad,
        rtol=1e-10,
    )
    if logits and blank == 0 and c.dtype == "float64":
        k = keras.ops.ctc_loss(targets, x, tl, il, mask_index=0)
        c.check(
            "keras.ops.ctc_loss(mask_index=0) per sample (float32 in Keras)",
            torch.where(possible, plain, 0),
            torch.where(possible, k.double(), 0),
            rtol=1e-5,
        )
    return out, mass


# -- golden inputs ---------------------------------------------------------------------------------


def ctc_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Shape (N, T, C, S). Targets with adjacent repeats, padded with the blank or with other labels;
    input lengths from the frames the target needs (L + repeats) to T. extreme: confident frames
    (log-probabilities down to about -60), a target that exactly fills its input, an empty target
    with zero frames; unnormalised: raw values around -1.5 (some positive), which torch takes as
    given; impossible: samples whose input is shorter than their target needs (zero_infinity)."""
    n, t, c, s = shape
    blank = int(params.get("blank", 0))
    labels = np.array([k for k in range(c) if k != blank])
    targets = rng.choice(labels, size=(n, s))
    for j in range(1, s):
        repeat = rng.random(n) < 0.35
        targets[repeat, j] = targets[repeat, j - 1]
    lengths = rng.integers(1, s + 1, n)
    lengths[0] = s
    within = np.arange(s)[None, :] < lengths[:, None]
    needed = lengths + (within[:, 1:] & (targets[:, 1:] == targets[:, :-1])).sum(axis=1)
    assert (needed <= t).all(), "shape too short for its targets"
    frames = rng.integers(needed, t + 1)
    frames[-1] = t
    if kind == "extreme":
        frames[0] = needed[0]  # exactly as many frames as the target needs
        lengths[-1], frames[-1] = 0, 0  # nothing to emit, nothing emitted
    if kind == "impossible":
        frames[0] = needed[0] - 1
        frames[-1] = max(int(needed[-1]) - 1 - int(rng.integers(0, 2)), 0)
    for i in range(n):
        if i % 2 == 0:
            targets[i, lengths[i] :] = blank  # padding: the blank, or any valid class
    scale = 15.0 if kind == "extreme" else 2.0
    x = rng.normal(0.0, scale, (n, t, c))
    if kind == "unnormalised":
        predictions = rng.normal(-1.5, 1.5, (n, t, c))
    elif params.get("from_logits"):
        predictions = x
    else:
        predictions = x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)
    return {"predictions": predictions, "targets": targets, "input_lengths": frames, "target_lengths": lengths}


# -- finite-difference inputs ----------------------------------------------------------------------


def fd_sequences(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """CTC: 3 samples, 6 frames, 4 classes; a repeated label, a shorter input, an empty target, and
    (with zero_infinity) a sample whose 3 frames cannot hold its target (4 needed)."""
    blank = params.get("blank", 0)
    x = rng.normal(0.0, 1.5, (3, 6, 4))
    if not params.get("from_logits"):
        x = x - np.log(np.exp(x).sum(axis=-1, keepdims=True)) - rng.uniform(0.0, 0.3, (3, 6, 1))
    labels = [c for c in range(4) if c != blank]
    targets = np.array([[labels[0], labels[0], labels[1]], [labels[2], labels[1], blank], [blank, blank, blank]])
    input_lengths, target_lengths = np.array([6, 4, 5]), np.array([3, 2, 0])
    if params.get("zero_infinity"):
        input_lengths[0] = 3  # needs 4: the repeat takes a blank between
    return {"predictions": x, "targets": targets, "input_lengths": input_lengths, "target_lengths": target_lengths}


# -- declarations ----------------------------------------------------------------------------------

LOSSES = (
    LossInfo(
        "ctc",
        whole="reduces its own elements",
        golden=Golden(
            reference=ref_ctc,
            data=ctc_data,
            shapes={"short": (3, 5, 4, 2), "long": (3, 10, 6, 4)},
            reduce="ctc",
            conventions="per_sample = the reference's per-sample loss l_n; mean = sum(w*l/max(L,1))/sum(w), L the "
            "target length (torch's CTC mean when w = 1); sum = sum(w*l); none = per_sample, gradients of "
            "per_sample.sum(). Reference evaluated in float64 on inputs rounded to the case dtype; see ref_ctc.",
            describe=lambda p: (
                (
                    "torch.nn.functional.ctc_loss(log_softmax(x) time first, blank, reduction='none', "
                    "zero_infinity); gradient = torch autograd through the log_softmax"
                    if p.get("from_logits")
                    else "torch.nn.functional.ctc_loss(log_probs time first, blank, reduction='none', zero_infinity); "
                    "gradient = torch autograd minus exp(log_probs) on frames t < input_length of possible samples "
                    "(torch's backward is exp(lp) - gamma; the exact derivative is -gamma), checked against autograd "
                    "of an independent float64 alpha recursion"
                )
                + "; mean = sum_n w_n l_n / max(L_n, 1) / sum_n w_n (torch's 'mean' with w = 1)"
            ),
            combos=(
                ({}, ("random", "extreme", "unnormalised")),
                ({"blank": 3}, ("random", "unnormalised")),
                ({"blank": 2}, ONE),
                ({"zero_infinity": True}, ("random", "impossible")),
                ({"from_logits": True}, ("random", "extreme")),
                ({"from_logits": True, "blank": 3}, ONE),
                ({"from_logits": True, "zero_infinity": True}, ("impossible",)),
                ({"from_logits": True, "zero_infinity": True, "blank": 1}, ("impossible",)),
            ),
        ),
        gradients=GradientCase(fd_sequences, ({}, {"blank": 2}, {"zero_infinity": True})),
        domain=LogProbabilitySequence(blank=CtcParams().blank),
    ),
)
