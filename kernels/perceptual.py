"""Perceptual loss: an LPIPS-style distance in the feature space of an ONNX extractor the
operator configures (``LOSSD_FEATURE_MODELS``, see kernels.features).

The extractor's graph is inlined into the loss graph: one onnxruntime session per
(extractor, dtype, gradients). Without gradients it runs once on the 2N images
``[predictions; targets]`` and compares the two halves of each feature map. With gradients it
runs on the targets, and on the predictions followed by its backward, built from its ONNX
graph by kernels.backward; an extractor with an operator that has no backward there gives
graphs without gradients (``FeatureModel.no_gradients`` says why, and so does the card).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.backward import differentiate
from kernels.curves import Arrays, Curve
from kernels.features import FEATURE_MODELS, HOW_TO_CONFIGURE, OPSET, FeatureModel, extractor_nodes, graph_nodes
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


@script(LOSSD, default_opset=op)
def layer_distance_and_gradient(predicted, target):  # type: ignore[no-untyped-def]
    """``layer_distance`` of predicted and target feature maps (N, C_k, ...) given apart, and
    its gradient with respect to ``predicted``: with s = |f| + eps, u = f / s and g = 2 d / P
    the cotangent of u (d = u - u_target, P positions), df = (g - u <v, g>) / s, v = f / |f|
    (0 where |f| = 0, the norm's derivative there as torch.linalg.vector_norm takes it). v
    is a unit vector, so no step divides by a vanishing norm."""
    ten = op.CastLike(op.Constant(value_floats=[10.0]), predicted)
    eps = op.Pow(ten, op.CastLike(LPIPS_EPS_EXPONENT, predicted))
    channels = op.Constant(value_ints=[1])
    norm = op.ReduceL2(predicted, channels, keepdims=1)
    scale = norm + eps
    unit = predicted / scale
    d = unit - target / (op.ReduceL2(target, channels, keepdims=1) + eps)
    squared = op.Flatten(op.ReduceSum(d * d, channels, keepdims=0), axis=1)
    distance = op.ReduceMean(squared, channels, keepdims=0)
    positions = op.CastLike(op.Shape(squared, start=1), predicted)
    two = op.CastLike(op.Constant(value_floats=[2.0]), predicted)
    cotangent = d * (two / positions)
    zero = op.CastLike(op.Constant(value_floats=[0.0]), predicted)
    direction = op.Where(norm > zero, predicted / norm, zero)
    gradient = (cotangent - unit * op.ReduceSum(direction * cotangent, channels, keepdims=1)) / scale
    return distance, gradient


def _elements(distances: list[str]) -> list[onnx.NodeProto]:
    """The per-layer distances (N,) summed, as elements (N, 1)."""
    axes = helper.make_tensor("sample_axis", TensorProto.INT64, [1], [1])
    return [
        helper.make_node("Sum", distances, ["distance"]),
        helper.make_node("Constant", [], ["sample_axis"], value=axes),
        helper.make_node("Unsqueeze", ["distance", "sample_axis"], ["elements"]),
    ]


def _function(model: FeatureModel, name: str, outputs: list[str], nodes: list[onnx.NodeProto]) -> onnx.FunctionProto:
    return helper.make_function(
        LOSSD.domain,
        f"{name}_{model.name.replace('-', '_')}",
        inputs=["predictions", "targets"],
        outputs=outputs,
        nodes=nodes,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(LOSSD.domain, LOSSD.version)],
        doc_string=f"perceptual loss through feature extractor {model.describe()}",
    )


def forward_function(model: FeatureModel) -> onnx.FunctionProto:
    """predictions, targets -> elements (N, 1): the extractor's nodes between a concatenation
    (cast to its input type) and one ``layer_distance`` per output (cast back to the
    request's dtype), summed. The extractor runs once, on the 2N images."""
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
    return _function(model, "perceptual", ["elements"], nodes + _elements(distances))


def gradient_function(model: FeatureModel) -> onnx.FunctionProto:
    """predictions, targets -> elements (N, 1), d elements / d predictions: the extractor runs
    on the targets alone (their features are constants) and on the predictions with its
    backward (kernels.backward), seeded by each layer's ``layer_distance_and_gradient``.
    Samples are independent, so the gradient of the summed elements is each sample's own."""
    outputs = list(model.outputs)
    defined = {o for n in model.model.graph.node for o in n.output} | {model.input_name}
    seeds: dict[str, str] = {}
    for k, output in enumerate(outputs):
        seed = f"cotangent_{k}"
        while seed in defined:  # the backward reads the seeds by these names: none may be the extractor's
            seed += "_"
        seeds.setdefault(output, seed)
    backward = differentiate(model.model, model.input_name, seeds)
    forward_count = len(model.model.graph.initializer) + len(model.model.graph.sparse_initializer)
    forward_count += len(model.model.graph.node)
    nodes = [
        helper.make_node("Cast", ["predictions"], ["predicted_input"], to=model.input_type),
        helper.make_node("Cast", ["targets"], ["target_input"], to=model.input_type),
    ]
    target_nodes, target_outputs = extractor_nodes(model, "target_input", prefix="target/")
    predicted, names = graph_nodes(backward.graph, model.input_name, "predicted_input", prefix="predicted/")
    nodes += target_nodes + predicted[:forward_count]
    distances = []
    for k, (output, target) in enumerate(zip(outputs, target_outputs, strict=True)):
        nodes += [
            helper.make_node("CastLike", [names.get(output, output), "predictions"], [f"predicted_{k}"]),
            helper.make_node("CastLike", [target, "predictions"], [f"target_{k}"]),
            helper.make_node(
                layer_distance_and_gradient.name,
                [f"predicted_{k}", f"target_{k}"],
                [f"distance_{k}", f"feature_gradient_{k}"],
                domain=LOSSD.domain,
            ),
        ]
        distances.append(f"distance_{k}")
    # an output listed twice is seeded once, with the sum of its cotangents
    for output, seed in seeds.items():
        ks = [k for k, o in enumerate(outputs) if o == output]
        total = [f"feature_gradient_{k}" for k in ks]
        summed = total[0] if len(total) == 1 else f"{seed}_sum"
        if len(total) > 1:
            nodes.append(helper.make_node("Sum", total, [summed]))
        nodes.append(helper.make_node("CastLike", [summed, names.get(output, output)], [seed]))
    nodes += predicted[forward_count:]
    gradient = names.get(backward.gradient, backward.gradient)
    nodes.append(helper.make_node("CastLike", [gradient, "predictions"], ["element_grad_predictions"]))
    return _function(
        model, "perceptual_with_gradient", ["elements", "element_grad_predictions"], nodes + _elements(distances)
    )


def perceptual_kernel(model: FeatureModel) -> ProtoKernel:
    """predictions, targets (N, C, H, W) -> elements (N, 1) and, where the extractor has a
    backward, d elements / d predictions; graphs without gradients run the cheaper forward."""
    _, c, h, w = model.input_shape
    dims = ("N", c or "C", h or "H", w or "W")
    input_dims = {"predictions": dims, "targets": dims}
    forward = forward_function(model)
    if model.no_gradients is not None:
        return ProtoKernel(forward, calls=(layer_distance,), input_dims=input_dims)
    return ProtoKernel(
        gradient_function(model),
        calls=(layer_distance, layer_distance_and_gradient),
        input_dims=input_dims,
        forward=forward,
    )


def _curve_target() -> np.ndarray:
    """A smooth 3-channel 16x16 test image in [-1, 1] (LPIPS's input range)."""
    y, x = np.mgrid[0:16, 0:16] / 15.0
    return np.stack([np.sin(3.0 * x + 1.0), np.cos(2.0 * y - 0.5), np.sin(2.0 * (x + y))]) * 0.8


def _curve_noise() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(_curve_target().shape)


def _curve_inputs(x: np.ndarray) -> Arrays:
    target = _curve_target()
    predictions = target[None] + x[:, None, None, None] * _curve_noise()[None]
    return {"predictions": predictions, "targets": np.broadcast_to(target, predictions.shape).copy()}


CURVE = Curve(
    "standard deviation of Gaussian noise added to the target image (3 x 16 x 16, values in [-1, 1])",
    0.0,
    1.0,
    inputs=_curve_inputs,
    direction=lambda x: {"predictions": np.broadcast_to(_curve_noise(), (len(x), *_curve_noise().shape)).copy()},
)


def _no_gradients(model: FeatureModel) -> str | None:
    return model.no_gradients


@loss(
    name="perceptual",
    task="generative",
    inputs=(
        Input(
            "predictions",
            ("N", "C", "H", "W"),
            "real",
            "Generated or reconstructed images, channels first.",
            differentiable=True,
        ),
        Input("targets", ("N", "C", "H", "W"), "real", "Reference images, same shape as predictions."),
    ),
    params=PerceptualParams,
    configured={"feature_model": Configured(FEATURE_MODELS, HOW_TO_CONFIGURE, no_gradients=_no_gradients)},
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
        "backbones: [-1, 1] after its scaling layer). Gradients with respect to predictions (the targets' features "
        "are constants) come from a backward built automatically from the extractor's ONNX graph, run in the same "
        "session, for extractors made of these operators: Conv, Relu, LeakyRelu, MaxPool, "
        "AveragePool (no ceil_mode), GlobalAveragePool, Gemm, MatMul, Add, Sub, Mul, Div, BatchNormalization "
        "(inference), Flatten, Reshape, Squeeze, Unsqueeze, Transpose, Identity, Concat, Clip, Sigmoid, Pad "
        "(constant), with explicit or VALID padding; nodes off the path from the images (shape computations) may "
        "be anything. An extractor with any other operator on that path still gives the loss but no gradients: "
        "`gradients` is then {} and the feature_model param below names the operator. At kinks the gradient is "
        "torch autograd's (ReLU passes it where the input is > 0, MaxPool to the first maximum), and where a "
        "feature vector is all zero the norm's derivative is taken as 0 (torch.linalg.vector_norm's convention). "
        "Bounded: 0 <= per_sample "
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
