"""onnxscript building blocks shared by the kernels (stable forms of common pieces)."""

from onnxscript import opset18 as op
from onnxscript import script
from onnxscript.values import Opset

LOSSD = Opset("lossd", 1)
"""The domain of lossd's own functions; the exported graphs have them inlined."""


@script(LOSSD, default_opset=op)
def log1p(z):  # type: ignore[no-untyped-def]
    """log(1 + z) for z > -1, accurate also for tiny |z| (ONNX has no Log1p): u = 1 + z
    rounds by r = (u - 1) - z, and log(u) - r / u removes that rounding to first order
    (exact when u rounds to 1). log(1 + z) alone loses every digit of z below 2^-24 in
    float32 (2^-53 in float64): 1e-4 relative error at z = 1e-3 in float32."""
    u = z + 1.0
    return op.Log(u) - ((u - 1.0) - z) / u


@script(LOSSD, default_opset=op)
def softplus(x):  # type: ignore[no-untyped-def]
    """log(1 + e^x) without overflow or loss of small values; ORT's Softplus op is a slow scalar loop."""
    return op.Relu(x) + log1p(op.Exp(op.Neg(op.Abs(x))))


@script(LOSSD, default_opset=op)
def logistic(x):  # type: ignore[no-untyped-def]
    """sigmoid(x), sigmoid(-x), softplus(x), softplus(-x), each to full relative precision,
    from e = exp(-|x|). ORT's Sigmoid is only accurate on the large side: on negative
    inputs float32 is off by 1e-4 relative at -9 and flushes to 0 below about -17, float64
    is 1e-3 off at -30; sigmoid(-|x|) = e sigmoid(|x|) instead. softplus as relu + log1p(e)
    keeps a confident logit's small loss (-log sigmoid) exact."""
    z = op.Abs(x)
    e = op.Exp(op.Neg(z))
    big = op.Sigmoid(z)  # sigmoid(|x|) in [0.5, 1]: ORT is exact to an ulp or two there
    small = e * big  # sigmoid(-|x|) = e^-|x| / (1 + e^-|x|)
    positive = op.GreaterOrEqual(x, op.CastLike(0.0, x))
    tail = log1p(e)
    return op.Where(positive, big, small), op.Where(positive, small, big), op.Relu(x) + tail, op.Relu(op.Neg(x)) + tail


@script(LOSSD, default_opset=op)
def clip_mask(p, eps):  # type: ignore[no-untyped-def]
    """p clipped to [eps, 1 - eps], and 1 where the clip let p through (its derivative)."""
    low = op.CastLike(eps, p)
    high = 1.0 - low
    clipped = op.Min(op.Max(p, low), high)
    inside = op.CastLike(op.And(op.GreaterOrEqual(p, low), op.LessOrEqual(p, high)), p)
    return clipped, inside
