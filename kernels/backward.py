"""Reverse-mode differentiation of an ONNX graph, emitted as ONNX nodes.

``differentiate`` takes a model (e.g. a configured feature extractor), the input to
differentiate and, for some of its values, the name of a cotangent the caller feeds; it
returns the model's graph with nodes added that compute the vector-Jacobian product
``sum_k <cotangent_k, d value_k / d input>``, so that the forward and its backward run in one
onnxruntime session. One rule per operator (``RULES``); a value that does not depend on the
input through floating-point operators (weights, shapes) is a constant. An operator on the
path from the input to a seeded value without a rule, or with attributes its rule does not
handle, raises ``NoBackward`` naming it.

Conventions at kinks follow torch autograd: Relu and LeakyRelu pass the gradient where the
input is > 0, Clip where min <= x <= max, MaxPool to the element onnxruntime's Indices name
(the first maximum of a window).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx.shape_inference
from onnx import TensorProto, helper, numpy_helper

FLOATS = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16})
STOPS = frozenset({"Shape", "Size"})
"""Operators whose outputs describe their input's shape, not its values: no gradient flows."""


class NoBackward(ValueError):
    """A node on the differentiated path has no backward here; the message names it and why."""


Dims = tuple[int | None, ...]


@dataclass
class Context:
    """What the rules read (value types, constants, which values depend on the input) and
    the nodes they emit, under names no graph value uses."""

    types: dict[str, tuple[int, Dims | None]]
    constants: dict[str, np.ndarray]
    active: set[str]
    taken: set[str]
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    count: int = 0

    def fresh(self, hint: str) -> str:
        while True:
            self.count += 1
            name = f"grad/{hint}_{self.count}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def op(self, op_type: str, inputs: Sequence[str], *, outputs: int = 1, **attrs: Any) -> list[str]:
        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=names[0], **attrs))
        return names

    def one(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        return self.op(op_type, inputs, **attrs)[0]

    def const(self, value: np.ndarray, hint: str = "c") -> str:
        name = self.fresh(hint)
        self.nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name)))
        return name

    def ints(self, values: Sequence[int]) -> str:
        return self.const(np.asarray(values, dtype=np.int64), "ints")

    def scalar_like(self, value: float, like: str) -> str:
        """A scalar in ``like``'s element type."""
        return self.one("CastLike", self.const(np.array(value, dtype=np.float64), "scalar"), like)

    def rank(self, name: str, node: onnx.NodeProto) -> int:
        dims = self.types.get(name, (0, None))[1]
        if dims is None:
            raise NoBackward(f"{_describe(node)}: the rank of {name!r} is unknown (export it with static ranks)")
        return len(dims)

    def elem_type(self, name: str) -> int:
        return self.types.get(name, (TensorProto.FLOAT, None))[0]

    def zeros_like(self, name: str) -> str:
        zero = helper.make_tensor("zero", self.elem_type(name), [1], [0])
        return self.one("ConstantOfShape", self.one("Shape", name), value=zero)

    def unbroadcast(self, gradient: str, operand: str, node: onnx.NodeProto) -> str:
        """``gradient`` (the node output's shape) summed back to ``operand``'s shape
        (multidirectional broadcasting: leading axes, and axes where the operand has size 1)."""
        out_rank, rank = self.rank(node.output[0], node), self.rank(operand, node)
        dims = self.types[operand][1]
        out_dims = self.types[node.output[0]][1]
        assert dims is not None and out_dims is not None
        lead = out_rank - rank
        static = [d for d in dims if d is not None]
        if len(static) == len(dims):
            axes = [*range(lead), *(lead + i for i, d in enumerate(static) if d == 1 and out_dims[lead + i] != 1)]
            if not axes:
                return gradient
            summed = self.one("ReduceSum", gradient, self.ints(axes), keepdims=1)
            return self.one("Reshape", summed, self.ints(static)) if lead else summed
        # sizes known only at run time: sum over every axis where the (padded) operand has size 1
        padded = self.one("Concat", self.ints([1] * lead), self.one("Shape", operand), axis=0)
        ones = self.one("Equal", padded, self.ints([1]))
        axes_name = self.one("Reshape", self.one("NonZero", ones), self.ints([-1]))
        summed = self.one("ReduceSum", gradient, axes_name, keepdims=1, noop_with_empty_axes=1)
        return self.one("Reshape", summed, self.one("Shape", operand))


def _describe(node: onnx.NodeProto) -> str:
    return f"{node.op_type} node {node.name!r}" if node.name else f"{node.op_type} node"


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


Rule = Callable[[Context, onnx.NodeProto, list[str | None]], dict[int, str]]
"""(context, forward node, cotangent of each output or None) -> gradient of each active input by position."""


def _only(ctx: Context, node: onnx.NodeProto, allowed: Sequence[int]) -> list[int]:
    """The node's active input positions; an active input elsewhere (e.g. a computed
    convolution weight) has no backward here."""
    active = [i for i, name in enumerate(node.input) if name and name in ctx.active]
    for i in active:
        if i not in allowed:
            raise NoBackward(f"{_describe(node)}: its input {i} ({node.input[i]!r}) depends on the images")
    return active


def _cotangent(node: onnx.NodeProto, cotangents: list[str | None]) -> str:
    gradient = cotangents[0]
    if gradient is None or any(c is not None for c in cotangents[1:]):
        raise NoBackward(f"{_describe(node)}: only its first output can be differentiated")
    return gradient


def _same(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    _only(ctx, node, [0])
    return {0: _cotangent(node, cotangents)}


def _reshape_back(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    """Flatten, Reshape, Squeeze, Unsqueeze: the gradient has the input's shape."""
    _only(ctx, node, [0])
    return {0: ctx.one("Reshape", _cotangent(node, cotangents), ctx.one("Shape", node.input[0]))}


def _transpose(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    _only(ctx, node, [0])
    perm = _attrs(node).get("perm")
    order = list(perm) if perm is not None else list(reversed(range(ctx.rank(node.input[0], node))))  # type: ignore[call-overload]
    inverse = [order.index(i) for i in range(len(order))]
    return {0: ctx.one("Transpose", _cotangent(node, cotangents), perm=inverse)}


def _relu(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    _only(ctx, node, [0])
    g, x = _cotangent(node, cotangents), node.input[0]
    positive = ctx.one("Greater", x, ctx.scalar_like(0.0, x))
    return {0: ctx.one("Where", positive, g, ctx.scalar_like(0.0, g))}


def _leaky_relu(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    _only(ctx, node, [0])
    g, x = _cotangent(node, cotangents), node.input[0]
    alpha = float(_attrs(node).get("alpha", 0.01))  # type: ignore[arg-type]
    positive = ctx.one("Greater", x, ctx.scalar_like(0.0, x))
    return {0: ctx.one("Where", positive, g, ctx.one("Mul", g, ctx.scalar_like(alpha, g)))}


def _sigmoid(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    _only(ctx, node, [0])
    g, y = _cotangent(node, cotangents), node.output[0]
    slope = ctx.one("Mul", y, ctx.one("Sub", ctx.scalar_like(1.0, y), y))
    return {0: ctx.one("Mul", g, slope)}


def _clip(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    _only(ctx, node, [0])
    g, x = _cotangent(node, cotangents), node.input[0]
    inside: str | None = None
    for position, compare in ((1, "GreaterOrEqual"), (2, "LessOrEqual")):
        if len(node.input) > position and node.input[position]:
            test = ctx.one(compare, x, node.input[position])
            inside = test if inside is None else ctx.one("And", inside, test)
    return {0: g if inside is None else ctx.one("Where", inside, g, ctx.scalar_like(0.0, g))}


def _add_sub(sign: float) -> Rule:
    def rule(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
        g = _cotangent(node, cotangents)
        result = {}
        for i in _only(ctx, node, [0, 1]):
            gi = ctx.unbroadcast(g, node.input[i], node)
            result[i] = ctx.one("Neg", gi) if i == 1 and sign < 0 else gi
        return result

    return rule


def _mul(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    g = _cotangent(node, cotangents)
    a, b = node.input[0], node.input[1]
    return {i: ctx.unbroadcast(ctx.one("Mul", g, (b, a)[i]), (a, b)[i], node) for i in _only(ctx, node, [0, 1])}


def _div(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    g = _cotangent(node, cotangents)
    a, b, y = node.input[0], node.input[1], node.output[0]
    result = {}
    for i in _only(ctx, node, [0, 1]):
        if i == 0:
            result[0] = ctx.unbroadcast(ctx.one("Div", g, b), a, node)
        else:  # d(a/b)/db = -y/b
            local = ctx.one("Neg", ctx.one("Div", ctx.one("Mul", g, y), b))
            result[1] = ctx.unbroadcast(local, b, node)
    return result


def _swap_last(ctx: Context, name: str, node: onnx.NodeProto) -> str:
    rank = ctx.rank(name, node)
    return ctx.one("Transpose", name, perm=[*range(rank - 2), rank - 1, rank - 2])


def _matmul(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    g = _cotangent(node, cotangents)
    a, b = node.input[0], node.input[1]
    active = _only(ctx, node, [0, 1])
    if ctx.rank(a, node) < 2 or ctx.rank(b, node) < 2:
        raise NoBackward(f"{_describe(node)}: a 1-D operand (vector product) has no backward here")
    result = {}
    if 0 in active:
        result[0] = ctx.unbroadcast(ctx.one("MatMul", g, _swap_last(ctx, b, node)), a, node)
    if 1 in active:
        result[1] = ctx.unbroadcast(ctx.one("MatMul", _swap_last(ctx, a, node), g), b, node)
    return result


def _gemm(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    """Y = alpha A' B' + beta C, A' = A or A^T (transA), B' likewise."""
    g = _cotangent(node, cotangents)
    attrs = _attrs(node)
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))  # type: ignore[arg-type]
    ta, tb = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))  # type: ignore[call-overload]
    a, b = node.input[0], node.input[1]
    result = {}
    for i in _only(ctx, node, [0, 1, 2]):
        if i == 0:  # dA' = alpha g B'^T
            result[0] = (
                ctx.one("Gemm", b, g, alpha=alpha, transA=tb, transB=1)
                if ta
                else ctx.one("Gemm", g, b, alpha=alpha, transB=1 - tb)
            )
        elif i == 1:  # dB' = alpha A'^T g
            result[1] = (
                ctx.one("Gemm", g, a, alpha=alpha, transA=1, transB=ta)
                if tb
                else ctx.one("Gemm", a, g, alpha=alpha, transA=1 - ta)
            )
        else:
            scaled = ctx.one("Mul", g, ctx.scalar_like(beta, g)) if beta != 1.0 else g
            result[2] = ctx.unbroadcast(scaled, node.input[2], node)
    return result


def _spatial(ctx: Context, node: onnx.NodeProto, kernel: Sequence[int]) -> dict[str, list[int]]:
    """Strides, pads, dilations of a convolution or pool with explicit padding."""
    attrs = _attrs(node)
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    k = len(kernel)
    if auto_pad not in ("NOTSET", "VALID"):
        raise NoBackward(f"{_describe(node)}: auto_pad={auto_pad} has no backward here (export explicit pads)")
    pads = [0] * (2 * k) if auto_pad == "VALID" else list(attrs.get("pads", [0] * (2 * k)))  # type: ignore[call-overload]
    return {
        "strides": list(attrs.get("strides", [1] * k)),  # type: ignore[call-overload]
        "pads": pads,
        "dilations": list(attrs.get("dilations", [1] * k)),  # type: ignore[call-overload]
    }


def _transpose_conv(ctx: Context, g: str, weight: str, x: str, spatial: dict[str, list[int]], group: int) -> str:
    """The input gradient of a convolution of ``x`` by ``weight``: the transposed convolution
    with the same weights. The forward drops the last ``(in + pads - extent) mod stride``
    rows; output_padding = stride - 1 makes at least ``in`` rows (each row is that input
    row's gradient), and a Slice keeps the first ``in``."""
    strides = spatial["strides"]
    padding = [s - 1 for s in strides]
    out = ctx.one("ConvTranspose", g, weight, group=group, output_padding=padding, **spatial)
    if all(s == 1 for s in strides):
        return out
    k = len(strides)
    sizes = ctx.one("Shape", x, start=2)
    return ctx.one("Slice", out, ctx.ints([0] * k), sizes, ctx.ints(list(range(2, 2 + k))))


def _conv(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    _only(ctx, node, [0])
    x, weight = node.input[0], node.input[1]
    dims = ctx.types.get(weight, (0, None))[1]
    if dims is None or None in dims:
        raise NoBackward(f"{_describe(node)}: its weight's shape is unknown")
    group = int(_attrs(node).get("group", 1))  # type: ignore[call-overload]
    spatial = _spatial(ctx, node, [d for d in dims[2:] if d is not None])
    return {0: _transpose_conv(ctx, _cotangent(node, cotangents), weight, x, spatial, group)}


def _max_pool(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    """Each output's gradient added (ScatterElements, reduction add: windows overlap) to the
    input element its Indices output names (flat over the whole input tensor)."""
    _only(ctx, node, [0])
    g, x = _cotangent(node, cotangents), node.input[0]
    if int(_attrs(node).get("storage_order", 0)) != 0:  # type: ignore[call-overload]
        raise NoBackward(f"{_describe(node)}: storage_order=1 has no backward here")
    if len(node.output) < 2 or not node.output[1]:
        indices = ctx.fresh("max_pool_indices")
        del node.output[1:]
        node.output.append(indices)  # the forward node is the graph's own copy: it now also gives Indices
    flat = ctx.ints([-1])
    zeros = ctx.one("Reshape", ctx.zeros_like(x), flat)
    indices_flat = ctx.one("Reshape", node.output[1], flat)
    scattered = ctx.one("ScatterElements", zeros, indices_flat, ctx.one("Reshape", g, flat), axis=0, reduction="add")
    return {0: ctx.one("Reshape", scattered, ctx.one("Shape", x))}


def _average_pool(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    """Each channel alone (as (N*C, 1, ...)) through the transposed convolution with the
    constant kernel 1/K; without count_include_pad, windows over padding divide by their
    own count first (K x AveragePool of ones, with padding counted)."""
    _only(ctx, node, [0])
    g, x = _cotangent(node, cotangents), node.input[0]
    attrs = _attrs(node)
    kernel = list(attrs["kernel_shape"])  # type: ignore[call-overload]
    if int(attrs.get("ceil_mode", 0)):  # type: ignore[call-overload]
        raise NoBackward(f"{_describe(node)}: ceil_mode=1 has no backward here")
    spatial = _spatial(ctx, node, kernel)
    if not int(attrs.get("count_include_pad", 0)) and any(spatial["pads"]):  # type: ignore[call-overload]
        ones_shape = ctx.one("Concat", ctx.ints([1, 1]), ctx.one("Shape", x, start=2), axis=0)
        one = helper.make_tensor("one", ctx.elem_type(x), [1], [1])
        ones = ctx.one("ConstantOfShape", ones_shape, value=one)
        pool = {"kernel_shape": kernel, "pads": spatial["pads"], "strides": spatial["strides"]}
        if "dilations" in attrs:  # opset 19 and later
            pool["dilations"] = spatial["dilations"]
        fraction = ctx.one("AveragePool", ones, count_include_pad=1, **pool)
        g = ctx.one("Div", g, fraction)
    channels_alone = ctx.one("Concat", ctx.ints([-1, 1]), ctx.one("Shape", g, start=2), axis=0)
    numpy_type = helper.tensor_dtype_to_np_dtype(ctx.elem_type(x))
    weight = ctx.const(np.full([1, 1, *kernel], 1.0 / float(np.prod(kernel)), dtype=numpy_type), "pool_kernel")
    x_alone = ctx.one("Reshape", x, ctx.one("Concat", ctx.ints([-1, 1]), ctx.one("Shape", x, start=2), axis=0))
    spread = _transpose_conv(ctx, ctx.one("Reshape", g, channels_alone), weight, x_alone, spatial, 1)
    return {0: ctx.one("Reshape", spread, ctx.one("Shape", x))}


def _global_average_pool(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    _only(ctx, node, [0])
    g, x = _cotangent(node, cotangents), node.input[0]
    count = ctx.one("CastLike", ctx.one("ReduceProd", ctx.one("Shape", x, start=2), keepdims=0), g)
    return {0: ctx.one("Expand", ctx.one("Div", g, count), ctx.one("Shape", x))}


def _batch_norm(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    """Inference mode: y = scale (x - mean) / sqrt(var + eps) + B, a per-channel affine map."""
    _only(ctx, node, [0])
    attrs = _attrs(node)
    if int(attrs.get("training_mode", 0)) or any(node.output[1:]):  # type: ignore[call-overload]
        raise NoBackward(f"{_describe(node)}: training mode (batch statistics) has no backward here")
    g, x, scale, var = _cotangent(node, cotangents), node.input[0], node.input[1], node.input[4]
    epsilon = ctx.scalar_like(float(attrs.get("epsilon", 1e-5)), var)  # type: ignore[arg-type]
    factor = ctx.one("Div", scale, ctx.one("Sqrt", ctx.one("Add", var, epsilon)))
    rank = ctx.rank(x, node)
    if rank > 2:
        factor = ctx.one("Unsqueeze", factor, ctx.ints(list(range(1, rank - 1))))
    return {0: ctx.one("Mul", g, factor)}


def _concat(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    active = _only(ctx, node, list(range(len(node.input))))
    g = _cotangent(node, cotangents)
    axis = int(_attrs(node)["axis"])  # type: ignore[call-overload]
    if axis < 0:
        axis += ctx.rank(node.output[0], node)
    sizes = [ctx.one("Shape", x, start=axis, end=axis + 1) for x in node.input]
    pieces = ctx.op("Split", [g, ctx.one("Concat", *sizes, axis=0)], outputs=len(node.input), axis=axis)
    return {i: pieces[i] for i in active}


def _pad(ctx: Context, node: onnx.NodeProto, cotangents: list[str | None]) -> dict[int, str]:
    """Constant padding: the gradient is the cotangent padded by the negated pads (the
    added borders cut off, any cropping padded back with zeros)."""
    _only(ctx, node, [0])
    mode = _attrs(node).get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode != "constant":
        raise NoBackward(f"{_describe(node)}: mode={mode} has no backward here (only constant padding)")
    inputs = [_cotangent(node, cotangents), ctx.one("Neg", node.input[1])]
    if len(node.input) > 3 and node.input[3]:
        inputs += ["", node.input[3]]
    return {0: ctx.one("Pad", *inputs)}


RULES: dict[str, Rule] = {
    "Conv": _conv,
    "Relu": _relu,
    "LeakyRelu": _leaky_relu,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "GlobalAveragePool": _global_average_pool,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _add_sub(1.0),
    "Sub": _add_sub(-1.0),
    "Mul": _mul,
    "Div": _div,
    "BatchNormalization": _batch_norm,
    "Flatten": _reshape_back,
    "Reshape": _reshape_back,
    "Squeeze": _reshape_back,
    "Unsqueeze": _reshape_back,
    "Concat": _concat,
    "Clip": _clip,
    "Sigmoid": _sigmoid,
    "Pad": _pad,
    "Transpose": _transpose,
    "Identity": _same,
}
"""The operators with a backward, by ONNX op type (default domain)."""


@dataclass(frozen=True)
class Differentiated:
    graph: onnx.GraphProto
    """The model's graph, its MaxPool nodes also giving Indices, with the backward nodes
    appended; it reads the seeds as extra (undeclared) inputs."""
    gradient: str
    """The value holding the vector-Jacobian product, shaped like the differentiated input."""


def _value_types(model: onnx.ModelProto) -> dict[str, tuple[int, Dims | None]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types: dict[str, tuple[int, Dims | None]] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if not value.type.HasField("tensor_type"):
            continue
        tensor = value.type.tensor_type
        dims = (
            tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
            if tensor.HasField("shape")
            else None
        )
        types[value.name] = (tensor.elem_type, dims)
    for init in graph.initializer:
        types[init.name] = (init.data_type, tuple(init.dims))
    return types


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    found = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            found[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return found


def differentiate(model: onnx.ModelProto, wrt: str, seeds: Mapping[str, str]) -> Differentiated:
    """The backward of ``model`` from ``seeds`` (graph value -> the name of its cotangent, fed by
    the caller) to ``wrt``; ``NoBackward`` where a node on the way has none."""
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)
    types = _value_types(model)
    constants = _constants(graph)
    taken = {wrt, *seeds.values(), *(i.name for i in graph.initializer), *(i.name for i in graph.input)}
    taken |= {out for node in graph.node for out in node.output}
    active = {wrt}
    for node in graph.node:
        if node.op_type in STOPS or not any(name in active for name in node.input):
            continue
        active |= {out for out in node.output if out and types.get(out, (TensorProto.FLOAT, None))[0] in FLOATS}
    ctx = Context(types, constants, active, taken)
    cotangents: dict[str, list[str]] = {}
    for value, seed in seeds.items():
        if value in active:
            cotangents.setdefault(value, []).append(seed)

    def total(name: str) -> str | None:
        parts = cotangents.get(name)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else ctx.one("Sum", *parts)

    for node in reversed(graph.node):
        outs = [total(out) if out in active else None for out in node.output]
        if all(c is None for c in outs):
            continue
        rule = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if rule is None:
            raise NoBackward(f"{_describe(node)}: operator {node.op_type} has no backward here")
        for position, gradient in rule(ctx, node, outs).items():
            cotangents.setdefault(node.input[position], []).append(gradient)
    gradient = total(wrt) or ctx.zeros_like(wrt)
    graph.node.extend(ctx.nodes)
    return Differentiated(graph, gradient)


def supported(model: onnx.ModelProto, wrt: str, outputs: Sequence[str]) -> str | None:
    """None when ``differentiate`` can build the backward from every output to ``wrt``, else why not."""
    try:
        differentiate(model, wrt, {out: f"seed/{k}" for k, out in enumerate(outputs)})
    except NoBackward as exc:
        return str(exc)
    return None
