"""The reduction every kernel shares: per-sample means, weighted mean or sum, and the
per-sample coefficient that scales the element gradients.

Sums run in float64 whatever the kernel's dtype: ORT's float32 ReduceMean drifts by
~7e-4 relative at 10M elements, float64 accumulation keeps it below 1e-9.
"""

from onnx import TensorProto
from onnxscript import opset18 as op
from onnxscript import script

from kernels.ops import LOSSD

F64 = TensorProto.DOUBLE


@script(LOSSD, default_opset=op)
def per_sample_mean(x):  # type: ignore[no-untyped-def]
    """Mean over every axis but the first, in float64; also returns the per-sample count."""
    n = op.Shape(x, start=0, end=1)
    flat = op.Reshape(op.Cast(x, to=F64), op.Concat(n, op.Constant(value_ints=[-1]), axis=0))
    count = op.Cast(op.Div(op.Size(x), n), to=F64)
    return op.ReduceMean(flat, op.Constant(value_ints=[1]), keepdims=0), count


@script(LOSSD, default_opset=op)
def reduce_loss(elements, weights, mean):  # type: ignore[no-untyped-def]
    """(loss, per_sample, coef): ``mean`` divides by the weights' sum, else a plain sum."""
    per_sample, count = per_sample_mean(elements)
    w = op.Cast(weights, to=F64)
    denom = op.Where(mean, op.ReduceSum(w, keepdims=0), op.CastLike(1.0, w))
    loss = op.ReduceSum(w * per_sample, keepdims=0) / denom
    coef = op.Unsqueeze(w / (denom * count), op.Constant(value_ints=[1]))
    return op.CastLike(loss, elements), op.CastLike(per_sample, elements), op.CastLike(coef, elements)


@script(LOSSD, default_opset=op)
def reduce_loss_mass(elements, mass, weights, mean):  # type: ignore[no-untyped-def]
    """As reduce_loss, but ``mean`` divides by the weighted sum of the element masses."""
    per_sample, count = per_sample_mean(elements)
    per_sample_mass, _unused = per_sample_mean(mass)
    w = op.Cast(weights, to=F64)
    denom = op.Where(mean, op.ReduceSum(w * per_sample_mass, keepdims=0), op.CastLike(1.0, w))
    loss = op.ReduceSum(w * per_sample, keepdims=0) / denom
    coef = op.Unsqueeze(w / (denom * count), op.Constant(value_ints=[1]))
    return op.CastLike(loss, elements), op.CastLike(per_sample, elements), op.CastLike(coef, elements)


@script(LOSSD, default_opset=op)
def scale_gradient(gradient, coef):  # type: ignore[no-untyped-def]
    """Multiply each sample's element gradients by its coefficient."""
    n = op.Shape(gradient, start=0, end=1)
    flat = op.Reshape(gradient, op.Concat(n, op.Constant(value_ints=[-1]), axis=0))
    return op.Reshape(flat * coef, op.Shape(gradient))
