"""Test declarations of the image loss (kernels/image.py): SSIM (scikit-image)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.kernels.catalog.base import BOTH, ONE, Arrays, Golden, GradientCase, LossInfo
from tests.kernels.catalog.reference import Ctx, F, Tensor, Tensors, pytorch_msssim, skimage, torch
from tests.kernels.catalog.segmentation import PER_CHANNEL
from tests.kernels.properties import NaturalImages

# -- references (run by the golden generator only) -------------------------------------------------


def reflect_indices(size: int, start: int, stop: int) -> np.ndarray:
    """scipy.ndimage mode 'reflect' (d c b a | a b c d | d c b a ...) for positions start..stop-1."""
    folded = np.mod(np.arange(start, stop), 2 * size)
    return np.where(folded < size, folded, 2 * size - 1 - folded)


def torch_ssim_map(x: Tensor, y: Tensor, c: Ctx) -> Tensor:
    """SSIM maps (N, C, Ho, Wo) re-implemented in torch (float64) for autograd: scipy's truncated Gaussian,
    reflect padding by index, separable valid conv2d, cropped by (win_size - 1) // 2."""
    sigma, data_range = c.f("sigma", 1.5), c.f("data_range", 1.0)
    k1, k2, win = c.f("k1", 0.01), c.f("k2", 0.03), c.params.get("window_size", 11)
    pad = (win - 1) // 2
    if c.params.get("window", "gaussian") == "uniform":  # scipy's uniform_filter(size=win)
        radius, taps = pad, np.ones(win)
    else:
        radius = int(3.5 * sigma + 0.5)
        taps = np.exp(-0.5 / (sigma * sigma) * np.arange(-radius, radius + 1) ** 2)
    kernel = torch.tensor(taps / taps.sum(), dtype=torch.float64)
    n, ch, h, w = x.shape

    def blur(z: Tensor) -> Tensor:
        z = z.reshape(n * ch, 1, h, w)
        z = z[:, :, torch.tensor(reflect_indices(h, pad - radius, h - pad + radius))]
        z = z[:, :, :, torch.tensor(reflect_indices(w, pad - radius, w - pad + radius))]
        z = F.conv2d(z, kernel.reshape(1, 1, -1, 1))
        return F.conv2d(z, kernel.reshape(1, 1, 1, -1)).reshape(n, ch, h - 2 * pad, w - 2 * pad)

    ux, uy, uxx, uyy, uxy = blur(x), blur(y), blur(x * x), blur(y * y), blur(x * y)
    cov = win * win / (win * win - 1) if c.params.get("sample_covariance", False) else 1.0
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ref_ssim(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """Values: 1 - skimage structural_similarity per (sample, channel); gradients: torch autograd of
    torch_ssim_map, which must agree with skimage to 1e-12 (the returned tensor carries skimage's values
    and the torch re-implementation's gradient)."""
    x, y = t["predictions"], t["targets"]
    data_range, win = c.f("data_range", 1.0), c.params.get("window_size", 11)
    xs, ys = x.detach().numpy(), y.numpy()
    values = [
        [
            1.0
            - skimage.metrics.structural_similarity(
                xs[i, j], ys[i, j], win_size=win, gaussian_weights=c.params.get("window", "gaussian") == "gaussian",
                use_sample_covariance=c.params.get("sample_covariance", False),
                data_range=data_range, sigma=c.f("sigma", 1.5), K1=c.f("k1", 0.01), K2=c.f("k2", 0.03),
            )
            for j in range(xs.shape[1])
        ]
        for i in range(xs.shape[0])
    ]  # fmt: skip
    sk = torch.tensor(values, dtype=torch.float64)
    mine = 1.0 - torch_ssim_map(x, y, c).flatten(2).mean(-1)
    c.check("torch re-implementation (source of the gradients) = skimage", mine, sk, rtol=1e-12)
    plain = c.params.get("window", "gaussian") == "gaussian" and not c.params.get("sample_covariance", False)
    if plain and win == 11 and c.f("sigma", 1.5) == 1.5:
        theirs = 1.0 - pytorch_msssim.ssim(
            x.detach(), y, data_range=data_range, size_average=False, K=(c.f("k1", 0.01), c.f("k2", 0.03))
        )
        c.check(
            "pytorch_msssim.ssim (valid conv, window 11, sigma 1.5; its Gaussian taps are computed in float32), mean "
            "over channels",
            mine.mean(1),
            theirs,
            rtol=1e-5,
        )
    return mine + (sk - mine).detach(), None


# -- golden inputs ---------------------------------------------------------------------------------


def image_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
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


# -- finite-difference inputs ----------------------------------------------------------------------


def fd_ssim_images(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """(N, C, H, W) images in [0, data_range]: a smooth target, a noisy prediction."""
    shape = (2, 1, 11, 12)
    scale = params.get("data_range", 1.0)
    u = np.linspace(0.0, 1.0, shape[2])[:, None] + np.linspace(0.0, 0.5, shape[3])[None, :]
    target = np.clip(0.3 + 0.3 * u + rng.normal(0.0, 0.05, shape), 0.0, 1.0)
    prediction = target + rng.normal(0.0, 0.1, shape)
    return {"predictions": prediction * scale, "targets": target * scale}


# -- declarations ----------------------------------------------------------------------------------

LOSSES = (
    LossInfo(
        "ssim",
        golden=Golden(
            reference=ref_ssim,
            data=image_data,
            shapes={"1ch": (2, 1, 11, 12), "2ch": (2, 2, 12, 11)},
            conventions=PER_CHANNEL,
            describe=lambda p: (
                "1 - skimage.metrics.structural_similarity(gaussian_weights="
                f"{p.get('window', 'gaussian') == 'gaussian'}, "
                f"use_sample_covariance={p.get('sample_covariance', False)}, win_size, sigma, K1, K2, data_range) per "
                "(sample, channel); gradients by torch autograd of a torch float64 re-implementation checked against "
                "skimage"
            ),
            combos=(
                ({}, BOTH),
                ({"window_size": 7}, ONE),
                ({"window_size": 3, "sigma": 5.0}, ONE),
                ({"data_range": 255.0}, ONE),
                ({"window_size": 5, "sigma": 0.8, "k1": 0.05, "k2": 0.1}, ONE),
                ({"window": "uniform", "window_size": 7, "sample_covariance": True}, ONE),
                ({"window": "uniform", "window_size": 5}, ("extreme",)),
                ({"sample_covariance": True}, ONE),
            ),
            versions=(
                "scikit-image",
                "pytorch-msssim",
            ),
        ),
        gradients=GradientCase(
            fd_ssim_images,
            (
                {},
                {"window_size": 7, "sigma": 2.0},
                {"window_size": 3, "sigma": 5.0, "data_range": 2.0, "k2": 0.1},
                {"window": "uniform", "window_size": 7, "sample_covariance": True},
                {"window": "uniform", "window_size": 5, "data_range": 2.0},
            ),
        ),
        domain=NaturalImages(),
    ),
)
