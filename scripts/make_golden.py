"""Write tests/golden/<loss>.json: golden values from the reference libraries.

Run from the repository root (``make golden``)::

    .venv/bin/python scripts/make_golden.py

Needs the ``reference`` extra (torch 2.13.0 CPU, Keras 3 with the torch backend, MONAI,
scikit-image, pytorch-msssim); the tests that read the files need only numpy.

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
* Each case lists the cross-checks made against other references (e.g. torch's own
  ``'mean'`` reduction, Keras's label smoothing); the script fails if one disagrees.
"""

from __future__ import annotations

import json
import os
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
import skimage
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, TverskyLoss
from skimage.metrics import structural_similarity

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "golden"
SEED = 20_250_101
SHAPES: dict[str, tuple[int, ...]] = {"2d": (4, 5), "3d": (3, 2, 4)}
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
    # keep |residual| away from huber's delta and from 0 (kinks)
    delta = params.get("delta", 1.0)
    near = np.abs(np.abs(residual) - delta) < 0.05
    residual[near] += 0.1
    return {"predictions": targets + residual, "targets": targets}


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
    """'per_class' placeholders become one value per class (last axis)."""
    out = {}
    for key, value in params.items():
        if value == "per_class":
            out[key] = [round(float(v), 3) for v in rng.uniform(0.2, 3.0, shape[-1])]
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


def run_case(
    loss: str, entry: dict[str, Any], params_spec: dict[str, Any], kind: str, shape_name: str, dtype: str
) -> dict[str, Any]:
    shape = entry.get("shapes", SHAPES)[shape_name]
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

    def forward(ctx: Ctx) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        x64 = torch.tensor(inputs["predictions"], dtype=F64, requires_grad=True)
        xn = torch.tensor(inputs["predictions"], dtype=TORCH_DTYPE[dtype], requires_grad=True)
        tensors = {"predictions": x64, "predictions_native": xn}
        for name, value in inputs.items():
            if name != "predictions":
                tensors[name] = torch.tensor(value, dtype=torch.int64 if value.dtype.kind == "i" else F64)
        e, m = reference(tensors, ctx)
        return e, m, x64, xn

    # per_sample and the cross-checks, once
    ctx = Ctx(dtype, params, checks)
    e, m, _, _ = forward(ctx)
    per_sample = reduce(e, m, None, "none").detach().numpy()
    results = []
    for reduction, weighted in REDUCTIONS:
        e, m, x64, xn = forward(Ctx(dtype, params, []))
        w = torch.tensor(weights, dtype=F64) if weighted else None
        value = reduce(e, m, w, reduction)
        target = value.sum() if reduction == "none" else value
        target.backward()
        grads = [g for g in (x64.grad, xn.grad) if g is not None]
        assert len(grads) == 1, "the reference must use exactly one of predictions / predictions_native"
        grad = grads[0].double().numpy()
        out = value.detach().numpy()
        for name, arr in (("loss", out), ("gradient", grad)):
            if not np.all(np.isfinite(arr)):
                raise AssertionError(f"{base} {dtype} {reduction}: reference {name} is not finite: {arr}")
        results.append(
            {
                "reduction": reduction,
                "weighted": weighted,
                "loss": compact(out, dtype, False),
                "gradients": {"predictions": compact(grad, dtype, False)},
            }
        )
    param_text = ",".join(f"{k}={str(v).lower()}" for k, v in params_spec.items()) or "defaults"
    return {
        "id": f"{param_text}/{kind}/{shape_name}/{dtype}",
        "params": params,
        "dtype": dtype,
        "data": kind,
        "shape": list(shape),
        "reference": entry["describe"](params),
        "checks": sorted(set(checks)),
        "inputs": {name: compact(value, dtype, True) for name, value in inputs.items()},
        "weights": compact(weights, dtype, True),
        "per_sample": compact(per_sample, dtype, False),
        "results": results,
    }


def main() -> None:
    torch.manual_seed(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    total = 0
    for loss, entry in LOSSES.items():
        cases = []
        for params_spec, kinds in entry["combos"]:
            for kind in kinds:
                for shape_name in entry.get("shapes", SHAPES):
                    for dtype in DTYPES:
                        cases.append(run_case(loss, entry, params_spec, kind, shape_name, dtype))
        document = {
            "loss": loss,
            "generated_by": "scripts/make_golden.py (make golden)",
            "seed": SEED,
            "reference_versions": {
                "torch": torch.__version__,
                "keras": keras.__version__,
                "keras_backend": keras.backend.backend(),
                **entry.get("versions", {}),
            },
            "conventions": entry.get("conventions")
            or "per_sample = mean over non-batch axes of the reference's element losses (class-wise "
            "losses summed over the last axis); mean = sum(w*l)/sum(w) (sparse_cross_entropy: divided by "
            "sum(w * per-sample mean of the mass)); sum = sum(w*l); none = per_sample, gradients of "
            "per_sample.sum(). Reference evaluated in float64 on inputs rounded to the case dtype, with the "
            "dtype's clip bounds; see the script's docstring.",
            "cases": cases,
        }
        path = OUT / f"{loss}.json"
        path.write_text(json.dumps(document, indent=None, separators=(",", ":")) + "\n")
        total += path.stat().st_size
        print(f"{path.relative_to(ROOT)}: {len(cases)} cases, {path.stat().st_size / 1024:.0f} KiB")
    print(f"total {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
