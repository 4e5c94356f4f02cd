"""onnxscript building blocks shared by the kernels (stable forms of common pieces)."""

from onnxscript import opset18 as op
from onnxscript import script
from onnxscript.values import Opset

LOSSD = Opset("lossd", 1)
"""The domain of lossd's own functions; the exported graphs have them inlined."""


@script(LOSSD, default_opset=op)
def softplus(x):  # type: ignore[no-untyped-def]
    """log(1 + e^x) without overflow; ORT's Softplus op is a slow scalar loop."""
    return op.Relu(x) + op.Log(op.Exp(op.Neg(op.Abs(x))) + 1.0)


@script(LOSSD, default_opset=op)
def clip_mask(p, eps):  # type: ignore[no-untyped-def]
    """p clipped to [eps, 1 - eps], and 1 where the clip let p through (its derivative)."""
    low = op.CastLike(eps, p)
    high = 1.0 - low
    clipped = op.Min(op.Max(p, low), high)
    inside = op.CastLike(op.And(op.GreaterOrEqual(p, low), op.LessOrEqual(p, high)), p)
    return clipped, inside
