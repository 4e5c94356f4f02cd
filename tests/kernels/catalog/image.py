"""Test declarations of the image loss (kernels/image.py): SSIM (scikit-image)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from hypothesis import strategies as st

from tests.kernels.catalog.base import BOTH, ONE, Arrays, Golden, GradientCase, LossInfo
from tests.kernels.catalog.reference import Ctx, F, Tensor, Tensors, pytorch_msssim, skimage, torch
from tests.kernels.catalog.segmentation import PER_CHANNEL
from tests.kernels.properties import Line, NaturalImages

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


def ms_window(c: Ctx, channels: int) -> Tensor:
    """pytorch_msssim's Gaussian window, computed in float64 (its own is float32), one per channel."""
    size, sigma = c.params.get("window_size", 11), c.f("sigma", 1.5)
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return (g / g.sum()).reshape(1, 1, 1, -1).repeat(channels, 1, 1, 1)


def ref_ms_ssim(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """1 - pytorch_msssim.ms_ssim per (sample, channel), with its window in float64 (passed as win); checked
    against its own float32 window and against the mean over channels it returns."""
    x, y = t["predictions"], t["targets"]
    channels = x.shape[1]
    k = (c.f("k1", 0.01), c.f("k2", 0.03))
    data_range = c.f("data_range", 1.0)
    per_channel = torch.stack(
        [
            1.0
            - pytorch_msssim.ms_ssim(
                x[:, j : j + 1], y[:, j : j + 1], data_range=data_range, size_average=False,
                win=ms_window(c, 1), K=k,
            )
            for j in range(channels)
        ],
        dim=1,
    )  # fmt: skip
    theirs = 1.0 - pytorch_msssim.ms_ssim(
        x.detach(), y, data_range=data_range, size_average=False, win_size=c.params.get("window_size", 11),
        win_sigma=c.f("sigma", 1.5), K=k,
    )  # fmt: skip
    c.check("pytorch_msssim.ms_ssim with its float32 window, mean over channels", per_channel.mean(1), theirs, 1e-5)
    whole = 1.0 - pytorch_msssim.ms_ssim(x.detach(), y, data_range=data_range, size_average=False,
                                         win=ms_window(c, channels), K=k)  # fmt: skip
    c.check("per-channel calls = one call's channel mean", per_channel.mean(1), whole)
    return per_channel, None


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


def fd_ms_images(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """(N, C, H, W) images of 33 x 33 pixels (window 3: more than 2 * 16) in [0, data_range]."""
    shape = (2, 1, 33, 33)
    scale = params.get("data_range", 1.0)
    u = np.linspace(0.0, 1.0, shape[2])[:, None] + np.linspace(0.0, 0.5, shape[3])[None, :]
    target = np.clip(0.3 + 0.3 * u + rng.normal(0.0, 0.05, shape), 0.0, 1.0)
    prediction = target + rng.normal(0.0, 0.1, shape)
    return {"predictions": prediction * scale, "targets": target * scale}


@dataclass(frozen=True)
class LargeImages(NaturalImages):
    """:class:`NaturalImages` for images too large to draw pixel by pixel: a random line is a seed (numpy draws
    its target, from the canonical ones or uniform, and its direction). With ``clipped`` (a loss name), one more
    canonical line inverts the textured target's contrast, and its kink is where that loss first reaches exactly
    1 (ms_ssim's relu clips a scale's contrast term at 0 there), found by bisection on the kernel."""

    clipped: str | None = None
    params_: tuple[tuple[str, Any], ...] = ()

    def canonical_lines(self) -> tuple[Line, ...]:
        lines = super().canonical_lines()
        name = self.clipped
        if name is None:
            return lines
        from tests.kernels.harness import evaluate  # the kernel locates its own clip

        _, textured, _ = self.targets()
        line = self.line(textured, -(textured - textured.mean()))

        def saturated(t: float) -> bool:
            inputs = {"predictions": line.points([t]), "targets": textured[None]}
            return bool(evaluate(name, inputs, dict(self.params_), reduction="none").per_sample[0] == 1.0)

        lo, hi = 0.0, 4.0
        assert saturated(hi) and not saturated(lo)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if saturated(mid) else (mid, hi)
        return (*lines, replace(line, kinks=(lo,)))

    def lines(self) -> st.SearchStrategy[Line]:
        @st.composite
        def draw_line(draw: st.DrawFn) -> Line:
            rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
            pick = draw(st.integers(0, 3))
            target = self.targets()[pick] if pick < 3 else rng.uniform(0.0, 1.0, self.shape)
            return self.line(target, rng.uniform(-1.0, 1.0, self.shape))

        return draw_line()


# -- declarations ----------------------------------------------------------------------------------

SSIM = (
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

MS_SMALL_WINDOW = {"window_size": 3}
"""ms_ssim's images must be larger than (window_size - 1) * 16 on each side: 161 pixels for the default window,
too large for golden files and property searches; window 3 needs 33. The window size is only a param of the
graph (its taps and the crop), the same graph for every size."""

LOSSES = (
    *SSIM,
    LossInfo(
        "ms_ssim",
        golden=Golden(
            reference=ref_ms_ssim,
            data=image_data,
            # one channel, the smallest sizes window 3 allows: each case holds its images and five gradients
            shapes={"33x33": (2, 1, 33, 33), "34x35": (2, 1, 34, 35)},
            conventions=PER_CHANNEL,
            describe=lambda p: (
                "1 - pytorch_msssim.ms_ssim(data_range, size_average=False, win, K) per (sample, channel), its "
                "Gaussian window of window_size taps computed in float64; gradients by torch autograd"
            ),
            combos=(
                (MS_SMALL_WINDOW, ("extreme",)),
                ({**MS_SMALL_WINDOW, "sigma": 0.8, "data_range": 255.0, "k1": 0.05, "k2": 0.1}, ONE),
            ),
            versions=("pytorch-msssim",),
        ),
        # one param set: a central difference per pixel of 33 x 34 images is some 22,000 evaluations
        gradients=GradientCase(fd_ms_images, ({**MS_SMALL_WINDOW, "sigma": 0.8, "data_range": 2.0, "k2": 0.1},)),
        domain=LargeImages(size=33, clipped="ms_ssim", params_=tuple(MS_SMALL_WINDOW.items())),
        property_params=MS_SMALL_WINDOW,
    ),
)
