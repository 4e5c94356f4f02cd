"""The reduction every kernel shares: per-sample means, weighted mean or sum, and the
per-sample coefficient that scales the element gradients.

Element losses arrive as ``(N, R)``: the service collapses each input's "..." axes into
one, so a per-sample mean is a mean over axis 1. Sums run in float64 whatever the
kernel's dtype: ORT's float32 ReduceMean drifts by ~7e-4 relative at 10M elements,
float64 accumulation keeps it below 1e-9.
"""

from onnx import TensorProto
from onnxscript import opset18 as op
from onnxscript import script

from kernels.ops import LOSSD

F64 = TensorProto.DOUBLE


SHORT_ROW = 2048
"""Rows of fewer elements are summed in the kernel's dtype, only their sums cast to float64:
casting every element costs more than the loss itself (0.8 ms a million), and a float32 sum of
a thousand elements is good to 1e-7 (checked against float64). Longer rows are cast first."""


@script(LOSSD, default_opset=op)
def sample_means(elements):  # type: ignore[no-untyped-def]
    """Per-sample means in float64 (a request of one value per sample has its own graph, see
    ``reduce_column``)."""
    width = op.Shape(elements, start=1, end=2)
    if op.Less(op.Squeeze(width), op.Constant(value_int=SHORT_ROW)):
        sums = op.ReduceSum(elements, op.Constant(value_ints=[1]), keepdims=0)
        means = op.Cast(sums, to=F64) / op.Cast(width, to=F64)
    else:
        means = op.ReduceMean(op.Cast(elements, to=F64), op.Constant(value_ints=[1]), keepdims=0)
    return means


@script(LOSSD, default_opset=op)
def reduce_loss(elements, weights, mean):  # type: ignore[no-untyped-def]
    """(loss, per_sample, coef): ``mean`` divides by the weights' sum, else a plain sum."""
    per_sample = sample_means(elements)
    count = op.Cast(op.Shape(elements, start=1, end=2), to=F64)
    w = op.Cast(weights, to=F64)
    denom = op.Where(mean, op.ReduceSum(w, keepdims=0), op.CastLike(1.0, w))
    loss = op.ReduceSum(w * per_sample, keepdims=0) / denom
    coef = w / (denom * count)
    return op.CastLike(loss, elements), op.CastLike(per_sample, elements), op.CastLike(coef, elements)


@script(LOSSD, default_opset=op)
def reduce_column(elements, weights, mean):  # type: ignore[no-untyped-def]
    """As reduce_loss for the column layout: one value per sample, the batch fed as one row
    ``(1, N)``, so each element is its sample's loss. Nothing is averaged per sample, so each
    weighted loss is formed in the kernel's dtype (one rounding) and only the sums run in
    float64: per-sample passes cost as much as the loss's own at this layout."""
    per_sample = op.Reshape(elements, op.Constant(value_ints=[-1]))
    w = op.Cast(weights, to=F64)
    denom = op.Where(mean, op.ReduceSum(w, keepdims=0), op.CastLike(1.0, w))
    loss = op.ReduceSum(op.Cast(weights * per_sample, to=F64), keepdims=0) / denom
    return op.CastLike(loss, elements), per_sample, op.CastLike(w / denom, elements)


@script(LOSSD, default_opset=op)
def reduce_loss_mass(elements, mass, weights, mean):  # type: ignore[no-untyped-def]
    """As reduce_loss, but ``mean`` divides by the weighted sum of the element masses."""
    per_sample = sample_means(elements)
    per_sample_mass = sample_means(mass)
    count = op.Cast(op.Shape(elements, start=1, end=2), to=F64)
    w = op.Cast(weights, to=F64)
    denom = op.Where(mean, op.ReduceSum(w * per_sample_mass, keepdims=0), op.CastLike(1.0, w))
    loss = op.ReduceSum(w * per_sample, keepdims=0) / denom
    coef = w / (denom * count)
    return op.CastLike(loss, elements), op.CastLike(per_sample, elements), op.CastLike(coef, elements)


@script(LOSSD, default_opset=op)
def scale_gradient(element_grad, coef):  # type: ignore[no-untyped-def]
    """Each sample's element gradients (N, ...) times its coefficient (N,). onnxruntime
    broadcasts a column over short rows one row at a time (2 elements a row: 17.7 ms at 1M
    elements); an outer product with a row of ones spreads the column in 0.85 ms, exactly."""
    rows = op.Reshape(element_grad, op.Constant(value_ints=[0, -1]))
    width = op.Shape(rows, start=1, end=2)
    column = op.Unsqueeze(coef, op.Constant(value_ints=[1]))
    if op.Less(op.Squeeze(width), op.Constant(value_int=16)):
        ones = op.Expand(op.CastLike(1.0, coef), op.Concat(op.Constant(value_ints=[1]), width, axis=0))
        scaled = rows * op.MatMul(column, ones)
    else:
        scaled = rows * column
    return op.Reshape(scaled, op.Shape(element_grad))


@script(LOSSD, default_opset=op)
def scale_column(element_grad, coef):  # type: ignore[no-untyped-def]
    """As scale_gradient for the column layout: the row ``(1, N)`` of element gradients back
    to ``(N,)``, times each sample's coefficient."""
    return op.Reshape(element_grad, op.Constant(value_ints=[-1])) * coef
