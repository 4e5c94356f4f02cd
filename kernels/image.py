"""Image losses: 1 - SSIM (structural similarity), exactly as scikit-image computes it.

Inputs are ``(N, C, H, W)`` images. Each channel of each sample is one 2-D image; SSIM is
computed on it as ``skimage.metrics.structural_similarity(gaussian_weights=True,
use_sample_covariance=False)`` does, and the kernel's element losses are ``1 - SSIM`` of
shape ``(N, C)``, so ``per_sample`` is the mean over channels (skimage's ``channel_axis``).

skimage filters with scipy's Gaussian (radius ``int(3.5 sigma + 0.5)``, whatever
``win_size`` is) and mode ``reflect`` (``d c b a | a b c d | d c b a``, repeating), then
averages the SSIM map over the pixels at least ``(win_size - 1) // 2`` from every border.
Together that is one linear map per axis, ``u = M_H z M_W^T`` with ``M`` of shape
``(size - 2 pad, size)``: the graph builds ``M`` from the params (one graph serves every
window size and sigma), so the filter is two MatMuls, and its adjoint, which the gradient
needs, two more. The local moments ``E[x^2] - E[x]^2`` cancel, so everything from the
first product on runs in float64 whatever the request's dtype.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from onnx import TensorProto, helper
from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field, field_validator

from kernels.curves import Arrays, Curve
from kernels.ops import LOSSD
from kernels.spec import Card, Input, KernelFunction, MinSize, Params, Properties, loss

F64 = TensorProto.DOUBLE
I64 = TensorProto.INT64
UNIT = helper.make_tensor("unit", F64, [1], [1.0])


class SSIMParams(Params):
    data_range: float = Field(1.0, gt=0, description="Range of the pixel values (max - min possible), e.g. 255.")
    window_size: int = Field(
        11,
        ge=3,
        description="Odd side of the window: SSIM is averaged over the pixels at least (window_size - 1) / 2 from "
        "every border (skimage win_size). Images must be at least this large.",
    )
    sigma: float = Field(
        1.5,
        gt=0,
        le=100,
        description="Standard deviation of the Gaussian weights, truncated at radius int(3.5 sigma + 0.5) as in "
        "skimage (whose filter does not depend on window_size).",
    )
    k1: float = Field(0.01, gt=0, description="C1 = (k1 data_range)^2 stabilises the luminance term.")
    k2: float = Field(0.03, gt=0, description="C2 = (k2 data_range)^2 stabilises the contrast-structure term.")
    window: Literal["gaussian", "uniform"] = Field(
        "gaussian",
        description="gaussian: Gaussian weights of sigma (skimage gaussian_weights=True); uniform: equal weights over "
        "the window_size x window_size window (skimage's default, gaussian_weights=False; sigma unused).",
    )
    sample_covariance: bool = Field(
        False,
        description="Scale the local (co)variances by P / (P - 1), P = window_size^2 (skimage use_sample_covariance, "
        "its default); false: population moments (Wang et al.).",
    )

    @field_validator("window_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 != 1:
            raise ValueError(f"window_size must be odd (the window has a center pixel), got {value}")
        return value


@script(LOSSD, default_opset=op)
def gaussian_taps(sigma):  # type: ignore[no-untyped-def]
    """scipy.ndimage's Gaussian in float64: exp(-t^2 / (2 sigma^2)) for t = -r..r, r =
    int(3.5 sigma + 0.5), normalised to sum 1; and r."""
    s = op.Cast(sigma, to=F64)
    radius = op.Cast(op.Floor(s * 3.5 + 0.5), to=I64)
    t = op.Cast(op.Range(op.Neg(radius), radius + 1, op.CastLike(1, radius)), to=F64)
    w = op.Exp(t * t * (-0.5 / (s * s)))
    return w / op.ReduceSum(w, keepdims=0), radius


@script(LOSSD, default_opset=op)
def filter_matrix(size, pad, radius, taps):  # type: ignore[no-untyped-def]
    """The Gaussian filter along one axis, with scipy's reflect boundary, cropped to the
    outputs at least ``pad`` from either end: M (size - 2 pad, size), M[o, refl(o + pad + k)]
    += taps[k + r] for k = -r..r; refl folds every integer onto [0, size) with period
    2 size (Mod has the divisor's sign), so any radius is exact."""
    one = op.CastLike(1, size)
    outputs = op.Range(op.CastLike(0, size), size - pad - pad, one)
    offsets = op.Range(pad - radius, pad + radius + one, one)
    positions = op.Unsqueeze(outputs, op.Constant(value_ints=[1])) + op.Unsqueeze(offsets, op.Constant(value_ints=[0]))
    period = size + size
    folded = op.Mod(positions, period)
    index = op.Where(op.Less(folded, size), folded, period - one - folded)
    shape = op.Shape(index)
    zeros = op.Expand(
        op.CastLike(0.0, taps), op.Concat(op.Shape(outputs), op.Reshape(size, op.Constant(value_ints=[1])), axis=0)
    )
    weights = op.Expand(op.Unsqueeze(taps, op.Constant(value_ints=[0])), shape)
    return op.ScatterElements(zeros, index, weights, axis=1, reduction="add")


@script(LOSSD, default_opset=op)
def uniform_taps(window_size):  # type: ignore[no-untyped-def]
    """scipy.ndimage.uniform_filter's weights in float64: 1 / window_size over t = -r..r, r = (window_size - 1) / 2;
    and r."""
    radius = op.Div(window_size, op.CastLike(2, window_size))
    taps = op.Expand(op.Constant(value=UNIT), op.Reshape(window_size, op.Constant(value_ints=[1])))
    return taps / op.Cast(window_size, to=F64), radius


@script(LOSSD, default_opset=op)
def ssim_core(predictions, targets, data_range, window_size, k1, k2, sample_covariance, taps, radius):  # type: ignore[no-untyped-def]
    height = op.Shape(predictions, start=2, end=3)
    width = op.Shape(predictions, start=3, end=4)
    planes = op.Concat(op.Constant(value_ints=[-1]), height, width, axis=0)
    x = op.Reshape(op.Cast(predictions, to=F64), planes)  # (B, H, W), B = N C
    y = op.Reshape(op.Cast(targets, to=F64), planes)
    pad = op.Div(window_size, op.CastLike(2, window_size))  # (window_size - 1) / 2 for odd sizes
    m_h = filter_matrix(op.Squeeze(height), pad, radius, taps)  # (Ho, H)
    m_w = filter_matrix(op.Squeeze(width), pad, radius, taps)  # (Wo, W)
    m_w_t = op.Transpose(m_w)

    stack = op.Concat(x, y, x * x, y * y, x * y, axis=0)  # (5B, H, W)
    moments = op.MatMul(op.MatMul(m_h, stack), m_w_t)  # (5B, Ho, Wo)
    ux, uy, uxx, uyy, uxy = op.Split(moments, num_outputs=5, axis=0)
    # skimage's cov_norm: P / (P - 1) = 1 + 1 / (P - 1) for sample covariances (sample_covariance: 0 or 1)
    points = op.Cast(window_size * window_size, to=F64)
    cov = 1.0 + op.Cast(sample_covariance, to=F64) / (points - 1.0)
    vx = cov * (uxx - ux * ux)
    vy = cov * (uyy - uy * uy)
    vxy = cov * (uxy - ux * uy)
    scale = op.Cast(data_range, to=F64)
    c1 = op.Cast(k1, to=F64) * scale
    c1 = c1 * c1
    c2 = op.Cast(k2, to=F64) * scale
    c2 = c2 * c2
    a1 = 2.0 * ux * uy + c1
    a2 = 2.0 * vxy + c2
    b1 = ux * ux + uy * uy + c1
    b2 = vx + vy + c2
    d = b1 * b2
    s = a1 * a2 / d
    axes = op.Constant(value_ints=[1, 2])
    mean_s = op.ReduceMean(s, axes, keepdims=0)  # (B,)
    elements = op.Reshape(1.0 - mean_s, op.Shape(predictions, start=0, end=2))

    # d(1 - mean S)/dx through ux, uxx = F(x^2), uxy = F(xy) (uy, uyy fixed): the partials
    # of S at each window, scaled by -1/P, go back through the adjoint filter M_H^T g M_W.
    count = op.Cast(op.Size(s), to=F64) / op.Cast(op.Shape(s, start=0, end=1), to=F64)
    partial_ux = (2.0 * uy * (a2 - cov * a1) - 2.0 * ux * s * (b2 - cov * b1)) / d
    partial_uxx = op.Neg(cov * s / b2)
    partial_uxy = 2.0 * cov * a1 / d
    partials = op.Concat(partial_ux, partial_uxx, partial_uxy, axis=0) / op.Neg(count)
    back = op.MatMul(op.MatMul(op.Transpose(m_h), partials), m_w)  # (3B, H, W)
    g_ux, g_uxx, g_uxy = op.Split(back, num_outputs=3, axis=0)
    gradient = g_ux + 2.0 * x * g_uxx + y * g_uxy
    return op.CastLike(elements, predictions), op.CastLike(op.Reshape(gradient, op.Shape(predictions)), predictions)


@script(LOSSD, default_opset=op)
def ssim_gaussian(predictions, targets, data_range, window_size, sigma, k1, k2):  # type: ignore[no-untyped-def]
    taps, radius = gaussian_taps(sigma)
    sample = op.CastLike(0.0, data_range)
    elements, gradient = ssim_core(predictions, targets, data_range, window_size, k1, k2, sample, taps, radius)
    return elements, gradient


@script(LOSSD, default_opset=op)
def ssim_gaussian_sample(predictions, targets, data_range, window_size, sigma, k1, k2):  # type: ignore[no-untyped-def]
    taps, radius = gaussian_taps(sigma)
    sample = op.CastLike(1.0, data_range)
    elements, gradient = ssim_core(predictions, targets, data_range, window_size, k1, k2, sample, taps, radius)
    return elements, gradient


@script(LOSSD, default_opset=op)
def ssim_uniform(predictions, targets, data_range, window_size, k1, k2):  # type: ignore[no-untyped-def]
    taps, radius = uniform_taps(window_size)
    sample = op.CastLike(0.0, data_range)
    elements, gradient = ssim_core(predictions, targets, data_range, window_size, k1, k2, sample, taps, radius)
    return elements, gradient


@script(LOSSD, default_opset=op)
def ssim_uniform_sample(predictions, targets, data_range, window_size, k1, k2):  # type: ignore[no-untyped-def]
    taps, radius = uniform_taps(window_size)
    sample = op.CastLike(1.0, data_range)
    elements, gradient = ssim_core(predictions, targets, data_range, window_size, k1, k2, sample, taps, radius)
    return elements, gradient


SSIM_KERNELS: dict[tuple[str, bool], KernelFunction] = {
    ("gaussian", False): ssim_gaussian,
    ("gaussian", True): ssim_gaussian_sample,
    ("uniform", False): ssim_uniform,
    ("uniform", True): ssim_uniform_sample,
}


IMAGE_SIDE = 16


def test_image(side: int = IMAGE_SIDE) -> np.ndarray:
    """A smooth deterministic test image in [0.2, 0.8] (a tilted ramp with a bump)."""
    u, v = np.meshgrid(np.linspace(0, 1, side), np.linspace(0, 1, side), indexing="ij")
    image: np.ndarray = 0.2 + 0.3 * u + 0.15 * v + 0.15 * np.exp(-((u - 0.6) ** 2 + (v - 0.4) ** 2) / 0.05)
    return image.clip(0.2, 0.8)


def brightness_offset() -> Curve:
    """The prediction is the test image plus a constant x: only SSIM's luminance term moves."""

    def inputs(x: np.ndarray) -> Arrays:
        target = np.broadcast_to(test_image(), (x.size, 1, IMAGE_SIDE, IMAGE_SIDE))
        return {"predictions": target + x[:, None, None, None], "targets": target.copy()}

    def direction(x: np.ndarray) -> Arrays:
        return {"predictions": np.ones((x.size, 1, IMAGE_SIDE, IMAGE_SIDE))}

    return Curve("constant brightness offset (prediction - target, data_range 1)", -0.5, 0.5, inputs, direction)


IMAGES = "Images, channel-first (N, C, H, W); H and W at least window_size."


@loss(
    name="ssim",
    task="generative",
    inputs=(
        Input("predictions", ("N", "C", "H", "W"), "real", IMAGES, differentiable=True),
        Input("targets", ("N", "C", "H", "W"), "real", "Reference images, same shape as predictions."),
    ),
    params=SSIMParams,
    min_sizes=(
        MinSize("H", "window_size", "predictions", "images must be at least window_size pixels high"),
        MinSize("W", "window_size", "predictions", "images must be at least window_size pixels wide"),
    ),
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=True,
        convex=False,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    curve=brightness_offset(),
    card=Card(
        title="Structural similarity loss (1 - SSIM)",
        summary="One minus the structural similarity index: compares local means (luminance), variances "
        "(contrast) and covariance (structure) under a Gaussian window, which tracks perceived image quality "
        "better than pixel errors. Computed per channel exactly as scikit-image's structural_similarity with "
        "gaussian_weights=True and use_sample_covariance=False (Wang et al.'s settings, the defaults here), averaged "
        "over the channels; window='uniform' takes equal weights over the window (skimage's own default, "
        "gaussian_weights=False, with win_size 7 and use_sample_covariance=True: send window_size 7 and "
        "sample_covariance true), and sample_covariance scales the moments by P / (P - 1); the local moments are "
        "computed in float64 whatever the dtype (E[x^2] - E[x]^2 cancels). "
        "Properties: 1 - SSIM lies in [0, 2] and is differentiable with a Lipschitz gradient (C1, C2 > 0 keep the "
        "denominators positive), steepest where the target is flat: there the contrast term C2 / (var(x) + C2) "
        "has curvature 2 var(d) / C2 (2200 per unit RMS residual with the defaults) at the optimum; its gradient "
        "fades as the error grows (robust to outliers, saturating at loss ~1), and it is not convex.",
        formula=r"\ell_{n,c} = 1 - \frac{1}{|\Omega|}\sum_{j\in\Omega}"
        r"\frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}{(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},"
        r"\quad C_1 = (k_1 L)^2,\ C_2 = (k_2 L)^2",
        use_cases=(
            "Image restoration, denoising and super-resolution (often mixed with L1)",
            "Autoencoder and generative model reconstruction losses that should preserve structure",
        ),
        equivalents={
            "skimage": "1 - skimage.metrics.structural_similarity(im1, im2, gaussian_weights=True, "
            "use_sample_covariance=False, data_range, sigma, K1, K2, win_size=window_size, channel_axis) "
            "(matched; its filter radius comes from sigma, win_size only sets the cropped border); skimage's "
            "defaults structural_similarity(im1, im2, data_range) = window='uniform', window_size=7, "
            "sample_covariance=true",
            "pytorch_msssim": "pytorch_msssim.ssim(data_range, win_size=11, win_sigma=1.5, K=(k1, k2)) filters "
            "with valid convolutions (no padding): the same as ours for window_size=11, sigma=1.5, where the crop "
            "(5) equals the filter radius and no reflected pixel is used (checked in the golden cases); for other "
            "windows its filter length is window_size, not the radius from sigma",
            "keras": "none in Keras 3",
        },
        references=(
            "Wang, Z., Bovik, A. C., Sheikh, H. R., Simoncelli, E. P. (2004). Image quality assessment: from error "
            "visibility to structural similarity. IEEE TIP 13(4).",
            "Zhao, H., Gallo, O., Frosio, I., Kautz, J. (2017). Loss Functions for Image Restoration with Neural "
            "Networks. IEEE TCI.",
        ),
    ),
)
def ssim(window: Literal["gaussian", "uniform"], sample_covariance: bool) -> KernelFunction:
    return SSIM_KERNELS[window, sample_covariance]
