"""onnxscript building blocks shared by the kernels (stable forms of common pieces, and the
handling of categorical targets that several families share)."""

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
def select(condition, a, b):  # type: ignore[no-untyped-def]
    """Where(condition, a, b) for finite a and b, bit for bit (a * 1 + b * 0 is a): onnxruntime's
    Where is a scalar loop, 7 ms for a million floats against 0.2 ms for a Mul. An unselected inf
    or NaN would spread, so a branch that can overflow is clamped first, or keeps Where."""
    keep = op.CastLike(condition, a)
    return a * keep + b * (1.0 - keep)


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
    return select(positive, big, small), select(positive, small, big), op.Relu(x) + tail, op.Relu(op.Neg(x)) + tail


@script(LOSSD, default_opset=op)
def binary_smoothed(targets, label_smoothing):  # type: ignore[no-untyped-def]
    """Binary targets smoothed towards 1/2 (Keras): y (1 - s) + s / 2."""
    return targets * (1.0 - label_smoothing) + 0.5 * label_smoothing


@script(LOSSD, default_opset=op)
def clip_mask(p, eps):  # type: ignore[no-untyped-def]
    """p clipped to [eps, 1 - eps], and 1 where the clip let p through (its derivative)."""
    low = op.CastLike(eps, p)
    clipped = op.Clip(p, low, 1.0 - low)  # one vectorised op; Max/Min are ~10x slower in ORT
    inside = op.CastLike(op.Equal(clipped, p), p)
    return clipped, inside


# onnxruntime's CPU broadcasting is fast for same-shape and scalar operands of rank <= 2,
# but about 10x slower on rank-3 tensors and when a row or column is repeated over a
# short last axis. Class-wise kernels therefore work on (rows, C) and repeat per-row
# values, or sum over classes, with a matrix product.


@script(LOSSD, default_opset=op)
def rows(x):  # type: ignore[no-untyped-def]
    """x as a (rows, C) matrix, C its last axis."""
    return op.Reshape(x, op.Concat(op.Constant(value_ints=[-1]), op.Shape(x, start=-1), axis=0))


@script(LOSSD, default_opset=op)
def row_sum(x):  # type: ignore[no-untyped-def]
    """(rows, C) -> (rows, 1): the sum over classes, as a product with a ones vector."""
    ones = op.Expand(op.CastLike(1.0, x), op.Concat(op.Shape(x, start=-1), op.Constant(value_ints=[1]), axis=0))
    return op.MatMul(x, ones)


@script(LOSSD, default_opset=op)
def spread(v, like):  # type: ignore[no-untyped-def]
    """(rows, 1) -> (rows, C): each row's value repeated, as an outer product."""
    ones = op.Expand(op.CastLike(1.0, v), op.Concat(op.Constant(value_ints=[1]), op.Shape(like, start=-1), axis=0))
    return op.MatMul(v, ones)


# -- categorical targets (class axis last) ------------------------------------------------


@script(LOSSD, default_opset=op)
def one_hot_labels(predictions, labels):  # type: ignore[no-untyped-def]
    """Labels in [0, C) as one-hot rows over the predictions' last axis, in their dtype."""
    # OneHot has no float64 kernel in onnxruntime: compare against the class range instead.
    classes = op.Range(op.CastLike(0, labels), op.Squeeze(op.Shape(predictions, start=-1)), op.CastLike(1, labels))
    return op.CastLike(op.Equal(op.Unsqueeze(labels, op.Constant(value_ints=[-1])), classes), predictions)


@script(LOSSD, default_opset=op)
def kept_one_hot(predictions, targets, ignore_index):  # type: ignore[no-untyped-def]
    """1 where the label is not ignore_index (with a trailing unit axis), and the labels
    one-hot (ignored labels as class 0: multiply by the first to drop them)."""
    keep = op.Not(op.Equal(targets, ignore_index))
    one_hot = one_hot_labels(predictions, targets * op.CastLike(keep, targets))
    return op.Unsqueeze(op.CastLike(keep, predictions), op.Constant(value_ints=[-1])), one_hot


@script(LOSSD, default_opset=op)
def smoothed(targets, label_smoothing):  # type: ignore[no-untyped-def]
    """Class distributions smoothed towards the uniform one (Keras, torch): y (1 - s) + s / C."""
    classes = op.CastLike(op.Shape(targets, start=-1), targets)
    return targets * (1.0 - label_smoothing) + label_smoothing / classes


@script(LOSSD, default_opset=op)
def renormalised(probabilities, eps):  # type: ignore[no-untyped-def]
    """Keras's categorical preprocessing (as in classification's xent_probabilities): q = p / sum(p) over the
    last axis, clipped to [eps, 1 - eps]; returns q, the clipped q, the clip's derivative
    mask and sum(p)."""
    total = op.ReduceSum(probabilities, op.Constant(value_ints=[-1]), keepdims=1)
    q = probabilities / spread(total, probabilities)
    clipped, inside = clip_mask(q, eps)
    return q, clipped, inside, total


@script(LOSSD, default_opset=op)
def through_renormalisation(g, q, total):  # type: ignore[no-untyped-def]
    """d/dp from g = d/dq through q = p / sum(p): (g - sum(g q)) / sum(p)."""
    return (g - spread(op.ReduceSum(g * q, op.Constant(value_ints=[-1]), keepdims=1), g)) / spread(total, g)
