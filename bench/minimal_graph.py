"""The minimal floor's graph: focal loss written by hand with ``onnx.helper``.

The service's focal graph is general: params, sample weights and the reduction are inputs,
and it computes the per-sample losses and a gradient path the bench request never asks
for. This graph is what one forward focal loss with lossd's default params needs and no
more (params folded in as constants, one mean over every element), so a floor built on it
shows what the generality costs. ``bench.small_requests`` checks that its loss equals the
service's to ``LOSS_RTOL`` before it measures anything.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from kernels.imbalance import FocalParams

LOSS_RTOL = 1e-6
"""The minimal floor must compute the service's loss to this relative tolerance."""
OPSET = 18


def _constant(name: str, value: float) -> onnx.NodeProto:
    tensor = numpy_helper.from_array(np.array(value, dtype=np.float32), name)
    return helper.make_node("Constant", [], [name], value=tensor)


def focal_graph(params: FocalParams | None = None) -> onnx.ModelProto:
    """Mean focal loss of float32 probabilities and binary targets of any equal shape.

    Probabilities are clipped to [eps, 1 - eps] as lossd clips them, and log(1 - p) is
    corrected for the rounding of 1 - p as lossd's ``log1p`` does: without it the mean
    differs from the service's by more than ``LOSS_RTOL`` for predictions near 0.
    """
    params = params or FocalParams()
    if params.from_logits or params.label_smoothing or params.alpha < 0:
        raise ValueError("the minimal graph covers the default form: probabilities, alpha >= 0, no smoothing")
    alpha = params.alpha
    nodes = [
        _constant("eps", params.eps),
        _constant("one_minus_eps", 1.0 - params.eps),
        _constant("one", 1.0),
        _constant("two", 2.0),
        _constant("gamma", params.gamma),
        _constant("alpha_neg", 1.0 - alpha),
        _constant("alpha_slope", 2.0 * alpha - 1.0),
        helper.make_node("Clip", ["predictions", "eps", "one_minus_eps"], ["p"]),
        helper.make_node("Mul", ["targets", "alpha_slope"], ["alpha_y"]),
        # alpha_t = alpha y + (1 - alpha)(1 - y)
        helper.make_node("Add", ["alpha_neg", "alpha_y"], ["alpha_t"]),
        helper.make_node("Log", ["p"], ["log_p"]),
        # log(1 - p) = log(u) - ((u - 1) + p) / u with u = 1 - p (kernels.ops.log1p)
        helper.make_node("Sub", ["one", "p"], ["u"]),
        helper.make_node("Log", ["u"], ["log_u"]),
        helper.make_node("Sub", ["u", "one"], ["u_minus_one"]),
        helper.make_node("Add", ["u_minus_one", "p"], ["rounding"]),
        helper.make_node("Div", ["rounding", "u"], ["correction"]),
        helper.make_node("Sub", ["log_u", "correction"], ["log_not_p"]),
        # ce = -(y log p + (1 - y) log(1 - p)) = y (log(1 - p) - log p) - log(1 - p)
        helper.make_node("Sub", ["log_not_p", "log_p"], ["log_ratio"]),
        helper.make_node("Mul", ["targets", "log_ratio"], ["y_log_ratio"]),
        helper.make_node("Sub", ["y_log_ratio", "log_not_p"], ["ce"]),
        # 1 - p_t = y + p (1 - 2y)
        helper.make_node("Mul", ["two", "targets"], ["two_y"]),
        helper.make_node("Sub", ["one", "two_y"], ["sign"]),
        helper.make_node("Mul", ["p", "sign"], ["p_signed"]),
        helper.make_node("Add", ["targets", "p_signed"], ["q"]),
        helper.make_node("Pow", ["q", "gamma"], ["modulator"]),
        helper.make_node("Mul", ["alpha_t", "ce"], ["weighted_ce"]),
        helper.make_node("Mul", ["weighted_ce", "modulator"], ["elements"]),
        helper.make_node("ReduceMean", ["elements"], ["loss"], keepdims=0),
    ]
    dims: list[str | int] = ["N", "C"]
    graph = helper.make_graph(
        nodes,
        "minimal_focal",
        [
            helper.make_tensor_value_info("predictions", TensorProto.FLOAT, dims),
            helper.make_tensor_value_info("targets", TensorProto.FLOAT, dims),
        ],
        [helper.make_tensor_value_info("loss", TensorProto.FLOAT, [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model, full_check=True)
    return model


def reference_loss(predictions: np.ndarray, targets: np.ndarray, params: FocalParams | None = None) -> float:
    """The same loss in float64 numpy: what both graphs are held to in the tests."""
    params = params or FocalParams()
    p = np.clip(predictions.astype(np.float64), params.eps, 1.0 - params.eps)
    y = targets.astype(np.float64)
    ce = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
    alpha_t = params.alpha * y + (1.0 - params.alpha) * (1.0 - y)
    return float(np.mean(alpha_t * ce * (y + p * (1.0 - 2.0 * y)) ** params.gamma))
