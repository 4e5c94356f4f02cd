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

from collections.abc import Mapping
from typing import Literal

import numpy as np
from onnx import TensorProto, helper
from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field, field_validator

from kernels.curves import Arrays, Curve
from kernels.ops import LOSSD
from kernels.spec import Card, Input, InvalidInput, KernelFunction, MinSize, Params, Properties, loss

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


def brightness_offset(side: int = IMAGE_SIDE, params: dict[str, object] | None = None) -> Curve:
    """The prediction is the test image plus a constant x: only SSIM's luminance term moves."""

    def inputs(x: np.ndarray) -> Arrays:
        target = np.broadcast_to(test_image(side), (x.size, 1, side, side))
        return {"predictions": target + x[:, None, None, None], "targets": target.copy()}

    def direction(x: np.ndarray) -> Arrays:
        return {"predictions": np.ones((x.size, 1, side, side))}

    variable = "constant brightness offset (prediction - target, data_range 1)"
    return Curve(variable, -0.5, 0.5, inputs, direction, dict(params or {}))


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


# -- multi-scale SSIM ---------------------------------------------------------------------------------

MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Wang, Simoncelli and Bovik's weights of the five scales (pytorch_msssim's default)."""
MS_WEIGHT = tuple(helper.make_tensor(f"ms_weight_{i}", F64, [], [w]) for i, w in enumerate(MS_WEIGHTS))
MS_SCALES = len(MS_WEIGHTS)


class MSSSIMParams(Params):
    data_range: float = Field(1.0, gt=0, description="Range of the pixel values (max - min possible), e.g. 255.")
    window_size: int = Field(
        11,
        ge=3,
        description="Odd length of the Gaussian window (pytorch_msssim win_size); images must be larger than "
        "(window_size - 1) * 16 on each side (four halvings).",
    )
    sigma: float = Field(1.5, gt=0, le=100, description="Standard deviation of the Gaussian window (win_sigma).")
    k1: float = Field(0.01, gt=0, description="C1 = (k1 data_range)^2 stabilises the luminance term.")
    k2: float = Field(0.03, gt=0, description="C2 = (k2 data_range)^2 stabilises the contrast-structure term.")

    @field_validator("window_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 != 1:
            raise ValueError(f"window_size must be odd (the window has a center pixel), got {value}")
        return value


@script(LOSSD, default_opset=op)
def window_taps(window_size, sigma):  # type: ignore[no-untyped-def]
    """pytorch_msssim's window in float64: exp(-t^2 / (2 sigma^2)) for t = -r..r, r = window_size // 2, summing
    to 1; and r."""
    s = op.Cast(sigma, to=F64)
    radius = op.Div(window_size, op.CastLike(2, window_size))
    t = op.Cast(op.Range(op.Neg(radius), radius + 1, op.CastLike(1, radius)), to=F64)
    w = op.Exp(t * t * (-0.5 / (s * s)))
    return w / op.ReduceSum(w, keepdims=0), radius


@script(LOSSD, default_opset=op)
def pool_matrix(size):  # type: ignore[no-untyped-def]
    """avg_pool2d(kernel 2, padding size % 2, count_include_pad) along one axis: P[o, i] = 1/2 where
    (i + size % 2) // 2 = o."""
    two = op.CastLike(2, size)
    odd = op.Mod(size, two)
    one = op.CastLike(1, size)
    outputs = op.Range(op.CastLike(0, size), op.Div(size + odd, two), one)
    owners = op.Div(op.Range(op.CastLike(0, size), size, one) + odd, two)
    hit = op.Equal(
        op.Unsqueeze(outputs, op.Constant(value_ints=[1])), op.Unsqueeze(owners, op.Constant(value_ints=[0]))
    )
    return op.Cast(hit, to=F64) * 0.5


@script(LOSSD, default_opset=op)
def ms_level(x, y, c1, c2, taps, radius):  # type: ignore[no-untyped-def]
    """One scale of (B, H, W) float64 images: the means of the contrast-structure map cs and of the SSIM map,
    and their gradients in x (through the valid-convolution filter and its adjoint)."""
    height = op.Squeeze(op.Shape(x, start=1, end=2))
    width = op.Squeeze(op.Shape(x, start=2, end=3))
    m_h = filter_matrix(height, radius, radius, taps)
    m_w = filter_matrix(width, radius, radius, taps)
    stack = op.Concat(x, y, x * x, y * y, x * y, axis=0)
    moments = op.MatMul(op.MatMul(m_h, stack), op.Transpose(m_w))
    ux, uy, uxx, uyy, uxy = op.Split(moments, num_outputs=5, axis=0)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    a1 = 2.0 * ux * uy + c1
    a2 = 2.0 * vxy + c2
    b1 = ux * ux + uy * uy + c1
    b2 = vx + vy + c2
    cs = a2 / b2
    d = b1 * b2
    s = a1 * a2 / d
    axes = op.Constant(value_ints=[1, 2])
    count = op.Cast(op.Size(s), to=F64) / op.Cast(op.Shape(s, start=0, end=1), to=F64)
    partials = op.Concat(
        2.0 * (ux * cs - uy) / b2,
        op.Neg(cs / b2),
        2.0 / b2,
        (2.0 * uy * (a2 - a1) - 2.0 * ux * s * (b2 - b1)) / d,
        op.Neg(s / b2),
        2.0 * a1 / d,
        axis=0,
    )
    back = op.MatMul(op.MatMul(op.Transpose(m_h), partials / count), m_w)
    g0, g1, g2, g3, g4, g5 = op.Split(back, num_outputs=6, axis=0)
    grad_cs = g0 + 2.0 * x * g1 + y * g2
    grad_s = g3 + 2.0 * x * g4 + y * g5
    return op.ReduceMean(cs, axes, keepdims=0), op.ReduceMean(s, axes, keepdims=0), grad_cs, grad_s


@script(LOSSD, default_opset=op)
def halve(x, y):  # type: ignore[no-untyped-def]
    """Both images average-pooled 2 x 2, and the pooling matrices (for the adjoint)."""
    p_h = pool_matrix(op.Squeeze(op.Shape(x, start=1, end=2)))
    p_w = pool_matrix(op.Squeeze(op.Shape(x, start=2, end=3)))
    p_w_t = op.Transpose(p_w)
    return op.MatMul(op.MatMul(p_h, x), p_w_t), op.MatMul(op.MatMul(p_h, y), p_w_t), p_h, p_w


@script(LOSSD, default_opset=op)
def scale_term(m, weight, ms):  # type: ignore[no-untyped-def]
    """d ms / d m for ms = prod m_l^w_l: ms w / m where m > 0; 0 where relu clipped m (ms is then 0 too)."""
    positive = op.Greater(m, op.CastLike(0.0, m))
    coefficient = op.Where(positive, ms * weight / op.Where(positive, m, op.CastLike(1.0, m)), op.CastLike(0.0, m))
    return op.Unsqueeze(coefficient, op.Constant(value_ints=[1, 2]))


@script(LOSSD, default_opset=op)
def ms_ssim_kernel(predictions, targets, data_range, window_size, sigma, k1, k2):  # type: ignore[no-untyped-def]
    height = op.Shape(predictions, start=2, end=3)
    width = op.Shape(predictions, start=3, end=4)
    planes = op.Concat(op.Constant(value_ints=[-1]), height, width, axis=0)
    x0 = op.Reshape(op.Cast(predictions, to=F64), planes)
    y0 = op.Reshape(op.Cast(targets, to=F64), planes)
    taps, radius = window_taps(window_size, sigma)
    scale = op.Cast(data_range, to=F64)
    c1 = op.Cast(k1, to=F64) * scale
    c1 = c1 * c1
    c2 = op.Cast(k2, to=F64) * scale
    c2 = c2 * c2
    cs0, _, g0, _ = ms_level(x0, y0, c1, c2, taps, radius)
    x1, y1, p0_h, p0_w = halve(x0, y0)
    cs1, _, g1, _ = ms_level(x1, y1, c1, c2, taps, radius)
    x2, y2, p1_h, p1_w = halve(x1, y1)
    cs2, _, g2, _ = ms_level(x2, y2, c1, c2, taps, radius)
    x3, y3, p2_h, p2_w = halve(x2, y2)
    cs3, _, g3, _ = ms_level(x3, y3, c1, c2, taps, radius)
    x4, y4, p3_h, p3_w = halve(x3, y3)
    _, s4, _, g4 = ms_level(x4, y4, c1, c2, taps, radius)
    m0 = op.Relu(cs0)
    m1 = op.Relu(cs1)
    m2 = op.Relu(cs2)
    m3 = op.Relu(cs3)
    m4 = op.Relu(s4)
    w0 = op.Constant(value=MS_WEIGHT[0])
    w1 = op.Constant(value=MS_WEIGHT[1])
    w2 = op.Constant(value=MS_WEIGHT[2])
    w3 = op.Constant(value=MS_WEIGHT[3])
    w4 = op.Constant(value=MS_WEIGHT[4])
    ms = op.Pow(m0, w0) * op.Pow(m1, w1) * op.Pow(m2, w2) * op.Pow(m3, w3) * op.Pow(m4, w4)
    # d(1 - ms)/dx: each scale's -d ms/d m_l times its own gradient, carried down through the poolings' adjoints
    grad = scale_term(m4, w4, ms) * g4
    grad = op.MatMul(op.MatMul(op.Transpose(p3_h), grad), p3_w) + scale_term(m3, w3, ms) * g3
    grad = op.MatMul(op.MatMul(op.Transpose(p2_h), grad), p2_w) + scale_term(m2, w2, ms) * g2
    grad = op.MatMul(op.MatMul(op.Transpose(p1_h), grad), p1_w) + scale_term(m1, w1, ms) * g1
    grad = op.MatMul(op.MatMul(op.Transpose(p0_h), grad), p0_w) + scale_term(m0, w0, ms) * g0
    elements = op.Reshape(1.0 - ms, op.Shape(predictions, start=0, end=2))
    gradient = op.Reshape(op.Neg(grad), op.Shape(predictions))
    return op.CastLike(elements, predictions), op.CastLike(gradient, predictions)


def check_ms_ssim_size(params: MSSSIMParams, arrays: Mapping[str, np.ndarray]) -> None:
    """pytorch_msssim's rule: each side above (window_size - 1) * 16, so the fifth scale still holds a window."""
    least = (params.window_size - 1) * 2 ** (MS_SCALES - 1)
    side = min(arrays["predictions"].shape[2:])
    if side <= least:
        raise InvalidInput(
            "predictions",
            f"ms_ssim halves the images {MS_SCALES - 1} times: each side must be larger than (window_size - 1) * 16 "
            f"= {least} (got {side})",
        )


@loss(
    name="ms_ssim",
    aliases=("multiscale_ssim",),
    task="generative",
    curve=brightness_offset(33, {"window_size": 3}),  # five scales of a 33 px image take a window of 3
    inputs=(
        Input("predictions", ("N", "C", "H", "W"), "real", "Images, channel-first (N, C, H, W).", differentiable=True),
        Input("targets", ("N", "C", "H", "W"), "real", "Reference images, same shape as predictions."),
    ),
    params=MSSSIMParams,
    check=check_ms_ssim_size,
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=False,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Multi-scale structural similarity loss (1 - MS-SSIM)",
        summary="One minus MS-SSIM, exactly as pytorch_msssim.ms_ssim computes it: SSIM's contrast-structure term "
        "at five scales (the image average-pooled 2 x 2 between them, zero-padded when a side is odd, as "
        "avg_pool2d(padding=side % 2)) and the full SSIM at the coarsest, each clipped at 0 (relu) and combined as "
        "a product with Wang et al.'s weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); the Gaussian window "
        "(window_size taps of sigma) filters without padding (valid convolution). Per channel, averaged over the "
        "channels; float64 inside whatever the dtype. pytorch_msssim computes its window in float32: values "
        "agree with it to about 1e-6. Differences from ms_ssim: its data_range default is 255 (ours 1, as ssim), "
        "and its weights param (not offered: the five standard scales always). Where a scale's term is clipped "
        "to 0 the loss is 1 and the gradient is 0 (the power's derivative is infinite there; torch gives nan). "
        "Properties: in [0, 1], not convex, bounded gradient fading as the error grows, and the relu clip makes "
        "the gradient jump where a scale's contrast term crosses 0.",
        formula=r"\ell = 1 - \left[\mathrm{SSIM}_5\right]_+^{w_5}\prod_{l=1}^{4}\left[\mathrm{cs}_l\right]_+^{w_l}",
        use_cases=(
            "Image restoration and compression losses that weigh structure across scales (often mixed with L1)",
            "Autoencoders and super-resolution on images of at least 161 x 161 pixels",
        ),
        equivalents={
            "pytorch_msssim": "1 - pytorch_msssim.ms_ssim(X, Y, data_range, size_average=False, win_size, "
            "win_sigma, K=(k1, k2)) (per sample: the mean over channels)",
            "tensorflow": "tf.image.ssim_multiscale pads differently (VALID pooling) and is not matched",
            "keras": "none in Keras 3",
        },
        references=(
            "Wang, Z., Simoncelli, E. P., Bovik, A. C. (2003). Multiscale structural similarity for image quality "
            "assessment. Asilomar Conference on Signals, Systems and Computers.",
        ),
    ),
)
def ms_ssim() -> KernelFunction:
    return ms_ssim_kernel
