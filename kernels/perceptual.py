"""Perceptual loss: an LPIPS-style distance in the feature space of an ONNX extractor the
operator configures (``LOSSD_FEATURE_MODELS``, see kernels.features).

The extractor's graph is inlined into the loss graph: one onnxruntime session per
(extractor, dtype) runs it once on the 2N images ``[predictions; targets]`` and compares
the two halves of each feature map. An arbitrary extractor has no analytic backward here,
so the loss has no differentiable inputs and returns no gradients.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper
from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.curves import Arrays, Curve
from kernels.features import FEATURE_MODELS, HOW_TO_CONFIGURE, OPSET, FeatureModel, extractor_nodes
from kernels.ops import LOSSD
from kernels.spec import Card, Configured, Input, KernelFunction, Params, Properties, ProtoKernel, loss

LPIPS_EPS_EXPONENT = -10.0
"""LPIPS's normalisation adds 1e-10 to the channel norm (``lpips.normalize_tensor``)."""


class PerceptualParams(Params):
    feature_model: str | None = Field(
        None,
        description="Name of a feature extractor configured with LOSSD_FEATURE_MODELS (the card lists them); "
        "null: the first configured one.",
    )


@script(LOSSD, default_opset=op)
def layer_distance(features):  # type: ignore[no-untyped-def]
    """One feature map of the 2N images [predictions; targets], shape (2N, C_k, ...), to the
    (N,) layer distance: unit-normalise over channels (norm + 1e-10, the constant made in
    the features' dtype), sum the squared differences over channels, average over the
    remaining (spatial) axes. eps has shape (1,) on purpose: onnxscript's optimizer
    rewrites ``x + c`` to ``x`` for any *scalar* constant |c| <= 1e-8 (its no-op rules
    compare with abs_tol=1e-8), which would turn a dead ReLU location into 0/0."""
    ten = op.CastLike(op.Constant(value_floats=[10.0]), features)
    eps = op.Pow(ten, op.CastLike(LPIPS_EPS_EXPONENT, features))
    channels = op.Constant(value_ints=[1])
    unit = features / (op.ReduceL2(features, channels, keepdims=1) + eps)
    predicted, target = op.Split(unit, num_outputs=2, axis=0)
    d = predicted - target
    squared = op.ReduceSum(d * d, channels, keepdims=0)
    return op.ReduceMean(op.Flatten(squared, axis=1), channels, keepdims=0)


def perceptual_kernel(model: FeatureModel) -> ProtoKernel:
    """predictions, targets (N, C, H, W) -> elements (N, 1): the extractor's nodes between
    a concatenation (cast to its input type) and one ``layer_distance`` per output (cast
    back to the request's dtype), summed."""
    nodes = [
        helper.make_node("Concat", ["predictions", "targets"], ["images"], axis=0),
        helper.make_node("Cast", ["images"], ["extractor_input"], to=model.input_type),
    ]
    extractor, outputs = extractor_nodes(model, "extractor_input", prefix="features/")
    nodes += extractor
    distances = []
    for k, output in enumerate(outputs):
        nodes.append(helper.make_node("CastLike", [output, "predictions"], [f"feature_{k}"]))
        nodes.append(helper.make_node(layer_distance.name, [f"feature_{k}"], [f"distance_{k}"], domain=LOSSD.domain))
        distances.append(f"distance_{k}")
    axes = helper.make_tensor("sample_axis", TensorProto.INT64, [1], [1])
    nodes += [
        helper.make_node("Sum", distances, ["distance"]),
        helper.make_node("Constant", [], ["sample_axis"], value=axes),
        helper.make_node("Unsqueeze", ["distance", "sample_axis"], ["elements"]),
    ]
    function = helper.make_function(
        LOSSD.domain,
        f"perceptual_{model.name.replace('-', '_')}",
        inputs=["predictions", "targets"],
        outputs=["elements"],
        nodes=nodes,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(LOSSD.domain, LOSSD.version)],
        doc_string=f"perceptual loss through feature extractor {model.describe()}",
    )
    _, c, h, w = model.input_shape
    dims = ("N", c or "C", h or "H", w or "W")
    return ProtoKernel(function, calls=(layer_distance,), input_dims={"predictions": dims, "targets": dims})


def _curve_target() -> np.ndarray:
    """A smooth 3-channel 16x16 test image in [-1, 1] (LPIPS's input range)."""
    y, x = np.mgrid[0:16, 0:16] / 15.0
    return np.stack([np.sin(3.0 * x + 1.0), np.cos(2.0 * y - 0.5), np.sin(2.0 * (x + y))]) * 0.8


def _curve_inputs(x: np.ndarray) -> Arrays:
    target = _curve_target()
    noise = np.random.default_rng(0).standard_normal(target.shape)
    predictions = target[None] + x[:, None, None, None] * noise[None]
    return {"predictions": predictions, "targets": np.broadcast_to(target, predictions.shape).copy()}


CURVE = Curve(
    "standard deviation of Gaussian noise added to the target image (3 x 16 x 16, values in [-1, 1])",
    0.0,
    1.0,
    inputs=_curve_inputs,
    direction=lambda x: {},  # no differentiable inputs: the curve has no derivative
)


@loss(
    name="perceptual",
    task="generative",
    inputs=(
        Input("predictions", ("N", "C", "H", "W"), "real", "Generated or reconstructed images, channels first."),
        Input("targets", ("N", "C", "H", "W"), "real", "Reference images, same shape as predictions."),
    ),
    params=PerceptualParams,
    configured={"feature_model": Configured(FEATURE_MODELS, HOW_TO_CONFIGURE)},
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=False,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation=None,
    ),
    card=Card(
        title="Perceptual (LPIPS-style feature) distance",
        summary="Distance between images in the feature space of an ONNX feature extractor that the operator "
        "configures (LOSSD_FEATURE_MODELS=name=path.onnx,...; no weights are downloaded): LPIPS without its learned "
        "linear heads. At every position of every extractor output the feature vector is divided by its L2 norm "
        "over channels (+1e-10); the squared differences are summed over channels, averaged over positions and "
        "summed over outputs. Without a configured extractor the loss answers 409. The params list the configured "
        "extractors; the first is the default. Predictions and targets run through the extractor as one batch "
        "of 2N images, in its own dtype (usually float32): a float64 request casts the images in and the features "
        "out, and normalises and compares in float64. Send images in the range the extractor expects (LPIPS "
        "backbones: [-1, 1] after its scaling layer). No gradients: the extractor is an arbitrary model without "
        "an analytic backward here, so `gradients` is empty (asking for them returns {}). Bounded: 0 <= per_sample "
        "<= 4 x the number of outputs (unit vectors), so no outlier dominates, which also makes it non-convex; "
        "with a ReLU extractor it is not differentiable where a unit switches on or off.",
        formula=r"\ell(\hat x, x) = \sum_{l} \frac{1}{H_l W_l} \sum_{h,w} \big\| u(f^l_{hw}(\hat x)) - "
        r"u(f^l_{hw}(x)) \big\|_2^2,\quad u(v) = \frac{v}{\|v\|_2 + 10^{-10}}",
        use_cases=(
            "Comparing generated and reference images by content rather than pixels (super-resolution, "
            "restoration, autoencoders, GAN evaluation)",
            "Monitoring the perceptual quality of an image model's outputs with an extractor you control",
            "Any feature-space distance for (N, C, H, W) data through your own ONNX encoder",
        ),
        equivalents={
            "lpips": "lpips.LPIPS(net=..., lpips=False) when its backbone is exported to ONNX with each ReLU "
            "stage as an output, on images already passed through its ScalingLayer (per_sample = its output)",
            "note": "lpips.LPIPS(lpips=True), the published LPIPS that monai.losses.PerceptualLoss wraps, weights "
            "each layer's squared differences by learned non-negative 1x1 'lin' heads before the spatial mean; "
            "they act after the normalisation, so no extractor can carry them: this loss is their unweighted "
            "baseline (lpips=False)",
            "torch": "none built in",
        },
        references=(
            "Zhang, R., Isola, P., Efros, A. A., Shechtman, E., Wang, O. (2018). The Unreasonable Effectiveness "
            "of Deep Features as a Perceptual Metric. CVPR.",
            "Johnson, J., Alahi, A., Fei-Fei, L. (2016). Perceptual Losses for Real-Time Style Transfer and "
            "Super-Resolution. ECCV.",
        ),
    ),
    curve=CURVE,
)
def perceptual(feature_model: FeatureModel) -> KernelFunction:
    return perceptual_kernel(feature_model)
