"""Write tests/golden/<loss>.json: golden values from the reference libraries.

Run from the repository root (``make golden``)::

    .venv/bin/python scripts/make_golden.py

Needs the ``reference`` extra (torch 2.13.0 CPU, Keras 3 with the torch backend, SciPy); the
tests that read the files need only numpy.

How the values are made
-----------------------
* Inputs are drawn from a generator seeded by the case's name (so every case is
  reproducible on its own), then rounded to the case's ``dtype``; the stored inputs are
  exactly representable in that dtype (float32 inputs are written in their shortest
  float32 form).
* The reference runs in float64 on those rounded inputs, with the constants the kernel
  uses in that dtype: float params are rounded to the dtype and the probability clip is
  ``[eps, 1 - eps]`` as computed in the dtype (float32: ``[f32(eps), 1 - f32(eps)]``,
  i.e. ``1 - 1.19e-7`` for the default eps). So a float32 golden is the exact value of
  the reference at float32 inputs, and the test measures only the kernel's own
  float32 error. Exception: where the reference is a Keras function that clips
  probabilities (``categorical_crossentropy``, ``sparse_categorical_crossentropy``),
  float32 cases run Keras natively in float32, because Keras's clip bounds are set in
  the tensor's dtype and cannot be reproduced in float64.
* The reference's per-element output (reduction ``'none'``) is reduced with the API
  conventions (API.md, "Conventions"): ``per_sample`` = mean over the non-batch axes
  (class-wise losses are summed over the last axis by the reference first);
  ``mean`` = sum(w*l)/sum(w) (for ``sparse_cross_entropy``: sum_n w_n sum_i e_ni /
  sum_n w_n sum_i m_ni, with m = the class weight of the label, 0 where ignored, which
  is torch's weighted mean); ``sum`` = sum(w*l); ``none`` = per_sample.
* Gradients come from torch autograd on the returned loss; for ``none`` of
  ``per_sample.sum()`` (samples are independent, so that is each sample's own loss).
  ``none`` is generated without sample weights only: the service rejects weights with
  reduction ``none``.
* Losses with other inputs than predictions/targets (pairs, triplets, GAN batches) declare
  their differentiable inputs and fixed shapes (``run_general_case``); each differentiable
  input is a float64 leaf of the reference's autograd graph. Batch-level losses (one value for
  the whole batch) have per_sample = [loss] and no weighted results.
* Where no installable library has the loss (TF-Addons, TF-GAN: they need TensorFlow), the
  reference is an independent float64 torch implementation of the library's formula, and the
  case's reference text says so.
* Each case lists the cross-checks made against other references (e.g. torch's own
  ``'mean'`` reduction, Keras's label smoothing); the script fails if one disagrees.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

os.environ["KERAS_BACKEND"] = "torch"

import keras
import monai
import numpy as np
import pytorch_msssim
import scipy
import scipy.stats
import skimage
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, TverskyLoss
from skimage.metrics import structural_similarity

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "golden"
SEED = 20_250_101
SHAPES: dict[str, tuple[int, ...]] = {"2d": (4, 5), "3d": (3, 2, 4), "2d-wide": (3, 7)}
DEFAULT_SHAPES = ("2d", "3d")
DTYPES = ("float32", "float64")
REDUCTIONS = (("mean", False), ("mean", True), ("sum", False), ("sum", True), ("none", False))
F64 = torch.float64
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}
DEFAULT_EPS = 1e-7
KERAS_EPS = keras.config.epsilon()

Tensors = dict[str, torch.Tensor]


class Ctx:
    """What a reference needs to know about the case besides its tensors."""

    def __init__(self, dtype: str, params: dict[str, Any], checks: list[str]) -> None:
        self.dtype = dtype
        self.params = params
        self.checks = checks

    def f(self, name: str, default: Any = None) -> Any:
        """A float param (or list of floats) rounded to the case dtype."""
        value = self.params.get(name, default)
        if value is None:
            return None
        return np.asarray(value, dtype=self.dtype).astype(np.float64).tolist()

    def bounds(self) -> tuple[float, float]:
        eps = np.asarray(self.params.get("eps", DEFAULT_EPS), dtype=self.dtype)
        return float(eps), float(np.asarray(1, dtype=self.dtype) - eps)

    def check(self, what: str, ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-12) -> None:
        a = ours.detach().double().numpy()
        b = theirs.detach().double().numpy()
        scale = max(float(np.max(np.abs(b))), 1e-300)
        err = float(np.max(np.abs(a - b)) / scale)
        if not np.allclose(a, b, rtol=rtol, atol=rtol * scale):
            raise AssertionError(f"cross-check failed: {what}: {a} vs {b}")
        self.checks.append(f"{what}: max diff {err:.1e} (relative to max |value|)")


# A reference: tensors (predictions requires grad, float64) -> (element losses E, mass M).
Reference = Callable[[Tensors, Ctx], tuple[torch.Tensor, torch.Tensor | None]]


# -- regression ---------------------------------------------------------------------------


def ref_mse(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x, y = t["predictions"], t["targets"]
    c.check(
        "torch mse_loss(reduction='mean') = our unweighted mean",
        F.mse_loss(x, y).reshape(1),
        F.mse_loss(x, y, reduction="none").mean().reshape(1),
    )
    return F.mse_loss(x, y, reduction="none"), None


def ref_mae(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    return F.l1_loss(t["predictions"], t["targets"], reduction="none"), None


def ref_huber(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    delta = c.f("delta", 1.0)
    x, y = t["predictions"], t["targets"]
    smooth = F.smooth_l1_loss(x, y, reduction="none", beta=delta) * delta
    c.check("huber = delta * smooth_l1_loss(beta=delta)", F.huber_loss(x, y, reduction="none", delta=delta), smooth)
    return F.huber_loss(x, y, reduction="none", delta=delta), None


def ref_log_cosh(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    """log(cosh(d)) in float64 torch, accurate everywhere: log1p(2 sinh(d/2)^2) for |d| < 1,
    |d| + log1p(exp(-2|d|)) - log 2 beyond. Keras is only a cross-check: on the torch
    backend its ops.mean (the last-axis mean in keras.losses.log_cosh) computes float64
    inputs in float32, and its softplus (torch's, threshold 20) drops exp(-20) terms."""
    x, y = t["predictions"], t["targets"]
    d = x - y
    a = d.abs()
    small = a < 1
    ds = torch.where(small, d, torch.zeros_like(d))
    out = torch.where(small, torch.log1p(2 * torch.sinh(ds / 2) ** 2), a + torch.log1p(torch.exp(-2 * a)) - np.log(2))
    k = keras.losses.log_cosh(y, x)
    c.check("keras.losses.log_cosh (its last-axis mean runs in float32)", out.mean(-1), k, rtol=1e-6)
    c.check(
        "keras LogCosh() (sum_over_batch_size, float32) = our unweighted mean",
        keras.losses.LogCosh()(y, x).reshape(1),
        out.mean().reshape(1),
        rtol=1e-6,
    )
    return out, None


def in_dtype(value: float, dtype: str) -> float:
    """A constant as the kernel holds it in the case dtype (e.g. 1e-7 in float32)."""
    return float(np.asarray(value, dtype=dtype))


def ref_smooth_l1(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    beta = c.f("beta", 1.0)
    x, y = t["predictions"], t["targets"]
    out = F.smooth_l1_loss(x, y, reduction="none", beta=beta)
    if beta > 0:
        c.check(
            "huber(delta=beta) = beta * smooth_l1_loss(beta)",
            F.huber_loss(x, y, reduction="none", delta=beta),
            out * beta,
        )
    else:
        c.check("smooth_l1_loss(beta=0) = l1_loss", F.l1_loss(x, y, reduction="none"), out)
    c.check(
        "torch smooth_l1_loss(reduction='mean') = our unweighted mean",
        F.smooth_l1_loss(x, y, beta=beta).reshape(1),
        out.mean().reshape(1),
    )
    return out, None


def ref_msle(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    """Keras's formula in torch float64 with its epsilon in the case dtype; Keras itself only
    cross-checks: it converts this loss's epsilon without a dtype, and on the torch backend
    maximum(float64 input, float32 epsilon) is float32, so Keras computes float64 inputs in float32."""
    x, y = t["predictions"], t["targets"]
    eps = torch.tensor(in_dtype(KERAS_EPS, c.dtype), dtype=F64)
    out = (torch.log1p(torch.maximum(x, eps)) - torch.log1p(torch.maximum(y, eps))) ** 2
    if c.dtype == "float64" and bool((out.mean(-1) > 1e-6).all()):
        # Keras's float32 epsilon makes its maximum (and all that follows) float32: where the
        # prediction is within ~1e-3 of the target that loses every digit, so no check there.
        k = keras.losses.mean_squared_logarithmic_error(y, x)
        c.check("keras.losses.mean_squared_logarithmic_error (float32 last-axis mean)", out.mean(-1), k, rtol=1e-6)
    return out, None


def ref_mape(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x, y = t["predictions"], t["targets"]
    out = 100.0 * (y - x).abs() / torch.clamp(y.abs(), min=in_dtype(KERAS_EPS, c.dtype))
    if c.dtype == "float64":
        k = keras.losses.mean_absolute_percentage_error(y, x)
        c.check("keras.losses.mean_absolute_percentage_error (float32 last-axis mean)", out.mean(-1), k, rtol=1e-6)
    return out, None


def ref_poisson(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x, y = t["predictions"], t["targets"]
    log_input, full = c.params.get("log_input", True), c.params.get("full", False)
    eps = c.f("eps", 1e-8)
    out = F.poisson_nll_loss(x, y, log_input=log_input, full=full, eps=eps, reduction="none")
    c.check(
        "torch poisson_nll_loss(reduction='mean') = our unweighted mean",
        F.poisson_nll_loss(x, y, log_input=log_input, full=full, eps=eps).reshape(1),
        out.mean().reshape(1),
    )
    if not log_input and not full and c.params.get("eps") == KERAS_EPS and c.dtype == "float64":
        k = keras.losses.poisson(y, x)
        c.check("keras.losses.poisson = log_input=False, eps=1e-7 (float32 last-axis mean)", out.mean(-1), k, rtol=1e-6)
    return out, None


def ref_gaussian_nll(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    """torch's own function: its clamp of the variance runs under no_grad, so autograd passes
    the variance's gradient straight through it (also below eps)."""
    x, y, var = t["predictions"], t["targets"], t["variance"]
    full, eps = c.params.get("full", False), c.f("eps", 1e-6)
    out = F.gaussian_nll_loss(x, y, var, full=full, eps=eps, reduction="none")
    c.check(
        "torch gaussian_nll_loss(reduction='mean') = our unweighted mean",
        F.gaussian_nll_loss(x, y, var, full=full, eps=eps).reshape(1),
        out.mean().reshape(1),
    )
    return out, None


def ref_quantile(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    """TF-Addons pinball_loss's documented formula in torch float64 (TF-Addons needs
    TensorFlow, which is not installable here): delta = y - x, max(tau delta, (tau - 1) delta)."""
    x, y = t["predictions"], t["targets"]
    tau = c.f("quantile", 0.5)

    def pinball(y_true: torch.Tensor, y_pred: torch.Tensor, tau: float) -> torch.Tensor:
        delta = y_true - y_pred
        return torch.maximum(tau * delta, (tau - 1) * delta)

    example = pinball(torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=F64), torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=F64), 0.1)
    c.check(
        "TF-Addons docstring example pinball_loss([0,0,1,1], [1,1,1,0], tau=.1) = 0.475",
        example.mean().reshape(1),
        torch.tensor([0.475], dtype=F64),
    )
    if tau == 0.5:
        c.check("tau = 0.5 is half of torch l1_loss", pinball(y, x, tau), 0.5 * F.l1_loss(x, y, reduction="none"))
    return pinball(y, x, tau), None


# -- binary cross-entropy -----------------------------------------------------------------


def smooth_binary(y: torch.Tensor, s: float) -> torch.Tensor:
    return y * (1.0 - s) + 0.5 * s


def ref_bce(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x, y0 = t["predictions"], t["targets"]
    s = c.f("label_smoothing", 0.0)
    y = smooth_binary(y0, s)
    pw = c.f("pos_weight")
    if c.params.get("from_logits", False):
        pos_weight = None if pw is None else torch.tensor(pw, dtype=F64)
        out = F.binary_cross_entropy_with_logits(x, y, pos_weight=pos_weight, reduction="none")
        if pw is None and s and c.dtype == "float64":
            k = keras.losses.binary_crossentropy(y0, x, from_logits=True, label_smoothing=s)
            c.check(
                "keras binary_crossentropy(from_logits, label_smoothing); float32 last-axis mean",
                out.mean(-1),
                k,
                rtol=1e-6,
            )
        return out, None
    lo, hi = c.bounds()
    p = torch.clamp(x, lo, hi)
    if pw is None:
        out = F.binary_cross_entropy(p, y, reduction="none")
    else:
        out = -(torch.tensor(pw, dtype=F64) * y * torch.log(p) + (1 - y) * torch.log(1 - p))
    if pw is None and c.dtype == "float64" and c.params.get("eps", DEFAULT_EPS) == KERAS_EPS:
        k = keras.losses.binary_crossentropy(y0, x, label_smoothing=s)
        c.check(f"keras binary_crossentropy(label_smoothing={s}); float32 last-axis mean", out.mean(-1), k, rtol=1e-6)
    return out, None


# -- categorical cross-entropy ------------------------------------------------------------


def keras_native(t: Tensors, c: Ctx) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions and targets in the case dtype, for Keras functions that clip."""
    x = t["predictions_native"]
    return x, t["targets"].to(x.dtype) if t["targets"].is_floating_point() else t["targets"]


def with_keras_eps(eps: float, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    keras.config.set_epsilon(eps)
    try:
        return fn()
    finally:
        keras.config.set_epsilon(KERAS_EPS)


def ref_cross_entropy(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x, y = t["predictions"], t["targets"]
    s = c.f("label_smoothing", 0.0)
    w = c.f("class_weights")
    weight = None if w is None else torch.tensor(w, dtype=F64)
    classes = x.shape[-1]
    if c.params.get("from_logits", False):
        # torch wants the class axis at 1.
        xt, yt = x.movedim(-1, 1), y.movedim(-1, 1)
        out = F.cross_entropy(xt, yt, weight=weight, label_smoothing=s, reduction="none")
        c.check(
            "torch cross_entropy(reduction='mean') = our unweighted mean (sum / rows)",
            F.cross_entropy(xt, yt, weight=weight, label_smoothing=s).reshape(1),
            out.mean().reshape(1),
        )
        if w is None and c.dtype == "float64":
            k = keras.losses.categorical_crossentropy(y, x, from_logits=True, label_smoothing=s)
            c.check("keras categorical_crossentropy(from_logits)", out, k)
        return out, None
    lo, hi = c.bounds()
    u = y * (1.0 - s) + s / classes
    if weight is not None:
        u = u * weight
    q = x / x.sum(-1, keepdim=True)
    formula = -(u * torch.log(torch.clamp(q, lo, hi))).sum(-1)
    if w is not None:
        return formula, None
    xn, yn = keras_native(t, c)
    eps = c.params.get("eps", DEFAULT_EPS)
    out = with_keras_eps(eps, lambda: keras.losses.categorical_crossentropy(yn, xn, label_smoothing=s))
    c.check(
        "kernel formula -sum(u log clip(p/sum p)) in float64",
        formula,
        out,
        rtol=1e-12 if c.dtype == "float64" else 1e-5,
    )
    return out, None


def sparse_mass(labels: torch.Tensor, weight: torch.Tensor | None, ignore: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which labels count, and the element mass: weight[label] (1 without weights), 0 where ignored."""
    keep = labels != ignore
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    w = torch.ones(labels.shape, dtype=F64) if weight is None else weight[safe]
    return keep, torch.where(keep, w, torch.zeros((), dtype=F64))


def ref_sparse(t: Tensors, c: Ctx) -> tuple[torch.Tensor, torch.Tensor]:
    x, labels = t["predictions"], t["targets"]
    s = c.f("label_smoothing", 0.0)
    w = c.f("class_weights")
    ignore = int(c.params.get("ignore_index", -100))
    weight = None if w is None else torch.tensor(w, dtype=F64)
    keep, mass = sparse_mass(labels, weight, ignore)
    classes = x.shape[-1]
    if c.params.get("from_logits", False):
        xt = x.movedim(-1, 1)
        out = F.cross_entropy(xt, labels, weight=weight, ignore_index=ignore, label_smoothing=s, reduction="none")
        c.check(
            "torch cross_entropy(reduction='mean') = sum(E)/sum(mass)",
            F.cross_entropy(xt, labels, weight=weight, ignore_index=ignore, label_smoothing=s).reshape(1),
            (out.sum() / mass.sum()).reshape(1),
        )
        return out, mass
    lo, hi = c.bounds()
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    one_hot = F.one_hot(safe, classes).to(F64)
    u = (one_hot * (1.0 - s) + s / classes) * keep.unsqueeze(-1)
    if weight is not None:
        u = u * weight
    q = x / x.sum(-1, keepdim=True)
    formula = -(u * torch.log(torch.clamp(q, lo, hi))).sum(-1)
    if w is not None or s:
        # Keras has neither class weights nor smoothing here: the documented formula
        # (kernels/classification.py), torch's smoothing convention on clipped probabilities.
        return formula, mass
    xn, ln = keras_native(t, c)
    eps = c.params.get("eps", DEFAULT_EPS)
    out = with_keras_eps(
        eps,
        lambda: keras.losses.sparse_categorical_crossentropy(
            ln, xn, ignore_class=ignore if bool((~keep).any()) else None
        ),
    )
    c.check(
        "kernel formula -log clip(p_y/sum p) in float64", formula, out, rtol=1e-12 if c.dtype == "float64" else 1e-5
    )
    return out, mass


# -- focal --------------------------------------------------------------------------------


def ref_focal(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    """torchvision.ops.sigmoid_focal_loss (v0.2x source), reduction='none', copied exactly;
    targets smoothed first; on probabilities the same with clipped p and BCE on p."""
    x, y0 = t["predictions"], t["targets"]
    alpha, gamma = c.f("alpha", 0.25), c.f("gamma", 2.0)
    y = smooth_binary(y0, c.f("label_smoothing", 0.0))
    if c.params.get("from_logits", False):
        p = torch.sigmoid(x)
        ce_loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    else:
        lo, hi = c.bounds()
        p = torch.clamp(x, lo, hi)
        ce_loss = F.binary_cross_entropy(p, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * y + (1 - alpha) * (1 - y)
        loss = alpha_t * loss
    if not c.params.get("from_logits", False) and alpha >= 0 and c.dtype == "float64" and not c.params.get("eps"):
        lo, hi = c.bounds()
        inside = bool(((x > lo) & (x < hi)).all())
        if inside:
            k = keras.losses.binary_focal_crossentropy(
                y0, x, apply_class_balancing=True, alpha=alpha, gamma=gamma, label_smoothing=c.f("label_smoothing", 0.0)
            )
            c.check(
                "keras binary_focal_crossentropy(apply_class_balancing=True); float32 last-axis mean",
                loss.mean(-1),
                k,
                rtol=1e-6,
            )
    return loss, None


# -- label smoothing, class weights, NLL --------------------------------------------------


def ref_label_smoothing(t: Tensors, c: Ctx) -> tuple[torch.Tensor, torch.Tensor]:
    """ref_sparse with this loss's default label_smoothing=0.1; on probabilities without class
    weights cross-checked against Keras CategoricalCrossentropy(label_smoothing) on the kept labels'
    one-hot rows (Keras's y(1-s)+s/C is torch's convention without weights)."""
    ctx = Ctx(c.dtype, {"label_smoothing": 0.1, **c.params}, c.checks)
    out, mass = ref_sparse(t, ctx)
    s = ctx.f("label_smoothing")
    if not ctx.params.get("from_logits") and ctx.params.get("class_weights") is None and c.dtype == "float64":
        x, labels = t["predictions"], t["targets"]
        keep = labels != int(ctx.params.get("ignore_index", -100))
        one_hot = F.one_hot(labels[keep], x.shape[-1]).to(F64)
        eps = ctx.params.get("eps", DEFAULT_EPS)
        k = with_keras_eps(eps, lambda: keras.losses.categorical_crossentropy(one_hot, x[keep], label_smoothing=s))
        c.check(f"keras categorical_crossentropy(label_smoothing={s}) on one-hot labels", out[keep], k)
    return out, mass


def ref_nll(t: Tensors, c: Ctx) -> tuple[torch.Tensor, torch.Tensor]:
    x, labels = t["predictions"], t["targets"]
    w = c.f("class_weights")
    ignore = int(c.params.get("ignore_index", -100))
    weight = None if w is None else torch.tensor(w, dtype=F64)
    _, mass = sparse_mass(labels, weight, ignore)
    xt = x.movedim(-1, 1)
    out = F.nll_loss(xt, labels, weight=weight, ignore_index=ignore, reduction="none")
    c.check(
        "torch nll_loss(reduction='mean') = sum(E)/sum(mass)",
        F.nll_loss(xt, labels, weight=weight, ignore_index=ignore).reshape(1),
        (out.sum() / mass.sum()).reshape(1),
    )
    return out, mass


# -- Kullback-Leibler ---------------------------------------------------------------------


def ref_kl(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x, y = t["predictions"], t["targets"]
    if c.params.get("from_logits", False):
        log_q = F.log_softmax(x, -1)
        out = F.kl_div(log_q, y, reduction="none").sum(-1)
        if x.dim() == 2:
            c.check(
                "torch kl_div(reduction='batchmean') = our unweighted mean (2-D)",
                F.kl_div(log_q, y, reduction="batchmean").reshape(1),
                out.mean().reshape(1),
            )
        return out, None
    lo, _ = c.bounds()
    yc, pc = torch.clamp(y, lo, 1.0), torch.clamp(x, lo, 1.0)
    out = (yc * torch.log(yc / pc)).sum(-1)
    xn, yn = keras_native(t, c)
    eps = c.params.get("eps", DEFAULT_EPS)
    k = with_keras_eps(eps, lambda: keras.losses.kl_divergence(yn, xn))
    # Keras's ops.clip turns the Python eps into a float32 tensor on the torch backend, so float64
    # Keras clips at float32(eps) = 1.0000000117e-7; we (and the golden) clip at eps in the dtype.
    c.check(
        "keras.losses.kl_divergence (run in the case dtype; its float64 clip bound is float32(eps))",
        out,
        k,
        rtol=1e-8 if c.dtype == "float64" else 2e-6,
    )
    if bool((y >= lo).all()):
        torch_kl = F.kl_div(torch.log(pc), y, reduction="none").sum(-1)
        c.check("torch kl_div(log clamp(p, eps, 1), y) (no target below eps)", out, torch_kl)
    return out, None


# -- categorical focal --------------------------------------------------------------------


def stable_softmax_parts(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log softmax, softmax and 1 - softmax in float64 with the dominant class's 1 - p taken as
    (sum of the others) / (sum of all), so a confident row keeps its tiny 1 - p."""
    z = x - x.max(-1, keepdim=True).values
    e = torch.exp(z)
    top = z == 0
    rest = torch.where(top, torch.zeros_like(e), e).sum(-1, keepdim=True) + (top.sum(-1, keepdim=True) - 1)
    log_p = z - torch.log1p(rest)
    p = torch.exp(log_p)
    return log_p, p, torch.where(p > 0.5, rest / (1 + rest), 1 - p)


def ref_categorical_focal(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x, y0 = t["predictions"], t["targets"]
    gamma, s = c.f("gamma", 2.0), c.f("label_smoothing", 0.0)
    alpha = torch.tensor(c.f("alpha", 0.25), dtype=F64)
    classes = x.shape[-1]
    y = y0 * (1.0 - s) + s / classes
    if c.params.get("from_logits", False):
        log_p, _, q = stable_softmax_parts(x)
        out = -(alpha * q**gamma * y * log_p).sum(-1)
        naive_p = torch.softmax(x, -1)
        naive = -(alpha * (1 - naive_p) ** gamma * y * F.log_softmax(x, -1)).sum(-1)
        c.check("plain torch softmax / log_softmax formula", out, naive, rtol=1e-9)
        lo, hi = c.bounds()
        if c.dtype == "float64" and bool(((naive_p >= lo) & (naive_p <= hi)).all()):
            k = keras.losses.categorical_focal_crossentropy(
                y0, x, alpha=alpha, gamma=gamma, from_logits=True, label_smoothing=s
            )
            c.check("keras categorical_focal_crossentropy(from_logits) where its clip does not bind", out, k)
        return out, None
    lo, hi = c.bounds()
    q = x / x.sum(-1, keepdim=True)
    o = torch.clamp(q, lo, hi)
    out = -(alpha * (1 - o) ** gamma * y * torch.log(o)).sum(-1)
    xn, yn = keras_native(t, c)
    eps = c.params.get("eps", DEFAULT_EPS)
    alpha_n = alpha.to(xn.dtype)
    k = with_keras_eps(
        eps,
        lambda: keras.losses.categorical_focal_crossentropy(yn, xn, alpha=alpha_n, gamma=gamma, label_smoothing=s),
    )
    # As for kl_divergence: Keras's ops.clip bounds are float32 on the torch backend, also for float64.
    c.check(
        "keras.losses.categorical_focal_crossentropy (run in the case dtype; float64 clip bounds in float32)",
        out,
        k,
        rtol=1e-8 if c.dtype == "float64" else 1e-5,
    )
    return out, None


# -- hinge family -------------------------------------------------------------------------


def keras_hinge_labels(y: torch.Tensor) -> torch.Tensor:
    """keras convert_binary_labels_to_hinge: 2y-1 only if every label is 0 or 1."""
    return 2 * y - 1 if bool(((y == 0) | (y == 1)).all()) else y


def ref_hinge(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x, y = t["predictions"], t["targets"]
    out = F.relu(1 - keras_hinge_labels(y) * x)
    c.check(
        "keras.losses.hinge (computes in float32 on the torch backend)", out.mean(-1), keras.losses.hinge(y, x), 1e-6
    )
    return out, None


def ref_squared_hinge(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x, y = t["predictions"], t["targets"]
    out = F.relu(1 - keras_hinge_labels(y) * x) ** 2
    c.check(
        "keras.losses.squared_hinge (computes in float32 on the torch backend)",
        out.mean(-1),
        keras.losses.squared_hinge(y, x),
        1e-6,
    )
    return out, None


def ref_categorical_hinge(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x, y = t["predictions"], t["targets"]
    pos = (y * x).sum(-1)
    neg = ((1 - y) * x).max(-1).values
    out = F.relu(neg - pos + 1)
    c.check(
        "keras.losses.categorical_hinge (computes in float32 on the torch backend)",
        out,
        keras.losses.categorical_hinge(y, x),
        1e-6,
    )
    return out, None


def ref_multi_margin(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x, labels = t["predictions"], t["targets"]
    w = c.f("class_weights")
    weight = None if w is None else torch.tensor(w, dtype=F64)
    p, margin = int(c.params.get("p", 1)), c.f("margin", 1.0)
    out = F.multi_margin_loss(x, labels, p=p, margin=margin, weight=weight, reduction="none")
    c.check(
        "torch multi_margin_loss(reduction='mean') = plain mean over samples (not divided by the class weights)",
        F.multi_margin_loss(x, labels, p=p, margin=margin, weight=weight).reshape(1),
        out.mean().reshape(1),
    )
    return out, None


# -- CTC ----------------------------------------------------------------------------------


def ctc_alpha_nll(
    lp: torch.Tensor, targets: torch.Tensor, il: torch.Tensor, tl: torch.Tensor, blank: int
) -> torch.Tensor:
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
        alpha = torch.tensor([0.0] + [neg] * (k - 1), dtype=F64)
        for t in range(int(il[n])):
            pad1 = torch.cat([torch.full((1,), neg, dtype=F64), alpha[:-1]])
            pad2 = torch.where(skip, torch.cat([torch.full((2,), neg, dtype=F64), alpha[:-2]]), neg)
            alpha = torch.logsumexp(torch.stack([alpha, pad1, pad2]), 0) + lp[n, t, ext]
        ll = torch.logsumexp(alpha[-2:], 0) if k > 1 else alpha[0]
        out.append(torch.where(ll < -1e100, torch.tensor(np.inf, dtype=F64), -ll))
    return torch.stack(out)


def ref_ctc(t: Tensors, c: Ctx) -> tuple[torch.Tensor, torch.Tensor]:
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
    mass = tl.clamp(min=1).to(F64)
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
            "zero_infinity: impossible samples are 0", out[~possible], torch.zeros(int((~possible).sum()), dtype=F64)
        )
    mean = F.ctc_loss(lp.transpose(0, 1), targets, il, tl, blank=blank, zero_infinity=zero_infinity)
    c.check(
        "torch ctc_loss(reduction='mean') = mean_n(l_n / max(L_n, 1))", mean.reshape(1), (out / mass).mean().reshape(1)
    )
    if not logits:
        frames = (torch.arange(x.shape[1])[None, :] < il[:, None]).to(F64)
        total = (x.exp() * frames[..., None]).sum((1, 2)) * possible
        out = out - (total - total.detach())
    # the exact derivative, checked on a detached copy
    probe = x.detach().clone().requires_grad_(True)
    probe_lp = probe.log_softmax(-1) if logits else probe
    ours = F.ctc_loss(probe_lp.transpose(0, 1), targets, il, tl, blank=blank, reduction="none", zero_infinity=True)
    if not logits:
        frames = (torch.arange(x.shape[1])[None, :] < il[:, None]).to(F64)
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


# -- segmentation (MONAI) ----------------------------------------------------------------


def monai_activation(c: Ctx) -> dict[str, bool]:
    activation = c.params.get("activation", "none")
    return {"sigmoid": activation == "sigmoid", "softmax": activation == "softmax"}


def monai_per_class(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MONAI's reduction='none' output (N, C', 1, ...) as the (N, C') per-class losses."""
    out: torch.Tensor = module(x, y)
    return out.reshape(x.shape[0], -1)


def keras_single_sample(c: Ctx, what: str, ours: torch.Tensor, keras_value: torch.Tensor) -> None:
    """Keras's one-value-per-batch overlap losses = ours on the batch sent as one sample of one channel."""
    c.check(
        f"{what} (axis=None: one value over the whole batch, smooth 0, eps 1e-7) = monai on shape (1, 1, -1) with "
        "smooth_nr=0, smooth_dr=1e-7",
        ours.reshape(1),
        keras_value.reshape(1),
    )


def ref_dice(t: Tensors, c: Ctx, jaccard: bool = False) -> tuple[torch.Tensor, None]:
    x, y = t["predictions"], t["targets"]
    kwargs = dict(
        include_background=c.params.get("include_background", True),
        squared_pred=c.params.get("squared_pred", False),
        smooth_nr=c.f("smooth_nr", 1e-5),
        smooth_dr=c.f("smooth_dr", 1e-5),
        **monai_activation(c),
    )
    out = monai_per_class(DiceLoss(jaccard=jaccard, reduction="none", **kwargs), x, y)
    c.check(
        "monai reduction='mean' = our unweighted mean",
        DiceLoss(jaccard=jaccard, reduction="mean", **kwargs)(x, y).reshape(1),
        out.mean().reshape(1),
    )
    p = x if c.params.get("activation", "none") == "none" else None
    if p is not None and not kwargs["squared_pred"] and c.dtype == "float64":
        if jaccard:  # MONAI's Jaccard = the textbook soft IoU with halved smoothing
            tp = (x * y).flatten(2).sum(-1)
            union = x.flatten(2).sum(-1) + y.flatten(2).sum(-1) - tp
            textbook = 1 - (tp + kwargs["smooth_nr"] / 2) / (union + kwargs["smooth_dr"] / 2)
            kept = textbook if kwargs["include_background"] else textbook[:, 1:]
            c.check("monai jaccard = 1 - (tp + s_nr/2) / (sum p + sum y - tp + s_dr/2)", out, kept)
        else:
            ours = DiceLoss(reduction="none", smooth_nr=0.0, smooth_dr=1e-7)(x.reshape(1, 1, -1), y.reshape(1, 1, -1))
            keras_single_sample(c, "keras.losses.dice", ours, keras.losses.dice(y, x))
    return out, None


def ref_iou(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    return ref_dice(t, c, jaccard=True)


def ref_tversky(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x, y = t["predictions"], t["targets"]
    alpha, beta = c.f("alpha", 0.5), c.f("beta", 0.5)
    smooth_nr, smooth_dr = c.f("smooth_nr", 1e-5), c.f("smooth_dr", 1e-5)
    common = dict(include_background=c.params.get("include_background", True), **monai_activation(c))
    out = monai_per_class(
        TverskyLoss(alpha=alpha, beta=beta, smooth_nr=smooth_nr, smooth_dr=smooth_dr, reduction="none", **common), x, y
    )
    if alpha == beta and alpha in (0.5, 1.0):  # Tversky(1/2, 1/2) is Dice and Tversky(1, 1) MONAI's Jaccard, smooth x2
        other = DiceLoss(
            jaccard=alpha == 1.0, smooth_nr=2 * smooth_nr, smooth_dr=2 * smooth_dr, reduction="none", **common
        )
        name = "DiceLoss(jaccard=True)" if alpha == 1.0 else "DiceLoss"
        c.check(f"monai TverskyLoss(alpha=beta={alpha}, s) = monai {name}(2 s)", out, monai_per_class(other, x, y))
    if c.params.get("activation", "none") == "none" and c.dtype == "float64":
        # Keras multiplies alpha with sum y (1 - p) (false negatives): Keras(a, b) = ours(alpha=b, beta=a)
        swapped = TverskyLoss(alpha=beta, beta=alpha, smooth_nr=0.0, smooth_dr=1e-7, reduction="none")
        ours = swapped(x.reshape(1, 1, -1), y.reshape(1, 1, -1))
        what = "keras.losses.tversky(alpha=a, beta=b) (alpha multiplies the false negatives) with alpha=b, beta=a"
        keras_single_sample(c, what, ours, keras.losses.tversky(y, x, alpha=alpha, beta=beta))
    return out, None


# -- ssim (scikit-image) --------------------------------------------------------------------


def reflect_indices(size: int, start: int, stop: int) -> np.ndarray:
    """scipy.ndimage mode 'reflect' (d c b a | a b c d | d c b a ...) for positions start..stop-1."""
    folded = np.mod(np.arange(start, stop), 2 * size)
    return np.where(folded < size, folded, 2 * size - 1 - folded)


def torch_ssim_map(x: torch.Tensor, y: torch.Tensor, c: Ctx) -> torch.Tensor:
    """SSIM maps (N, C, Ho, Wo) re-implemented in torch (float64) for autograd: scipy's truncated Gaussian,
    reflect padding by index, separable valid conv2d, cropped by (win_size - 1) // 2."""
    sigma, data_range = c.f("sigma", 1.5), c.f("data_range", 1.0)
    k1, k2, win = c.f("k1", 0.01), c.f("k2", 0.03), c.params.get("window_size", 11)
    radius, pad = int(3.5 * sigma + 0.5), (win - 1) // 2
    taps = np.exp(-0.5 / (sigma * sigma) * np.arange(-radius, radius + 1) ** 2)
    kernel = torch.tensor(taps / taps.sum(), dtype=F64)
    n, ch, h, w = x.shape

    def blur(z: torch.Tensor) -> torch.Tensor:
        z = z.reshape(n * ch, 1, h, w)
        z = z[:, :, torch.tensor(reflect_indices(h, pad - radius, h - pad + radius))]
        z = z[:, :, :, torch.tensor(reflect_indices(w, pad - radius, w - pad + radius))]
        z = F.conv2d(z, kernel.reshape(1, 1, -1, 1))
        return F.conv2d(z, kernel.reshape(1, 1, 1, -1)).reshape(n, ch, h - 2 * pad, w - 2 * pad)

    ux, uy, uxx, uyy, uxy = blur(x), blur(y), blur(x * x), blur(y * y), blur(x * y)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ref_ssim(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    """Values: 1 - skimage structural_similarity per (sample, channel); gradients: torch autograd of
    torch_ssim_map, which must agree with skimage to 1e-12 (the returned tensor carries skimage's values
    and the torch re-implementation's gradient)."""
    x, y = t["predictions"], t["targets"]
    data_range, win = c.f("data_range", 1.0), c.params.get("window_size", 11)
    xs, ys = x.detach().numpy(), y.numpy()
    values = [
        [
            1.0
            - structural_similarity(
                xs[i, j], ys[i, j], win_size=win, gaussian_weights=True, use_sample_covariance=False,
                data_range=data_range, sigma=c.f("sigma", 1.5), K1=c.f("k1", 0.01), K2=c.f("k2", 0.03),
            )
            for j in range(xs.shape[1])
        ]
        for i in range(xs.shape[0])
    ]  # fmt: skip
    sk = torch.tensor(values, dtype=F64)
    mine = 1.0 - torch_ssim_map(x, y, c).flatten(2).mean(-1)
    c.check("torch re-implementation (source of the gradients) = skimage", mine, sk, rtol=1e-12)
    if win == 11 and c.f("sigma", 1.5) == 1.5:
        theirs = 1.0 - pytorch_msssim.ssim(
            x.detach(), y, data_range=data_range, size_average=False, K=(c.f("k1", 0.01), c.f("k2", 0.03))
        )
        c.check(
            "pytorch_msssim.ssim (valid conv, window 11, sigma 1.5; its Gaussian taps are computed in float32), "
            "mean over channels",
            mine.mean(1),
            theirs,
            rtol=1e-5,
        )
    return mine + (sk - mine).detach(), None


# -- data ---------------------------------------------------------------------------------


def regression_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    targets = rng.normal(0.0, 2.0, shape)
    residual = rng.normal(0.0, 1.5, shape)
    if kind == "extreme":
        flat = residual.reshape(-1)
        picks = rng.permutation(flat.size)[: flat.size // 2]
        flat[picks] = rng.choice([1e4, -1e4, 1.23e4, -9.9e3, 3e-3, -3e-3], size=picks.size)
    # keep |residual| away from huber's delta (smooth_l1's beta) and from 0 (kinks)
    delta = params.get("delta", params.get("beta", 1.0))
    near = np.abs(np.abs(residual) - delta) < 0.05
    residual[near] += 0.1
    return {"predictions": targets + residual, "targets": targets}


def msle_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    """Positive targets over orders of magnitude; extreme: predictions and targets clamped by eps
    (negative, 0, below 1e-7) and huge; close: predictions within 1e-4 relative of the targets
    (where log(1 + a) - log(1 + b) would cancel)."""
    y = rng.lognormal(0.0, 1.5, shape)
    if kind == "close":
        return {
            "predictions": y * (1.0 + rng.choice([-1.0, 1.0], shape) * rng.uniform(1e-5, 1e-4, shape)),
            "targets": y,
        }
    x = y * rng.lognormal(0.0, 0.7, shape)
    if kind == "extreme":
        flat_x, flat_y = x.reshape(-1), y.reshape(-1)
        picks = rng.permutation(flat_x.size)[: flat_x.size // 2]
        flat_x[picks] = rng.choice([-3.0, 0.0, 1e-9, 5e-8, 1e-3, 1e4, 3e5], size=picks.size)
        others = rng.permutation(flat_y.size)[: flat_y.size // 3]
        flat_y[others] = rng.choice([-1.0, 0.0, 1e-9, 2.0, 1e4], size=others.size)
    return {"predictions": x, "targets": y}


def mape_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    """Targets of both signs; extreme: targets 0 and below eps (denominator eps), huge residuals."""
    y = rng.normal(0.0, 2.0, shape)
    r = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.05, 2.0, shape)
    if kind == "extreme":
        flat_y, flat_r = y.reshape(-1), r.reshape(-1)
        picks = rng.permutation(flat_y.size)[: flat_y.size // 2]
        flat_y[picks] = rng.choice([0.0, 1e-9, -3e-8, 1e4, -2e4], size=picks.size)
        flat_r[picks] = rng.choice([1e4, -1e4, 0.5, -3e-3, 3e-3], size=picks.size)
    return {"predictions": y + r, "targets": y}


def poisson_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    """Counts (with 0, 1 -- the edge of full's y > 1 -- and non-integers) against log-rates, or
    rates >= 0 when log_input is false; extreme: saturated log-rates, zero rates, huge counts."""
    log_rate = rng.normal(0.5, 1.5, shape)
    y = rng.poisson(np.exp(log_rate + rng.normal(0.0, 0.3, shape))).astype(np.float64)
    flat_y = y.reshape(-1)
    flat_y[:3] = [0.0, 1.0, 2.5]
    if kind == "extreme":
        picks = rng.permutation(flat_y.size)[: flat_y.size // 3]
        flat_y[picks] = rng.choice([0.0, 1.0, 1.5, 1e3, 1e5], size=picks.size)
    if params.get("log_input", True):
        x = log_rate
        if kind == "extreme":
            flat_x = x.reshape(-1)
            picks = rng.permutation(flat_x.size)[: flat_x.size // 2]
            flat_x[picks] = rng.choice([-30.0, -5.0, 0.0, 5.0, 20.0, 40.0], size=picks.size)
    else:
        x = np.exp(log_rate)
        if kind == "extreme":
            flat_x = x.reshape(-1)
            picks = rng.permutation(flat_x.size)[: flat_x.size // 2]
            flat_x[picks] = rng.choice([0.0, 1e-9, 1e-3, 5.0, 1e4], size=picks.size)
    return {"predictions": x, "targets": y}


def gaussian_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    """Means, targets and variances; extreme: variances 0, below, at and far above eps (the clamp,
    through which the variance's gradient passes), residuals from 1e-3 to 1e3."""
    y = rng.normal(0.0, 2.0, shape)
    r = rng.normal(0.0, 1.5, shape)
    var = rng.lognormal(0.0, 1.0, shape)
    if kind == "extreme":
        flat_r, flat_v = r.reshape(-1), var.reshape(-1)
        picks = rng.permutation(flat_v.size)[: flat_v.size // 2]
        flat_v[picks] = rng.choice([0.0, 1e-8, 1e-6, 1e-3, 1e4], size=picks.size)
        flat_r[picks] = rng.choice([1e3, -1e3, 0.5, 1e-3, -2.0], size=picks.size)
    return {"predictions": y + r, "targets": y, "variance": var}


def binary_targets(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    y = rng.integers(0, 2, shape).astype(np.float64)
    soft = rng.random(shape) < 0.2
    y[soft] = rng.uniform(0.05, 0.95, int(soft.sum()))
    return y


def binary_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    logits = params.get("from_logits", False)
    if kind == "random":
        x = rng.normal(0.0, 3.0, shape) if logits else rng.uniform(0.02, 0.98, shape)
        return {"predictions": x, "targets": binary_targets(shape, rng)}
    y = rng.integers(0, 2, shape).astype(np.float64)
    if kind == "confident":
        # every element classified correctly and confidently: the loss is made only of
        # log(1 + tiny) and log(1 - tiny) terms, where float32 needs log1p-quality forms
        if logits:
            return {"predictions": (2 * y - 1) * rng.uniform(4.0, 15.0, shape), "targets": y}
        tiny = 10.0 ** rng.uniform(-5.0, -2.0, shape)
        return {"predictions": y * (1 - tiny) + (1 - y) * tiny, "targets": y}
    if logits:
        # torchvision's focal gradient is non-finite for gamma < 1 at exact saturation
        # (1 - p_t rounds to 0 in float64 beyond |x| ~ 37): stay at +-30 there.
        big = 30.0 if params.get("gamma", 2.0) < 1 else 40.0
        values = [-big, -20.0, -5.0, 0.0, 0.5, 5.0, 20.0, big]
    else:
        values = [0.0, 1e-9, 1e-4, 0.3, 1 - 1e-4, 1 - 1e-9, 1.0]
    return {"predictions": rng.choice(values, size=shape), "targets": y}


def categorical_predictions(kind: str, shape: tuple[int, ...], rng: np.random.Generator, logits: bool) -> np.ndarray:
    classes = shape[-1]
    if kind == "random":
        if logits:
            return rng.normal(0.0, 2.0, shape)
        rows = rng.dirichlet(np.ones(classes), size=shape[:-1]) * rng.uniform(0.8, 1.0, (*shape[:-1], 1))
        return np.clip(rows, 0.01, None)
    if logits:
        x = rng.normal(0.0, 2.0, shape)
        flat = x.reshape(-1, classes)
        for row in flat:
            cols = rng.permutation(classes)
            row[cols[0]] = 40.0
            row[cols[1]] = -40.0
        return x
    values = [0.0, 1e-9, 1e-4, 0.3, 1 - 1e-4, 1 - 1e-9]
    p = rng.choice(values, size=shape)
    flat = p.reshape(-1, classes)
    for row in flat:
        row[rng.integers(classes)] = rng.choice([1 - 1e-9, 1 - 1e-4, 0.3])
    return p


def categorical_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    classes = shape[-1]
    x = categorical_predictions(kind, shape, rng, params.get("from_logits", False))
    y = rng.dirichlet(np.ones(classes) * 0.7, size=shape[:-1])
    hard = rng.random(shape[:-1]) < 0.5
    y[hard] = np.eye(classes)[rng.integers(0, classes, int(hard.sum()))]
    if kind == "extreme":  # one-hot on the largest and on the smallest prediction
        flat_x, flat_y = x.reshape(-1, classes), y.reshape(-1, classes)
        for i in range(flat_x.shape[0]):
            pick = np.argmax(flat_x[i]) if i % 2 == 0 else np.argmin(flat_x[i])
            flat_y[i] = np.eye(classes)[pick]
    return {"predictions": x, "targets": y}


def sparse_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    classes = shape[-1]
    x = categorical_predictions(kind, shape, rng, params.get("from_logits", False))
    labels = rng.integers(0, classes, shape[:-1])
    ignore = params.get("ignore_index", -100)
    flat = labels.reshape(-1)
    # some ignored labels (when ignore_index is a real class, its labels are dropped)
    flat[[2] if flat.size <= 4 else [2, flat.size - 1]] = ignore
    if kind == "extreme":
        fx = x.reshape(-1, classes)
        for i in range(flat.size):
            if flat[i] != ignore:
                flat[i] = np.argmax(fx[i]) if i % 2 == 0 else np.argmin(fx[i])
    return {"predictions": x, "targets": labels}


def log_probability_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    """NLL inputs: log_softmax rows (random), near-certain and near-impossible classes (extreme),
    or arbitrary reals (the loss accepts any finite input)."""
    data = sparse_data("random", shape, rng, {"from_logits": True, **params})
    x = data["predictions"]
    if kind == "reals":
        data["predictions"] = rng.normal(0.0, 5.0, shape)
        return data
    if kind == "extreme":
        x = x * 20.0
    data["predictions"] = (
        x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)
    )
    return data


def distribution_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    """KL: predictions (probabilities, not renormalised, or logits) and target distributions;
    extreme: zero and sub-eps targets, predictions at 0, 1e-9 and 1."""
    classes = shape[-1]
    logits = params.get("from_logits", False)
    y = rng.dirichlet(np.ones(classes), size=shape[:-1])
    if kind == "random":
        x = (
            rng.normal(0.0, 2.0, shape)
            if logits
            else np.clip(rng.dirichlet(np.ones(classes), size=shape[:-1]), 1e-3, 1)
        )
        return {"predictions": x, "targets": y}
    flat = y.reshape(-1, classes)
    for i, row in enumerate(flat):
        if i % 3 == 0:
            row[:] = np.eye(classes)[rng.integers(classes)]
        elif i % 3 == 1:
            row[rng.integers(classes)] = 1e-9
            row /= row.sum()
    if logits:
        x = rng.normal(0.0, 2.0, shape)
        x.reshape(-1, classes)[:, 0] = 40.0
        x.reshape(-1, classes)[:, 1] = -40.0
    else:
        x = rng.choice([0.0, 1e-9, 1e-4, 0.3, 0.9, 1.0], size=shape)
    return {"predictions": x, "targets": y}


def focal_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    """categorical_data, with extreme logits kept at +-30 for gamma < 1 (the reference's
    gamma q^(gamma-1) needs q > 0 in float64) and no exactly-zero probability rows."""
    data = categorical_data(kind, shape, rng, params)
    if kind == "extreme" and params.get("from_logits") and params.get("gamma", 2.0) < 1:
        data["predictions"] = np.clip(data["predictions"], -30.0, 30.0)
    return data


def signed_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    """Hinge: -1/1 labels; 0/1 labels (Keras converts them); mixed -1/0/1 (left unchanged); and
    scores exactly at the margin y x = 1 and far beyond it."""
    x = rng.normal(0.0, 2.0, shape)
    if kind == "binary":
        return {"predictions": x, "targets": rng.integers(0, 2, shape).astype(np.float64)}
    if kind == "mixed":
        y = rng.choice([-1.0, 0.0, 1.0], size=shape)
        y.reshape(-1)[:3] = [-1.0, 0.0, 1.0]
        return {"predictions": x, "targets": y}
    y = rng.choice([-1.0, 1.0], size=shape)
    if kind == "margin":
        picks = rng.random(shape)
        x = np.where(picks < 0.3, y, x)  # y x = 1 exactly: the kink
        x = np.where(picks > 0.85, rng.choice([-1e3, 1e3], size=shape), x)
    return {"predictions": x, "targets": y}


def one_hot_scores_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    """Categorical hinge: one-hot (or soft) targets; 'floor': every other score negative, so Keras's
    max is the true class's 0; 'margin': the loss exactly at its kink (max other - true + 1 = 0)."""
    classes = shape[-1]
    rows = int(np.prod(shape[:-1]))
    labels = rng.integers(0, classes, rows)
    y = np.eye(classes)[labels]
    x = rng.normal(0.0, 2.0, (rows, classes))
    if kind == "soft":
        y = rng.dirichlet(np.ones(classes), size=rows)
    elif kind == "floor":
        x = -np.abs(x) - 0.1
        x[np.arange(rows), labels] = rng.uniform(-1.0, 2.0, rows)
    elif kind == "margin":
        x = rng.choice([-1.0, -0.5, 0.5], size=(rows, classes))
        x[np.arange(rows), labels] = 1.5  # others' max 0.5 (or the floor 0) -> slack 0 (or -0.5)
        x[0, (labels[0] + 1) % classes] = 0.5
    return {"predictions": x.reshape(shape), "targets": y.reshape(shape)}


def margin_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    """multi_margin: (N, C) scores and labels; 'extreme': large scores and terms exactly at the
    kink (x_i - x_y = -margin)."""
    classes = shape[-1]
    labels = rng.integers(0, classes, shape[0])
    x = rng.normal(0.0, 1.5, shape)
    if kind == "extreme":
        margin = params.get("margin", 1.0)
        x = rng.choice([-1e3, 1e3, 0.0, 0.25], size=shape)
        x[np.arange(shape[0]), labels] = rng.choice([0.0, 1e3], size=shape[0])
        x[0, (labels[0] + 1) % classes] = x[0, labels[0]] - margin
    return {"predictions": x, "targets": labels}


# -- ranking ------------------------------------------------------------------------------


def torch_softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + e^x) to full float64 precision (F.softplus returns x itself above 20: 2e-9 short)."""
    return torch.logaddexp(x, torch.zeros_like(x))


def ref_contrastive(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    """TF-Addons contrastive_loss(y, D, margin) = y D^2 + (1 - y) max(margin - D, 0)^2 (its source formula;
    TF-Addons needs TensorFlow, not installable here), written independently in torch float64 on
    D = torch.linalg.vector_norm(x1 - x2) (whose gradient at D = 0 is 0)."""
    x1, x2, y = t["x1"], t["x2"], t["targets"]
    m = c.f("margin", 1.0)
    d = torch.linalg.vector_norm(x1 - x2, dim=-1)
    out = y * d.square() + (1 - y) * torch.clamp_min(m - d, 0).square()
    paper = (1 - (1 - y)) * 0.5 * d.square() + (1 - y) * 0.5 * torch.clamp_min(m - d, 0).square()
    c.check("Hadsell et al. 2006 with Y = 1 - targets, times 2", 2 * paper, out)
    return out.unsqueeze(-1), None


def triplet_distance(p: float, eps: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda u, v: F.pairwise_distance(u, v, p=p, eps=eps)


def ref_triplet(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    a, p, n = t["anchor"], t["positive"], t["negative"]
    margin, swap = c.f("margin", 1.0), bool(c.params.get("swap", False))
    if c.params.get("squared", False):
        out = F.triplet_margin_with_distance_loss(
            a, p, n, distance_function=lambda u, v: (u - v).pow(2).sum(-1), margin=margin, swap=swap, reduction="none"
        )
        ap, an = (a - p).pow(2).sum(-1), (a - n).pow(2).sum(-1)
        if swap:
            an = torch.minimum(an, (p - n).pow(2).sum(-1))
        c.check("FaceNet max(||a-p||^2 - ||a-n||^2 + margin, 0)", torch.clamp_min(ap - an + margin, 0), out)
        return out.unsqueeze(-1), None
    order, eps = c.f("p", 2.0), c.f("eps", 1e-6)
    out = F.triplet_margin_loss(a, p, n, margin=margin, p=order, eps=eps, swap=swap, reduction="none")
    c.check(
        "torch.nn.TripletMarginLoss(margin, p, eps, swap)(reduction='mean') = our unweighted mean",
        torch.nn.TripletMarginLoss(margin=margin, p=order, eps=eps, swap=swap)(a, p, n).reshape(1),
        out.mean().reshape(1),
    )
    d = triplet_distance(order, eps)
    an = torch.minimum(d(a, n), d(p, n)) if swap else d(a, n)
    c.check("max(margin + ||a-p+eps||_p - ||a-n+eps||_p, 0)", torch.clamp_min(margin + d(a, p) - an, 0), out)
    return out.unsqueeze(-1), None


def ref_cosine_embedding(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x1, x2, y = t["x1"], t["x2"], t["targets"]
    margin = c.f("margin", 0.0)
    out = F.cosine_embedding_loss(x1, x2, y, margin=margin, reduction="none")
    eps = float(np.float32(1e-12))  # torch's EPSILON is a float32 constant, also for float64 inputs
    cos = (x1 * x2).sum(-1) / torch.sqrt(((x1 * x1).sum(-1) + eps) * ((x2 * x2).sum(-1) + eps))
    formula = torch.where(y > 0, 1 - cos, torch.clamp_min(cos - margin, 0))
    c.check("formula with torch's float32 EPSILON 9.99999996e-13", formula, out)
    return out.unsqueeze(-1), None


def ref_margin_ranking(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    x1, x2, y = t["x1"], t["x2"], t["targets"]
    margin = c.f("margin", 0.0)
    out = F.margin_ranking_loss(x1, x2, y, margin=margin, reduction="none")
    c.check(
        "torch.nn.MarginRankingLoss(margin)(reduction='mean') = our unweighted mean",
        torch.nn.MarginRankingLoss(margin=margin)(x1, x2, y).reshape(1),
        out.mean().reshape(1),
    )
    return out.unsqueeze(-1), None


def unit_rows(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    v = rng.normal(size=shape)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def contrastive_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    n, _ = shape
    margin = params.get("margin", 1.0)
    x1 = rng.normal(0.0, 1.0, shape)
    distance = rng.uniform(0.05, 2.0 * max(margin, 0.5), n)
    targets = (np.arange(n) % 2).astype(np.float64)
    rng.shuffle(targets)
    if kind == "extreme":
        # identical pairs (D = 0, where the hinge's direction is undefined) of both kinds; far pairs
        distance[:2] = 0.0
        targets[:2] = [0.0, 1.0]
        distance[2] = 1e3
        x1[3:] *= 1e3
    x2 = x1 + distance[:, None] * unit_rows(rng, shape)
    x2[distance == 0] = x1[distance == 0]
    return {"x1": x1, "x2": x2, "targets": targets}


def triplet_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    n, _ = shape
    anchor = rng.normal(0.0, 1.0, shape)
    if kind == "normalized":  # FaceNet: unit-length embeddings
        anchor = unit_rows(rng, shape)
        positive, negative = unit_rows(rng, shape), unit_rows(rng, shape)
        return {"anchor": anchor, "positive": positive, "negative": negative}
    positive = anchor + rng.uniform(0.2, 1.5, (n, 1)) * unit_rows(rng, shape)
    negative = anchor + rng.uniform(0.2, 2.5, (n, 1)) * unit_rows(rng, shape)
    if kind == "extreme":
        positive[0] = anchor[0]  # zero difference: d = ||eps||; with swap, d(a,n) = d(p,n): a tie
        negative[0] = anchor[0] + 0.3 * unit_rows(rng, (1, shape[1]))[0]  # close enough to be active
        negative[1] = anchor[1]
        scale = 1e3
        anchor[2:], positive[2:] = anchor[2:] * scale, positive[2:] * scale
        negative[2:] = negative[2:] * scale
    return {"anchor": anchor, "positive": positive, "negative": negative}


def cosine_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    n = shape[0]
    x1 = rng.normal(0.0, 1.0, shape)
    x2 = 0.6 * x1 + rng.normal(0.0, 1.0, shape) * rng.uniform(0.3, 1.5, (n, 1))
    targets = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    rng.shuffle(targets)
    if kind == "extreme":
        x1[0], x2[0] = 0.0, 0.0  # orthogonal pair, dissimilar: cos = 0 is the hinge's edge at margin 0
        x1[0, 0], x2[0, 1], targets[0] = 2.0, 3.0, -1.0
        x1[1] = 0.0  # a zero vector: cos = 0 thanks to the 1e-12 terms
        x1[2] *= 1e-7  # tiny: the 1e-12 terms matter
        x2[2] *= 1e-7
        x1[3:] *= 1e4
        targets[1:3] = [1.0, 1.0]
    return {"x1": x1, "x2": x2, "targets": targets}


def margin_ranking_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    margin = params.get("margin", 0.0)
    x2 = rng.normal(0.0, 2.0, shape)
    gap = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 3.0, shape)
    targets = rng.choice([-1.0, 1.0], size=shape)
    x1 = x2 + gap
    if kind == "extreme":
        x1[:2] = x2[:2] + margin * targets[:2]  # loss exactly 0 at the hinge's edge (the gradient passes)
        x1[2:4] = x2[2:4] * 1e4
        x2[2:4] = -x1[2:4]
    else:  # stay off the hinge's edge
        z = margin - targets * (x1 - x2)
        x1[np.abs(z) < 0.05] += 0.2
    return {"x1": x1, "x2": x2, "targets": targets}


# -- generative ---------------------------------------------------------------------------


def batch(value: torch.Tensor) -> torch.Tensor:
    """A batch-level loss as the (1, 1) element the kernel returns."""
    return value.reshape(1, 1)


def ref_wasserstein(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    r, f = t["real_scores"], t["fake_scores"]
    if c.params.get("mode", "critic") == "critic":
        return batch(f.mean() - r.mean()), None
    return batch(-f.mean() + 0 * r.sum()), None


def tf_sigmoid_cross_entropy(labels: float, logits: torch.Tensor) -> torch.Tensor:
    """tf.nn.sigmoid_cross_entropy_with_logits' own form: max(x, 0) - x z + log(1 + exp(-|x|))."""
    return torch.clamp_min(logits, 0) - logits * labels + torch.log1p(torch.exp(-logits.abs()))


def ref_adversarial(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    """TF-GAN losses_impl.py formulas (label_smoothing=0, unit weights, each term averaged before the sum),
    written independently in torch float64 (TF-GAN needs TensorFlow, not installable here)."""
    r, f = t["real_logits"], t["fake_logits"]
    formulation = c.params.get("formulation", "non_saturating")
    zero = 0 * r.sum()  # the real logits take part (with a zero gradient) in generator losses
    if c.params.get("mode", "discriminator") == "discriminator":
        if formulation in ("non_saturating", "minimax"):
            value = torch_softplus(-r).mean() + torch_softplus(f).mean()
            tf = tf_sigmoid_cross_entropy(1.0, r).mean() + tf_sigmoid_cross_entropy(0.0, f).mean()
            c.check("TF-GAN minimax_discriminator_loss(label_smoothing=0) in TensorFlow's form", tf, value)
        elif formulation == "hinge":
            value = F.relu(1 - r).mean() + F.relu(1 + f).mean()
        else:
            value = 0.5 * (r - 1).square().mean() + 0.5 * f.square().mean()
        return batch(value), None
    if formulation == "non_saturating":
        value = torch_softplus(-f).mean()
    elif formulation == "minimax":
        value = -torch_softplus(f).mean()
        # TF-GAN's minimax_generator_loss negates its discriminator loss on placeholder real logits of 1
        one = torch.ones(1, dtype=F64)
        tf = -(tf_sigmoid_cross_entropy(1.0, one).mean() + tf_sigmoid_cross_entropy(0.0, f).mean())
        c.check("TF-GAN minimax_generator_loss literally = ours - softplus(-1)", tf, value - torch_softplus(-one)[0])
    elif formulation == "hinge":
        value = -f.mean()
    else:
        value = 0.5 * (f - 1).square().mean()
    return batch(value + zero), None


def scores_data(suffix: str) -> Callable[..., dict]:
    """Real and fake batches (N, M) of critic scores or discriminator logits."""

    def make(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
        n, m = shape
        real, fake = rng.normal(1.0, 2.0, n), rng.normal(-1.0, 2.0, m)
        if params.get("formulation") == "hinge":  # off the kinks at real = 1, fake = -1
            real[np.abs(real - 1) < 0.05] += 0.2
            fake[np.abs(fake + 1) < 0.05] -= 0.2
        if kind == "extreme":
            if params.get("formulation") == "hinge":
                real[0], fake[0] = 1.0, -1.0  # exactly at the kinks: relu's derivative is 0 there
            real[1], fake[1] = 40.0, -40.0  # saturated logits
            real[-1], fake[-1] = -1e3, 1e3
        return {f"real_{suffix}": real, f"fake_{suffix}": fake}

    return make


def ref_earth_movers(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    """Per sample scipy.stats.wasserstein_distance(bins, bins, u_weights, v_weights) on bins 0..K-1 (p=1),
    scipy.stats.energy_distance(...)^2 / 2 = sum (CDF difference)^2 (p=2); gradients by torch autograd of
    the same sums of CDF differences (cumsum of the normalised rows), checked against scipy's values."""
    x, y = t["predictions"], t["targets"]
    gaps = torch.cumsum(x / x.sum(-1, keepdim=True) - y / y.sum(-1, keepdim=True), -1)[:, :-1]
    p = c.params.get("p", 1)
    out = gaps.abs().sum(-1) if p == 1 else gaps.square().sum(-1)
    bins = np.arange(x.shape[-1])
    u, v = x.detach().numpy(), y.detach().numpy()
    if p == 1:
        theirs = [scipy.stats.wasserstein_distance(bins, bins, u[i], v[i]) for i in range(len(u))]
        what = "scipy.stats.wasserstein_distance(bins, bins, u_weights, v_weights)"
    else:
        theirs = [scipy.stats.energy_distance(bins, bins, u[i], v[i]) ** 2 / 2 for i in range(len(u))]
        what = "scipy.stats.energy_distance(bins, bins, u_weights, v_weights)^2 / 2"
    c.check(what, out, torch.tensor(theirs, dtype=F64), rtol=1e-12)
    return out.unsqueeze(-1), None


def distributions_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    n, k = shape
    predictions = rng.dirichlet(np.ones(k), size=n)
    predictions[0] *= 0.7  # an unnormalised row: scipy (and the kernel) divide by its sum
    targets = rng.dirichlet(np.ones(k) * 0.5, size=n)
    targets[1] = np.eye(k)[rng.integers(k)]
    if kind == "extreme":
        predictions[0] = targets[0]  # identical rows: every CDF difference is exactly 0
        predictions[1] = np.eye(k)[0]  # point masses at opposite ends
        targets[1] = np.eye(k)[k - 1]
        predictions[2] = 0.0  # equal prefixes (exact in binary): some differences exactly 0
        predictions[2, :2], predictions[2, -1] = [0.25, 0.25], 0.5
        targets[2] = 0.0
        targets[2, :2], targets[2, 3] = [0.25, 0.25], 0.5
    return {"predictions": predictions, "targets": targets}


def ctc_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
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


def mask_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    """Channel-first probability maps (or logits) and masks: one-hot over the channels for softmax,
    independent binary masks otherwise, a few soft target values. ``extreme``: saturated predictions,
    a class absent from a sample's target, and a sample predicted perfectly."""
    activation = params.get("activation", "none")
    n, ch = shape[:2]
    if activation == "softmax":
        y = np.moveaxis(np.eye(ch)[rng.integers(0, ch, (n, *shape[2:]))], -1, 1)
    else:
        y = (rng.random(shape) < 0.4).astype(np.float64)
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
    x = rng.choice(values, size=shape)
    if activation != "none":
        x.reshape(n, ch, -1)[:, :, 0] = 0.0  # one unsaturated pixel per sample sets the gradient's scale
    y[0, -1] = 0.0  # a class absent from sample 0's target
    if activation == "none":
        x[-1] = y[-1]  # the last sample predicted perfectly: loss 0
    return {"predictions": x, "targets": y}


def image_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> dict:
    """Images in [0, data_range]: a smooth target and a noisy prediction; ``extreme``: a flat target patch
    (zero variance), an identical prediction, an inverted one (negative SSIM) and saturated pixels."""
    scale = params.get("data_range", 1.0)
    n, ch, h, w = shape
    u, v = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    base = 0.3 + 0.4 * (u * rng.uniform(0.2, 1.0, (n, ch, 1, 1)) + v * rng.uniform(0.0, 0.5, (n, ch, 1, 1))) / 1.5
    target = np.clip(base + rng.normal(0.0, 0.08, shape), 0.0, 1.0)
    prediction = np.clip(target + rng.normal(0.0, 0.1, shape), 0.0, 1.0)
    if kind == "extreme":
        target[0, 0] = 0.5  # flat target: its variance is 0
        prediction[0, 0, : h // 2] = rng.choice([0.0, 1.0], size=(h // 2, w))
        prediction[1] = target[1]  # identical: loss 0
        if ch > 1:
            prediction[0, 1] = 1.0 - target[0, 1]  # inverted: negative correlation
    return {"predictions": prediction * scale, "targets": target * scale}


# -- the catalogue of cases ---------------------------------------------------------------

ONE = ("random",)
BOTH = ("random", "extreme")
ALL = ("random", "extreme", "confident")


def combos(*items: tuple[dict[str, Any], tuple[str, ...]]) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    return list(items)


PER_CHANNEL = (
    "inputs (N, C, ...) channel-first; the reference gives one loss per (sample, kept channel); per_sample = their "
    "mean over the channels; mean = sum(w*l)/sum(w); sum = sum(w*l); none = per_sample, gradients of "
    "per_sample.sum(). Reference evaluated in float64 on inputs (and float params) rounded to the case dtype; see "
    "the script's docstring."
)
MASK_SHAPES: dict[str, tuple[int, ...]] = {"1d": (3, 2, 5), "2d": (2, 3, 2, 3)}
OVERLAP_COMBOS = (
    ({}, BOTH),
    ({"activation": "sigmoid"}, BOTH),
    ({"activation": "softmax"}, BOTH),
    ({"include_background": False}, BOTH),
    ({"activation": "sigmoid", "include_background": False}, ONE),
    ({"activation": "softmax", "include_background": False}, BOTH),
    ({"smooth_nr": 0.0, "smooth_dr": 1e-6}, BOTH),
    ({"smooth_nr": 1.0, "smooth_dr": 1.0, "activation": "sigmoid"}, ONE),
)
SQUARED_COMBOS = (
    ({"squared_pred": True, "include_background": False}, ONE),
    ({"squared_pred": True, "activation": "sigmoid"}, ONE),
    ({"squared_pred": True, "activation": "sigmoid", "include_background": False}, ONE),
    ({"squared_pred": True, "activation": "softmax"}, BOTH),
    ({"squared_pred": True, "activation": "softmax", "include_background": False}, ONE),
)

# -- composites ---------------------------------------------------------------------------

COMPOSITE = (
    "a weighted sum of catalog losses (weights 1, default params): the reference returns one element per sample, "
    "the sum of the terms' per-sample losses (each its own mean over its elements or channels), so mean = "
    "sum(w*l)/sum(w), sum = sum(w*l) and none = per_sample are the sums of the terms'. Reference evaluated in "
    "float64 on inputs rounded to the case dtype; see the script's docstring."
)


def per_sample_sum(*elements: torch.Tensor) -> torch.Tensor:
    """Terms' element losses as one (N, 1) element: the sum of their per-sample means."""
    n = elements[0].shape[0]
    return sum(e.reshape(n, -1).mean(1) for e in elements).reshape(n, 1)  # type: ignore[union-attr]


def ref_dice_bce(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    dice, _ = ref_dice(t, Ctx(c.dtype, {}, c.checks))
    bce, _ = ref_bce(t, Ctx(c.dtype, {}, c.checks))
    return per_sample_sum(dice, bce), None


def ref_focal_dice(t: Tensors, c: Ctx) -> tuple[torch.Tensor, None]:
    focal, _ = ref_focal(t, Ctx(c.dtype, {}, c.checks))
    dice, _ = ref_dice(t, Ctx(c.dtype, {}, c.checks))
    return per_sample_sum(focal, dice), None


LOSSES: dict[str, dict[str, Any]] = {
    "mse": {
        "reference": ref_mse,
        "data": regression_data,
        "describe": lambda p: "torch.nn.functional.mse_loss(reduction='none')",
        "combos": combos(({}, BOTH)),
    },
    "mae": {
        "reference": ref_mae,
        "data": regression_data,
        "describe": lambda p: "torch.nn.functional.l1_loss(reduction='none')",
        "combos": combos(({}, BOTH)),
    },
    "huber": {
        "reference": ref_huber,
        "data": regression_data,
        "describe": lambda p: "torch.nn.functional.huber_loss(reduction='none', delta)",
        "combos": combos(({}, BOTH), ({"delta": 0.35}, BOTH), ({"delta": 2.5}, ONE)),
    },
    "log_cosh": {
        "reference": ref_log_cosh,
        "data": regression_data,
        "describe": lambda p: (
            "formula log(cosh(d)) in torch float64 (log1p(2 sinh(d/2)^2) for |d| < 1, "
            "|d| + log1p(exp(-2|d|)) - log 2 beyond), cross-checked against keras.losses.log_cosh at 1e-6: Keras 3 on "
            "the torch backend computes its last-axis mean in float32, so it cannot serve as a float64 golden"
        ),
        "combos": combos(({}, BOTH)),
    },
    "smooth_l1": {
        "reference": ref_smooth_l1,
        "data": regression_data,
        "describe": lambda p: "torch.nn.functional.smooth_l1_loss(reduction='none', beta)",
        "combos": combos(({}, BOTH), ({"beta": 0.35}, BOTH), ({"beta": 2.5}, ONE), ({"beta": 0.0}, BOTH)),
    },
    "msle": {
        "reference": ref_msle,
        "data": msle_data,
        "describe": lambda p: (
            "formula of keras.losses.mean_squared_logarithmic_error, (log1p(max(x, eps)) - log1p(max(y, eps)))^2 "
            "with eps = 1e-7 in the case dtype, torch float64; cross-checked against Keras at 1e-6 where the loss is "
            "not tiny (Keras 3 converts this loss's epsilon without a dtype, and on the torch backend maximum(float64, "
            "float32 epsilon) is float32: Keras computes float64 inputs in float32, so it cannot serve as a golden)"
        ),
        "combos": combos(({}, ("random", "extreme", "close"))),
    },
    "mape": {
        "reference": ref_mape,
        "data": mape_data,
        "describe": lambda p: (
            "formula of keras.losses.mean_absolute_percentage_error, 100 |y - x| / max(|y|, eps) with eps = 1e-7 in "
            "the case dtype, torch float64; cross-checked against Keras at 1e-6 (its last-axis mean runs in float32 "
            "on the torch backend)"
        ),
        "combos": combos(({}, BOTH)),
    },
    "poisson_nll": {
        "reference": ref_poisson,
        "data": poisson_data,
        "describe": lambda p: "torch.nn.functional.poisson_nll_loss(log_input, full, eps, reduction='none')",
        "combos": combos(
            ({}, BOTH),
            ({"full": True}, BOTH),
            ({"log_input": False}, BOTH),
            ({"log_input": False, "full": True}, ONE),
            ({"log_input": False, "eps": 1e-7}, ONE),
            ({"log_input": False, "eps": 1e-3}, ONE),
        ),
    },
    "gaussian_nll": {
        "reference": ref_gaussian_nll,
        "gradients": ("variance",),
        "data": gaussian_data,
        "describe": lambda p: (
            "torch.nn.functional.gaussian_nll_loss(full, eps, reduction='none') with var of the input's shape; "
            "gradients for input and var from torch autograd (var's passes straight through the clamp)"
        ),
        "combos": combos(({}, BOTH), ({"full": True}, BOTH), ({"eps": 1e-3}, BOTH)),
    },
    "quantile": {
        "reference": ref_quantile,
        "data": regression_data,
        "describe": lambda p: (
            "independent torch float64 implementation of TF-Addons pinball_loss's documented formula, "
            "delta = y - x, max(tau delta, (tau - 1) delta) (TF-Addons needs TensorFlow, not installable here); "
            "checked against its docstring example (0.475)"
        ),
        "combos": combos(({}, BOTH), ({"quantile": 0.1}, BOTH), ({"quantile": 0.9}, ONE), ({"quantile": 0.25}, ONE)),
    },
    "binary_cross_entropy": {
        "reference": ref_bce,
        "data": binary_data,
        "describe": lambda p: (
            "torch.nn.functional.binary_cross_entropy_with_logits(pos_weight, reduction='none') on targets "
            "smoothed y(1-s)+s/2"
            if p.get("from_logits")
            else (
                "torch.nn.functional.binary_cross_entropy(clamp(p, eps, 1-eps), reduction='none')"
                if p.get("pos_weight") is None
                else "formula -(pos_weight y log c + (1-y) log(1-c)), c = clamp(p, eps, 1-eps), torch float64"
            )
            + " on targets smoothed y(1-s)+s/2 (Keras clipping; torch BCELoss itself caps log at -100 instead)"
        ),
        "combos": combos(
            ({"from_logits": True}, ALL),
            ({"from_logits": True, "pos_weight": 2.5}, BOTH),
            ({"from_logits": True, "pos_weight": "per_class"}, ONE),
            ({"from_logits": True, "label_smoothing": 0.1}, BOTH),
            ({"from_logits": True, "pos_weight": "per_class", "label_smoothing": 0.2}, ONE),
            ({}, ALL),
            ({"pos_weight": 2.5}, BOTH),
            ({"pos_weight": "per_class"}, ONE),
            ({"label_smoothing": 0.1}, BOTH),
            ({"pos_weight": 0.5, "label_smoothing": 0.2}, ONE),
            ({"eps": 1e-3}, BOTH),
        ),
    },
    "cross_entropy": {
        "reference": ref_cross_entropy,
        "data": categorical_data,
        "describe": lambda p: (
            "torch.nn.functional.cross_entropy(probability targets, weight, label_smoothing, reduction='none'), "
            "class axis moved to dim 1"
            if p.get("from_logits")
            else (
                "keras.losses.categorical_crossentropy(label_smoothing) (renormalise + clip; Keras 3 torch backend, "
                "run in the case dtype)"
                if p.get("class_weights") is None
                else "formula -sum_c w_c (y_c(1-s)+s/C) log clip(p_c/sum p), torch float64 "
                "(kernels/classification.py; Keras has no class weights)"
            )
        ),
        "combos": combos(
            ({"from_logits": True}, BOTH),
            ({"from_logits": True, "label_smoothing": 0.1}, ONE),
            ({"from_logits": True, "class_weights": "per_class"}, BOTH),
            ({"from_logits": True, "class_weights": "per_class", "label_smoothing": 0.2}, ONE),
            ({}, BOTH),
            ({"label_smoothing": 0.1}, ONE),
            ({"class_weights": "per_class"}, BOTH),
            ({"class_weights": "per_class", "label_smoothing": 0.2}, ONE),
            ({"eps": 1e-3}, BOTH),
        ),
    },
    "sparse_cross_entropy": {
        "reference": ref_sparse,
        "data": sparse_data,
        "describe": lambda p: (
            "torch.nn.functional.cross_entropy(index targets, weight, ignore_index, label_smoothing, "
            "reduction='none'), class axis moved to dim 1; mass = weight[label] (0 where ignored)"
            if p.get("from_logits")
            else (
                "keras.losses.sparse_categorical_crossentropy(ignore_class) (renormalise + clip; Keras 3 torch "
                "backend, run in the case dtype); mass = 1 (0 where ignored)"
                if p.get("class_weights") is None and not p.get("label_smoothing")
                else "formula -sum_c w_c keep ((1-s) onehot_c + s/C) log clip(p_c/sum p), torch float64 "
                "(torch's weighting and smoothing conventions on Keras-clipped probabilities; Keras has neither); "
                "mass = weight[label] (0 where ignored)"
            )
        ),
        "combos": combos(
            ({"from_logits": True}, BOTH),
            ({"from_logits": True, "class_weights": "per_class"}, BOTH),
            ({"from_logits": True, "label_smoothing": 0.1}, ONE),
            ({"from_logits": True, "class_weights": "per_class", "label_smoothing": 0.1}, ONE),
            ({"from_logits": True, "ignore_index": -1}, ONE),
            ({"from_logits": True, "ignore_index": 2, "class_weights": "per_class", "label_smoothing": 0.2}, ONE),
            ({}, BOTH),
            ({"ignore_index": -1}, ONE),
            ({"class_weights": "per_class"}, BOTH),
            ({"label_smoothing": 0.1}, ONE),
            ({"class_weights": "per_class", "label_smoothing": 0.2, "ignore_index": 2}, ONE),
            ({"eps": 1e-3}, ONE),
        ),
    },
    "focal": {
        "reference": ref_focal,
        "data": binary_data,
        "describe": lambda p: (
            "torchvision.ops.sigmoid_focal_loss(reduction='none') source re-implemented in torch float64 "
            "(torchvision has no CPU build here) on targets smoothed y(1-s)+s/2"
            if p.get("from_logits")
            else "torchvision sigmoid_focal_loss formulas on p clamped to [eps, 1-eps] with "
            "torch.nn.functional.binary_cross_entropy, torch float64, targets smoothed y(1-s)+s/2"
        ),
        "combos": combos(
            ({"from_logits": True}, ALL),
            ({"from_logits": True, "alpha": -1.0}, BOTH),
            ({"from_logits": True, "gamma": 0.0}, BOTH),
            ({"from_logits": True, "gamma": 0.5}, ALL),
            ({"from_logits": True, "label_smoothing": 0.1}, BOTH),
            ({"from_logits": True, "alpha": 0.6, "gamma": 1.5}, ONE),
            ({}, ALL),
            ({"alpha": -1.0}, ONE),
            ({"gamma": 0.0}, ALL),
            ({"gamma": 0.5}, ALL),
            ({"label_smoothing": 0.1}, BOTH),
            ({"eps": 1e-3}, ONE),
        ),
    },
    "label_smoothing_cross_entropy": {
        "reference": ref_label_smoothing,
        "data": sparse_data,
        "describe": lambda p: (
            "torch.nn.functional.cross_entropy(index targets, label_smoothing (default 0.1), weight, ignore_index, "
            "reduction='none'), class axis moved to dim 1; mass = weight[label] (0 where ignored)"
            if p.get("from_logits")
            else (
                "keras.losses.sparse_categorical_crossentropy(ignore_class) (label_smoothing=0: renormalise + clip; "
                "run in the case dtype); mass = 1 (0 where ignored)"
                if p.get("class_weights") is None and p.get("label_smoothing", 0.1) == 0
                else "formula -sum_c w_c keep ((1-s) onehot_c + s/C) log clip(p_c/sum p), s = 0.1 by default, torch "
                "float64 (torch's smoothing and weighting on Keras-clipped probabilities; without class weights "
                "cross-checked against keras CategoricalCrossentropy(label_smoothing)); mass = weight[label] "
                "(0 where ignored)"
            )
        ),
        "combos": combos(
            ({"from_logits": True}, BOTH),
            ({"from_logits": True, "label_smoothing": 0.3, "class_weights": "per_class"}, ONE),
            ({"from_logits": True, "ignore_index": 1}, ONE),
            ({}, BOTH),
            ({"class_weights": "per_class"}, ONE),
            ({"label_smoothing": 0.0}, ONE),
            ({"from_logits": True, "label_smoothing": 0.0}, ONE),
            ({"eps": 1e-3}, ONE),
        ),
    },
    "weighted_cross_entropy": {
        "reference": ref_sparse,
        "data": sparse_data,
        "describe": lambda p: (
            "torch.nn.functional.cross_entropy(index targets, weight=class_weights, ignore_index, label_smoothing, "
            "reduction='none'), class axis moved to dim 1; mass = weight[label] (0 where ignored)"
            if p.get("from_logits")
            else "formula -sum_c w_c keep ((1-s) onehot_c + s/C) log clip(p_c/sum p), torch float64 (torch's "
            "weighting and smoothing conventions on Keras-clipped probabilities; Keras has no class weights); "
            "mass = weight[label] (0 where ignored)"
        ),
        "combos": combos(
            ({"from_logits": True, "class_weights": "per_class"}, BOTH),
            ({"from_logits": True, "class_weights": "per_class_with_zero"}, ONE),
            ({"from_logits": True, "class_weights": "per_class", "label_smoothing": 0.1}, ONE),
            ({"from_logits": True, "class_weights": "per_class", "ignore_index": 2}, ONE),
            ({"class_weights": "per_class"}, BOTH),
            ({"class_weights": "per_class_with_zero", "label_smoothing": 0.2}, ONE),
            ({"class_weights": "per_class", "eps": 1e-3}, ONE),
        ),
    },
    "nll": {
        "reference": ref_nll,
        "data": log_probability_data,
        "describe": lambda p: (
            "torch.nn.functional.nll_loss(weight, ignore_index, reduction='none'), class axis "
            "moved to dim 1; mass = weight[label] (0 where ignored)"
        ),
        "combos": combos(
            ({}, ("random", "extreme", "reals")),
            ({"class_weights": "per_class"}, ("random", "reals")),
            ({"ignore_index": 1}, ONE),
            ({"class_weights": "per_class_with_zero", "ignore_index": 0}, ONE),
        ),
    },
    "kl_divergence": {
        "reference": ref_kl,
        "data": distribution_data,
        "describe": lambda p: (
            "torch.nn.functional.kl_div(log_softmax(x), y, reduction='none') summed over the last axis (0 log 0 = 0)"
            if p.get("from_logits")
            else "keras.losses.kl_divergence formula sum y' log(y'/p'), y' = clip(y, eps, 1), p' = clip(p, eps, 1), "
            "in torch float64 with the case dtype's eps, checked against Keras run in the case dtype"
        ),
        "combos": combos(
            ({}, BOTH),
            ({"eps": 1e-3}, BOTH),
            ({"from_logits": True}, BOTH),
        ),
    },
    "categorical_focal": {
        "reference": ref_categorical_focal,
        "data": focal_data,
        "describe": lambda p: (
            "formula -sum_c alpha_c (1-p_c)^gamma y~_c log p_c with p = softmax(x) (log_softmax, and 1 - p of the "
            "dominant class as the others' share), y~ = y(1-s)+s/C, torch float64; checked against plain "
            "softmax and against keras categorical_focal_crossentropy(from_logits) where its clip does not bind"
            if p.get("from_logits")
            else "keras.losses.categorical_focal_crossentropy formula -sum_c alpha_c (1-o_c)^gamma y~_c log o_c, "
            "o = clip(p/sum p, eps, 1-eps) with the case dtype's bounds, in torch float64; checked against Keras run "
            "in the case dtype"
        ),
        "combos": combos(
            ({}, BOTH),
            ({"alpha": "per_class"}, ONE),
            ({"gamma": 0.0}, ONE),
            ({"gamma": 0.5}, BOTH),
            ({"label_smoothing": 0.1, "alpha": 1.0}, ONE),
            ({"eps": 1e-3}, ONE),
            ({"from_logits": True}, BOTH),
            ({"from_logits": True, "alpha": "per_class", "gamma": 3.0}, ONE),
            ({"from_logits": True, "gamma": 0.5}, BOTH),
            ({"from_logits": True, "label_smoothing": 0.2}, ONE),
        ),
    },
    "hinge": {
        "reference": ref_hinge,
        "data": signed_data,
        "describe": lambda p: (
            "keras.losses.hinge formula relu(1 - y x) in torch float64, labels 2y-1 only when "
            "every label is 0 or 1 (Keras's rule); relu's subgradient 0 at the margin; checked against Keras (which "
            "computes in float32 on the torch backend)"
        ),
        "combos": combos(({}, ("random", "binary", "mixed", "margin"))),
    },
    "squared_hinge": {
        "reference": ref_squared_hinge,
        "data": signed_data,
        "describe": lambda p: (
            "keras.losses.squared_hinge formula relu(1 - y x)^2 in torch float64, labels 2y-1 only "
            "when every label is 0 or 1 (Keras's rule); checked against Keras (float32 on the torch backend)"
        ),
        "combos": combos(({}, ("random", "binary", "mixed", "margin"))),
    },
    "categorical_hinge": {
        "reference": ref_categorical_hinge,
        "data": one_hot_scores_data,
        "describe": lambda p: (
            "keras.losses.categorical_hinge formula relu(max((1-y) x) - sum(y x) + 1) in torch "
            "float64 (max's gradient to its index, relu's 0 at the margin); checked against Keras (float32 on the "
            "torch backend)"
        ),
        "combos": combos(({}, ("random", "soft", "floor", "margin"))),
    },
    "multi_margin": {
        "reference": ref_multi_margin,
        "data": margin_data,
        "shapes": ("2d", "2d-wide"),
        "describe": lambda p: "torch.nn.functional.multi_margin_loss(p, margin, weight, reduction='none')",
        "combos": combos(
            ({}, BOTH),
            ({"p": 2}, BOTH),
            ({"margin": 0.5, "class_weights": "per_class"}, BOTH),
            ({"p": 2, "margin": 2.0, "class_weights": "per_class_with_zero"}, BOTH),
        ),
    },
    "contrastive": {
        "reference": ref_contrastive,
        "data": contrastive_data,
        "differentiable": ("x1", "x2"),
        "shapes": {"pairs": (6, 3), "wide": (4, 8)},
        "describe": lambda p: (
            "TF-Addons contrastive_loss formula y D^2 + (1-y) max(margin - D, 0)^2 on D = "
            "torch.linalg.vector_norm(x1 - x2, dim=-1), an independent float64 torch implementation (TF-Addons "
            "needs TensorFlow, which is not installable here); gradients by torch autograd (0 at D = 0)"
        ),
        "combos": combos(({}, BOTH), ({"margin": 2.5}, ONE), ({"margin": 0.0}, ONE)),
    },
    "triplet": {
        "reference": ref_triplet,
        "data": triplet_data,
        "differentiable": ("anchor", "positive", "negative"),
        "shapes": {"pairs": (5, 3), "wide": (3, 8)},
        "describe": lambda p: (
            "torch.nn.functional.triplet_margin_with_distance_loss(distance_function=lambda u, v: "
            "(u - v).pow(2).sum(-1), margin, swap, reduction='none')"
            if p.get("squared")
            else "torch.nn.functional.triplet_margin_loss(margin, p, eps, swap, reduction='none')"
        ),
        "combos": combos(
            ({}, BOTH),
            ({"p": 1.0}, ONE),
            ({"p": 3.0}, ONE),
            ({"swap": True}, BOTH),
            ({"p": 1.5, "eps": 1e-3, "margin": 0.5, "swap": True}, ONE),
            ({"squared": True}, BOTH),
            ({"squared": True, "swap": True, "margin": 0.2}, ("normalized", "extreme")),
        ),
    },
    "cosine_embedding": {
        "reference": ref_cosine_embedding,
        "data": cosine_data,
        "differentiable": ("x1", "x2"),
        "shapes": {"pairs": (6, 3), "wide": (4, 8)},
        "describe": lambda p: "torch.nn.functional.cosine_embedding_loss(margin, reduction='none')",
        "combos": combos(({}, BOTH), ({"margin": 0.5}, ONE), ({"margin": -0.3}, ONE)),
    },
    "margin_ranking": {
        "reference": ref_margin_ranking,
        "data": margin_ranking_data,
        "differentiable": ("x1", "x2"),
        "shapes": {"n6": (6,), "n9": (9,)},
        "describe": lambda p: "torch.nn.functional.margin_ranking_loss(margin, reduction='none')",
        "combos": combos(({}, BOTH), ({"margin": 0.5}, BOTH), ({"margin": -0.25}, ONE)),
    },
    "wasserstein": {
        "reference": ref_wasserstein,
        "data": scores_data("scores"),
        "differentiable": ("real_scores", "fake_scores"),
        "shapes": {"n5m3": (5, 3), "n3m7": (3, 7)},
        "batch_level": True,
        "describe": lambda p: (
            "WGAN formula in torch float64 with autograd: "
            + ("mean(fake) - mean(real)" if p.get("mode", "critic") == "critic" else "-mean(fake)")
            + " (tfgan.losses.wasserstein_discriminator_loss / wasserstein_generator_loss)"
        ),
        "combos": combos(({}, BOTH), ({"mode": "generator"}, BOTH)),
    },
    "adversarial": {
        "reference": ref_adversarial,
        "data": scores_data("logits"),
        "differentiable": ("real_logits", "fake_logits"),
        "shapes": {"n5m3": (5, 3), "n3m7": (3, 7)},
        "batch_level": True,
        "describe": lambda p: (
            "TF-GAN losses_impl.py formulas without label smoothing, each term averaged before the sum, as an "
            "independent float64 torch implementation with autograd (TF-GAN needs TensorFlow, which is not "
            "installable here); softplus as torch.logaddexp(x, 0)"
        ),
        "combos": combos(
            *(
                ({"formulation": formulation, "mode": mode}, BOTH)
                for formulation in ("non_saturating", "minimax", "hinge", "least_squares")
                for mode in ("discriminator", "generator")
            )
        ),
    },
    "earth_movers": {
        "reference": ref_earth_movers,
        "data": distributions_data,
        "differentiable": ("predictions",),
        "shapes": {"k6": (4, 6), "k10": (3, 10)},
        "scipy": True,
        "describe": lambda p: (
            (
                "scipy.stats.wasserstein_distance(range(K), range(K), u_weights=predictions[n], v_weights=targets[n]) "
                "per sample"
                if p.get("p", 1) == 1
                else "scipy.stats.energy_distance(range(K), range(K), predictions[n], targets[n])^2 / 2 "
                "= sum_k (CDF difference)^2, per sample"
            )
            + "; gradients by torch autograd of the sum of CDF differences of the normalised rows"
        ),
        "combos": combos(({}, BOTH), ({"p": 2}, BOTH)),
    },
    "ctc": {
        "reference": ref_ctc,
        "data": ctc_data,
        "shapes": {"short": (3, 5, 4, 2), "long": (3, 10, 6, 4)},
        "reduce": "ctc",
        "conventions": "per_sample = the reference's per-sample loss l_n; mean = sum(w*l/max(L,1))/sum(w), L the "
        "target length (torch's CTC mean when w = 1); sum = sum(w*l); none = per_sample, gradients of "
        "per_sample.sum(). Reference evaluated in float64 on inputs rounded to the case dtype; see ref_ctc.",
        "describe": lambda p: (
            (
                "torch.nn.functional.ctc_loss(log_softmax(x) time first, blank, reduction='none', zero_infinity); "
                "gradient = torch autograd through the log_softmax"
                if p.get("from_logits")
                else "torch.nn.functional.ctc_loss(log_probs time first, blank, reduction='none', zero_infinity); "
                "gradient = torch autograd minus exp(log_probs) on frames t < input_length of possible samples "
                "(torch's backward is exp(lp) - gamma; the exact derivative is -gamma), checked against autograd of "
                "an independent float64 alpha recursion"
            )
            + "; mean = sum_n w_n l_n / max(L_n, 1) / sum_n w_n (torch's 'mean' with w = 1)"
        ),
        "combos": combos(
            ({}, ("random", "extreme", "unnormalised")),
            ({"blank": 3}, ("random", "unnormalised")),
            ({"blank": 2}, ONE),
            ({"zero_infinity": True}, ("random", "impossible")),
            ({"from_logits": True}, ("random", "extreme")),
            ({"from_logits": True, "blank": 3}, ONE),
            ({"from_logits": True, "zero_infinity": True}, ("impossible",)),
            ({"from_logits": True, "zero_infinity": True, "blank": 1}, ("impossible",)),
        ),
    },
    "dice": {
        "reference": ref_dice,
        "data": mask_data,
        "shapes": MASK_SHAPES,
        "versions": {"monai": monai.__version__},
        "conventions": PER_CHANNEL,
        "describe": lambda p: (
            "monai.losses.DiceLoss(reduction='none', sigmoid/softmax, squared_pred, "
            "include_background, smooth_nr, smooth_dr): per-class losses (N, C')"
        ),
        "combos": combos(*OVERLAP_COMBOS, ({"squared_pred": True}, BOTH), *SQUARED_COMBOS),
    },
    "iou": {
        "reference": ref_iou,
        "data": mask_data,
        "shapes": MASK_SHAPES,
        "versions": {"monai": monai.__version__},
        "conventions": PER_CHANNEL,
        "describe": lambda p: (
            "monai.losses.DiceLoss(jaccard=True, reduction='none', sigmoid/softmax, squared_pred, "
            "include_background, smooth_nr, smooth_dr): per-class losses (N, C')"
        ),
        "combos": combos(*OVERLAP_COMBOS, ({"squared_pred": True}, BOTH), *SQUARED_COMBOS),
    },
    "tversky": {
        "reference": ref_tversky,
        "data": mask_data,
        "shapes": MASK_SHAPES,
        "versions": {"monai": monai.__version__},
        "conventions": PER_CHANNEL,
        "describe": lambda p: (
            "monai.losses.TverskyLoss(alpha, beta, reduction='none', sigmoid/softmax, "
            "include_background, smooth_nr, smooth_dr): per-class losses (N, C')"
        ),
        "combos": combos(
            *OVERLAP_COMBOS,
            ({"alpha": 0.3, "beta": 0.7}, BOTH),
            ({"alpha": 1.0, "beta": 1.0}, ONE),
            ({"alpha": 0.8, "beta": 0.1, "activation": "softmax", "include_background": False}, ONE),
            ({"alpha": 0.0, "beta": 2.0, "activation": "sigmoid"}, ONE),
        ),
    },
    "dice_bce": {
        "reference": ref_dice_bce,
        "data": mask_data,
        "shapes": MASK_SHAPES,
        "versions": {"monai": monai.__version__},
        "conventions": COMPOSITE,
        "describe": lambda p: (
            "monai.losses.DiceLoss(reduction='none') per-class losses averaged over the channels, plus "
            "torch.nn.functional.binary_cross_entropy on p clamped to [eps, 1-eps] averaged over the elements"
        ),
        "combos": combos(({}, BOTH)),
    },
    "focal_dice": {
        "reference": ref_focal_dice,
        "data": mask_data,
        "shapes": MASK_SHAPES,
        "versions": {"monai": monai.__version__},
        "conventions": COMPOSITE,
        "describe": lambda p: (
            "torchvision sigmoid_focal_loss formulas on p clamped to [eps, 1-eps] averaged over the elements, "
            "plus monai.losses.DiceLoss(reduction='none') per-class losses averaged over the channels"
        ),
        "combos": combos(({}, BOTH)),
    },
    "ssim": {
        "reference": ref_ssim,
        "data": image_data,
        "shapes": {"1ch": (2, 1, 11, 12), "2ch": (2, 2, 12, 11)},
        "versions": {"scikit-image": skimage.__version__, "pytorch-msssim": version("pytorch-msssim")},
        "conventions": PER_CHANNEL,
        "describe": lambda p: (
            "1 - skimage.metrics.structural_similarity(gaussian_weights=True, "
            "use_sample_covariance=False, win_size, sigma, K1, K2, data_range) per (sample, channel); gradients "
            "by torch autograd of a torch float64 re-implementation checked against skimage"
        ),
        "combos": combos(
            ({}, BOTH),
            ({"window_size": 7}, ONE),
            ({"window_size": 3, "sigma": 5.0}, ONE),
            ({"data_range": 255.0}, ONE),
            ({"window_size": 5, "sigma": 0.8, "k1": 0.05, "k2": 0.1}, ONE),
        ),
    },
}


# -- running a case -----------------------------------------------------------------------


def concrete_params(params: dict[str, Any], shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, Any]:
    """'per_class' placeholders become one value per class (last axis); 'per_class_with_zero'
    the same with a zero first class."""
    out = {}
    for key, value in params.items():
        if value in ("per_class", "per_class_with_zero"):
            out[key] = [round(float(v), 3) for v in rng.uniform(0.2, 3.0, shape[-1])]
            if value == "per_class_with_zero":
                out[key][0] = 0.0
        else:
            out[key] = value
    return out


def compact(array: np.ndarray, dtype: str, exact: bool) -> Any:
    """Inputs (exact): float32 values in their shortest float32 form. Results: float64
    repr for float64 cases, 12 significant digits for float32 cases (tolerance 1e-5)."""
    if array.dtype.kind == "i":
        return array.tolist()
    if exact and dtype == "float32":
        return np.vectorize(lambda v: float(str(np.float32(v))), otypes=[float])(array).tolist()
    if dtype == "float32":
        return np.vectorize(lambda v: float(f"{v:.12g}"), otypes=[float])(array).tolist()
    return array.tolist()


def reduce(e: torch.Tensor, m: torch.Tensor | None, w: torch.Tensor | None, reduction: str) -> torch.Tensor:
    n = e.shape[0]
    per_sample = e.double().reshape(n, -1).mean(1)
    if reduction == "none":
        return per_sample
    weights = torch.ones(n, dtype=F64) if w is None else w
    total = (weights * per_sample).sum()
    if reduction == "sum":
        return total
    if m is None:
        return total / weights.sum()
    return total / (weights * m.double().reshape(n, -1).mean(1)).sum()


def reduce_ctc(e: torch.Tensor, m: torch.Tensor | None, w: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """torch's CTC mean: each sample's loss divided by m = max(target length, 1), then the weighted mean."""
    if reduction != "mean":
        return reduce(e, None, w, reduction)
    assert m is not None
    weights = torch.ones(e.shape[0], dtype=F64) if w is None else w
    return (weights * e.double() / m.double()).sum() / weights.sum()


REDUCERS = {"api": reduce, "ctc": reduce_ctc}


def run_case(
    loss: str, entry: dict[str, Any], params_spec: dict[str, Any], kind: str, shape_name: str, dtype: str
) -> dict[str, Any]:
    shapes = entry.get("shapes", DEFAULT_SHAPES)  # names in SHAPES, or the loss's own {name: shape}
    shape = shapes[shape_name] if isinstance(shapes, dict) else SHAPES[shape_name]
    reducer = REDUCERS[entry.get("reduce", "api")]
    base = f"{loss}/{json.dumps(params_spec, sort_keys=True)}/{kind}/{shape_name}"
    rng = np.random.default_rng([SEED, zlib.crc32(base.encode())])  # same data for both dtypes
    params = concrete_params(params_spec, shape, rng)
    raw = entry["data"](kind, shape, rng, params)
    weights = rng.uniform(0.2, 2.0, shape[0])
    weights[1] = 0.0  # a zero-weight sample
    inputs: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        inputs[name] = value if value.dtype.kind == "i" else np.asarray(value, dtype=dtype).astype(np.float64)
    weights = np.asarray(weights, dtype=dtype).astype(np.float64)

    checks: list[str] = []
    reference: Reference = entry["reference"]

    others: tuple[str, ...] = entry.get("gradients", ())  # differentiable inputs besides predictions

    def forward(ctx: Ctx) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor, Tensors]:
        x64 = torch.tensor(inputs["predictions"], dtype=F64, requires_grad=True)
        xn = torch.tensor(inputs["predictions"], dtype=TORCH_DTYPE[dtype], requires_grad=True)
        tensors = {"predictions": x64, "predictions_native": xn}
        for name, value in inputs.items():
            if name != "predictions":
                tensors[name] = torch.tensor(
                    value, dtype=torch.int64 if value.dtype.kind == "i" else F64, requires_grad=name in others
                )
        e, m = reference(tensors, ctx)
        return e, m, x64, xn, tensors

    # per_sample and the cross-checks, once
    ctx = Ctx(dtype, params, checks)
    e, m, _, _, _ = forward(ctx)
    per_sample = reducer(e, m, None, "none").detach().numpy()
    results = []
    for reduction, weighted in REDUCTIONS:
        e, m, x64, xn, tensors = forward(Ctx(dtype, params, []))
        w = torch.tensor(weights, dtype=F64) if weighted else None
        value = reducer(e, m, w, reduction)
        target = value.sum() if reduction == "none" else value
        target.backward()
        grads = [g for g in (x64.grad, xn.grad) if g is not None]
        assert len(grads) == 1, "the reference must use exactly one of predictions / predictions_native"
        gradients = {"predictions": grads[0].double().numpy()}
        for name in others:
            other = tensors[name].grad
            assert other is not None, f"the reference must use {name}"
            gradients[name] = other.double().numpy()
        out = value.detach().numpy()
        for name, arr in (("loss", out), *gradients.items()):
            if not np.all(np.isfinite(arr)):
                raise AssertionError(f"{base} {dtype} {reduction}: reference {name} is not finite: {arr}")
        results.append(
            {
                "reduction": reduction,
                "weighted": weighted,
                "loss": compact(out, dtype, False),
                "gradients": {name: compact(grad, dtype, False) for name, grad in gradients.items()},
            }
        )
    param_text = ",".join(f"{k}={str(v).lower()}" for k, v in params_spec.items()) or "defaults"
    return {
        "id": f"{param_text}/{kind}/{shape_name}/{dtype}",
        "params": params,
        "dtype": dtype,
        "data": kind,
        "shape": list(inputs["predictions"].shape),
        "reference": entry["describe"](params),
        "checks": sorted(set(checks)),
        "inputs": {name: compact(value, dtype, True) for name, value in inputs.items()},
        "weights": compact(weights, dtype, True),
        "per_sample": compact(per_sample, dtype, False),
        "results": results,
    }


def run_general_case(
    loss: str, entry: dict[str, Any], params_spec: dict[str, Any], kind: str, shape_name: str, dtype: str
) -> dict[str, Any]:
    """As run_case, for losses declared with fixed shapes (entry["shapes"]) and any differentiable inputs
    (entry["differentiable"]), each a float64 leaf the reference's autograd differentiates. Batch-level
    losses (entry["batch_level"]: one value for the whole batch) have no sample weights."""
    shape = entry["shapes"][shape_name]
    base = f"{loss}/{json.dumps(params_spec, sort_keys=True)}/{kind}/{shape_name}"
    rng = np.random.default_rng([SEED, zlib.crc32(base.encode())])  # same data for both dtypes
    params = concrete_params(params_spec, shape, rng)
    raw = entry["data"](kind, shape, rng, params)
    batch_level = entry.get("batch_level", False)
    inputs = {name: np.asarray(value, dtype=dtype).astype(np.float64) for name, value in raw.items()}
    first = next(iter(inputs.values()))
    weights = None
    if not batch_level:
        weights = np.asarray(rng.uniform(0.2, 2.0, first.shape[0]), dtype=dtype).astype(np.float64)
        weights[1] = 0.0  # a zero-weight sample
    differentiable = entry["differentiable"]
    reference: Reference = entry["reference"]

    def forward(ctx: Ctx) -> tuple[torch.Tensor, torch.Tensor | None, Tensors]:
        tensors = {
            name: torch.tensor(value, dtype=F64, requires_grad=name in differentiable) for name, value in inputs.items()
        }
        e, m = reference(tensors, ctx)
        return e, m, tensors

    checks: list[str] = []
    e, m, _ = forward(Ctx(dtype, params, checks))
    per_sample = reduce(e, m, None, "none").detach().numpy()
    results = []
    for reduction, weighted in REDUCTIONS:
        if weighted and batch_level:
            continue
        e, m, tensors = forward(Ctx(dtype, params, []))
        w = torch.tensor(weights, dtype=F64) if weighted else None
        value = reduce(e, m, w, reduction)
        (value.sum() if reduction == "none" else value).backward()
        gradients = {}
        for name in differentiable:
            grad = tensors[name].grad
            array = np.zeros_like(inputs[name]) if grad is None else grad.numpy()
            if not np.all(np.isfinite(array)):
                raise AssertionError(f"{base} {dtype} {reduction}: reference gradient wrt {name} is not finite")
            gradients[name] = compact(array, dtype, False)
        out = value.detach().numpy()
        if not np.all(np.isfinite(out)):
            raise AssertionError(f"{base} {dtype} {reduction}: reference loss is not finite: {out}")
        results.append(
            {"reduction": reduction, "weighted": weighted, "loss": compact(out, dtype, False), "gradients": gradients}
        )
    param_text = ",".join(f"{k}={str(v).lower()}" for k, v in params_spec.items()) or "defaults"
    return {
        "id": f"{param_text}/{kind}/{shape_name}/{dtype}",
        "params": params,
        "dtype": dtype,
        "data": kind,
        "shape": list(first.shape),
        "reference": entry["describe"](params),
        "checks": sorted(set(checks)),
        "inputs": {name: compact(value, dtype, True) for name, value in inputs.items()},
        "weights": None if weights is None else compact(weights, dtype, True),
        "per_sample": compact(per_sample, dtype, False),
        "results": results,
    }


CONVENTIONS = (
    "per_sample = mean over non-batch axes of the reference's element losses (class-wise "
    "losses summed over the last axis); mean = sum(w*l)/sum(w) (sparse_cross_entropy: divided by "
    "sum(w * per-sample mean of the mass)); sum = sum(w*l); none = per_sample, gradients of "
    "per_sample.sum(). Reference evaluated in float64 on inputs rounded to the case dtype, with the "
    "dtype's clip bounds; see the script's docstring."
)


def main(names: list[str]) -> None:
    """Regenerate every golden file, or only those of the named losses."""
    unknown = sorted(set(names) - set(LOSSES))
    if unknown:
        raise SystemExit(f"unknown losses: {unknown}")
    torch.manual_seed(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    total = 0
    for loss, entry in LOSSES.items():
        if names and loss not in names:
            continue
        cases = []
        general = "differentiable" in entry
        run = run_general_case if general else run_case
        for params_spec, kinds in entry["combos"]:
            for kind in kinds:
                for shape_name in entry.get("shapes", DEFAULT_SHAPES):
                    for dtype in DTYPES:
                        cases.append(run(loss, entry, params_spec, kind, shape_name, dtype))
        versions = {"torch": torch.__version__, "keras": keras.__version__, "keras_backend": keras.backend.backend()}
        if entry.get("scipy"):
            versions["scipy"] = scipy.__version__
        versions.update(entry.get("versions", {}))
        document = {
            "loss": loss,
            "generated_by": "scripts/make_golden.py (make golden)",
            "seed": SEED,
            "reference_versions": versions,
            "conventions": entry.get("conventions", CONVENTIONS),
            "cases": cases,
        }
        path = OUT / f"{loss}.json"
        path.write_text(json.dumps(document, indent=None, separators=(",", ":")) + "\n")
        total += path.stat().st_size
        print(f"{path.relative_to(ROOT)}: {len(cases)} cases, {path.stat().st_size / 1024:.0f} KiB")
    print(f"total {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1:])
