"""kernels.backward, one operator at a time: the backward graph against central finite differences.

Each case is a one- or two-node graph ``x -> y`` (seeded float64 weights as initializers);
the check is the vector-Jacobian product with a random cotangent ``r``, i.e. the gradient of
``sum(r * y)``. float64: the backward graph and the differences both run on onnxruntime, or on the ONNX
reference evaluator where onnxruntime has no float64 kernel (Conv, ConvTranspose, AveragePool),
within 1e-6. float32:
the same graphs on onnxruntime, within 1e-4 of the float64 gradient, which checks that
onnxruntime's kernels (ConvTranspose's output padding, MaxPool's Indices, ScatterElements)
mean what the rules assume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops.op_conv_transpose import ConvTranspose as ReferenceConvTranspose

from kernels.backward import NoBackward, differentiate, supported

IR_VERSION = 8
TYPES = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}


@dataclass(frozen=True)
class Case:
    nodes: tuple[tuple[str, tuple[str, ...], dict[str, Any]], ...]
    """(op, inputs, attributes): reads ``x`` and the initializers, the last one writes ``y``."""
    shape: tuple[int, ...]
    weights: dict[str, tuple[int, ...] | np.ndarray] = field(default_factory=dict)
    """Float initializers by shape (seeded normal values) or given values (integer ones as is)."""
    symbolic: bool = False
    """Declare ``x`` with symbolic sizes (the rules then see unknown dims)."""


def node(op: str, *inputs: str, **attrs: Any) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    return (op, inputs, attrs)


def one(op: str, *extra: str, **attrs: Any) -> tuple[tuple[str, tuple[str, ...], dict[str, Any]], ...]:
    return (node(op, "x", *extra, **attrs),)


I64 = np.int64
CASES: dict[str, Case] = {
    "conv": Case(one("Conv", "w", "b", pads=[1, 1, 1, 1]), (2, 3, 6, 5), {"w": (4, 3, 3, 3), "b": (4,)}),
    "conv-stride-asymmetric-pads": Case(
        one("Conv", "w", strides=[2, 3], pads=[1, 0, 0, 2]), (1, 2, 7, 8), {"w": (3, 2, 3, 3)}
    ),
    "conv-dilations": Case(one("Conv", "w", dilations=[2, 1], pads=[2, 1, 2, 0]), (1, 2, 8, 7), {"w": (3, 2, 3, 2)}),
    "conv-groups-stride": Case(
        one("Conv", "w", group=2, strides=[2, 2], pads=[1, 1, 1, 1]), (2, 4, 5, 6), {"w": (6, 2, 3, 3)}
    ),
    "conv-depthwise": Case(one("Conv", "w", group=3, pads=[1, 1, 1, 1]), (1, 3, 4, 4), {"w": (3, 1, 3, 3)}),
    "conv-valid-stride-3": Case(one("Conv", "w", auto_pad="VALID", strides=[3, 3]), (1, 2, 8, 7), {"w": (2, 2, 2, 2)}),
    "conv-1d": Case(one("Conv", "w", strides=[2], pads=[1, 1]), (2, 3, 9), {"w": (2, 3, 3)}),
    "conv-symbolic-sizes": Case(one("Conv", "w", strides=[2, 2], pads=[1, 1, 1, 1]), (2, 2, 7, 6), {"w": (3, 2, 3, 3)},
                                symbolic=True),
    "max-pool": Case(one("MaxPool", kernel_shape=[2, 2], strides=[2, 2]), (2, 3, 6, 4)),
    "max-pool-overlapping-pads": Case(one("MaxPool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), (2, 2, 5, 4)),
    "max-pool-odd-ceil-dilations": Case(
        one("MaxPool", kernel_shape=[2, 2], strides=[2, 2], dilations=[2, 1], ceil_mode=1), (1, 2, 7, 5)
    ),
    "average-pool": Case(one("AveragePool", kernel_shape=[2, 2], strides=[2, 2]), (2, 3, 7, 6)),
    "average-pool-pads-counted": Case(
        one("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1), (1, 2, 6, 7)
    ),
    "average-pool-pads-not-counted": Case(
        one("AveragePool", kernel_shape=[3, 2], strides=[1, 2], pads=[1, 0, 1, 1]), (2, 2, 5, 5)
    ),
    "global-average-pool": Case(one("GlobalAveragePool"), (2, 3, 4, 5)),
    "gemm": Case(one("Gemm", "w", "b", transB=1), (3, 5), {"w": (4, 5), "b": (4,)}),
    "gemm-transposed-a-scaled": Case(
        one("Gemm", "w", "b", transA=1, alpha=0.5, beta=2.0), (5, 3), {"w": (5, 4), "b": (1, 4)}
    ),
    "matmul": Case(one("MatMul", "w"), (2, 3, 4, 5), {"w": (5, 2)}),
    "matmul-batched-weight": Case(one("MatMul", "w"), (3, 4, 5), {"w": (2, 1, 5, 3)}),
    "add-broadcast": Case(one("Add", "b"), (2, 3, 4, 5), {"b": (3, 1, 1)}),
    "sub-from-constant": Case((node("Sub", "b", "x"),), (2, 3, 4), {"b": (1, 3, 1)}),
    "mul-broadcast": Case(one("Mul", "b"), (2, 3, 4, 5), {"b": (1, 3, 1, 5)}),
    "mul-self": Case(one("Mul", "x"), (2, 3)),
    "div-by-constant": Case(one("Div", "b"), (2, 3, 4), {"b": np.array([1.5, -2.0, 3.0, 0.7])}),
    "div-constant-by-x": Case((node("Div", "b", "x"),), (2, 3), {"b": (2, 1)}),
    "add-dynamic-broadcast": Case(
        (node("GlobalAveragePool", "x", name="gap"), node("Add", "x", "gap_out")), (2, 3, 4, 3), symbolic=True
    ),
    "batch-normalization": Case(
        one("BatchNormalization", "scale", "bias", "mean", "var", epsilon=1e-3),
        (2, 3, 4, 4),
        {"scale": (3,), "bias": (3,), "mean": (3,), "var": np.array([0.5, 1.5, 2.0])},
    ),
    "batch-normalization-rank-2": Case(
        one("BatchNormalization", "scale", "bias", "mean", "var"),
        (4, 3),
        {"scale": (3,), "bias": (3,), "mean": (3,), "var": np.array([0.5, 1.5, 2.0])},
    ),
    "flatten": Case(one("Flatten", axis=2), (2, 3, 4, 2)),
    "reshape": Case(one("Reshape", "shape"), (2, 3, 4), {"shape": np.array([0, -1], I64)}),
    "squeeze-unsqueeze": Case(
        (node("Unsqueeze", "x", "axes", name="u"), node("Squeeze", "u_out", "axes")),
        (2, 3),
        {"axes": np.array([1], I64)},
    ),
    "concat": Case((node("Relu", "x", name="r"), node("Concat", "x", "r_out", "x", axis=1)), (2, 3, 2)),
    "concat-last-axis": Case((node("Sigmoid", "x", name="s"), node("Concat", "s_out", "x", axis=-1)), (2, 2, 3)),
    "clip": Case(one("Clip", "lo", "hi"), (3, 4, 5), {"lo": np.array(-0.5), "hi": np.array(0.8)}),
    "clip-min-only": Case(one("Clip", "lo"), (3, 4), {"lo": np.array(-0.2)}),
    "sigmoid": Case(one("Sigmoid"), (3, 4)),
    "relu": Case(one("Relu"), (3, 4, 2)),
    "leaky-relu": Case(one("LeakyRelu", alpha=0.2), (3, 4, 2)),
    "pad": Case(one("Pad", "pads"), (2, 2, 3, 4), {"pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], I64)}),
    "pad-crop": Case(one("Pad", "pads"), (2, 2, 4, 4), {"pads": np.array([0, 1, -1, 1, 0, 0, 1, -2], I64)}),
    "pad-axes": Case(one("Pad", "pads", "", "axes"), (2, 2, 3, 3),
                     {"pads": np.array([1, 2, 0, 1], I64), "axes": np.array([2, 3], I64)}),
    "transpose": Case(one("Transpose", perm=[0, 2, 3, 1]), (2, 3, 4, 2)),
    "identity-of-a-constant-path": Case(
        (node("Shape", "x", name="sh"), node("Reshape", "x", "sh_out", name="re"), node("Identity", "re_out")),
        (2, 3),
    ),
}  # fmt: skip


def build(case: Case, dtype: type[np.floating[Any]]) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    inits = []
    for name, spec in case.weights.items():
        value = np.asarray(spec) if isinstance(spec, np.ndarray) else rng.normal(size=spec)
        inits.append(numpy_helper.from_array(value.astype(dtype) if value.dtype.kind == "f" else value, name))
    nodes = []
    for k, (op, inputs, attrs) in enumerate(case.nodes):
        attrs = dict(attrs)
        name = attrs.pop("name", None)
        output = "y" if k == len(case.nodes) - 1 else f"{name}_out"
        nodes.append(helper.make_node(op, list(inputs), [output], name=name or op, **attrs))
    dims: list[Any] = [f"d{i}" for i in range(len(case.shape))] if case.symbolic else list(case.shape)
    graph = helper.make_graph(
        nodes,
        "case",
        [helper.make_tensor_value_info("x", TYPES[dtype], dims)],
        [helper.make_tensor_value_info("y", TYPES[dtype], None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION)


def with_gradient(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model plus the backward from a cotangent input ``r`` of ``y`` to ``x``."""
    result = differentiate(model, "x", {"y": "r"})
    graph = result.graph
    elem = graph.input[0].type.tensor_type.elem_type
    graph.input.append(helper.make_tensor_value_info("r", elem, None))
    graph.output.append(helper.make_tensor_value_info(result.gradient, elem, None))
    gradient_model = helper.make_model(graph, opset_imports=model.opset_import, ir_version=IR_VERSION)
    return gradient_model


class ConvTranspose(ReferenceConvTranspose):  # new_ops replace an operator by the class's name
    """The reference evaluator's ConvTranspose (onnx 1.x) fails for group > 1: each group alone."""

    def _run(  # type: ignore[override]
        self, X: np.ndarray, W: np.ndarray, B: np.ndarray | None = None, **attrs: Any
    ) -> tuple[np.ndarray]:
        group = attrs.pop("group", None) or 1
        if group == 1:
            return super()._run(X, W, B, group=1, **attrs)  # type: ignore[no-any-return,no-untyped-call]
        xs, ws = np.split(X, group, axis=1), np.split(W, group, axis=0)
        bs = np.split(B, group) if B is not None else [None] * group
        parts = [
            ReferenceConvTranspose._run(self, x, w, b, group=1, **attrs)[0]  # type: ignore[no-untyped-call]
            for x, w, b in zip(xs, ws, bs, strict=True)
        ]
        return (np.concatenate(parts, axis=1),)


class Evaluator:
    """onnxruntime where it has every kernel in the model's dtype, else the ONNX reference evaluator."""

    def __init__(self, model: onnx.ModelProto) -> None:
        try:
            self.session: ort.InferenceSession | None = ort.InferenceSession(
                model.SerializeToString(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's NotImplemented has no public class
            assert "NOT_IMPLEMENTED" in str(exc), exc
            self.session, self.reference = None, ReferenceEvaluator(model, new_ops=[ConvTranspose])

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.session is not None:
            result: list[np.ndarray] = self.session.run(None, feeds)
            return result
        return list(self.reference.run(None, feeds))


def finite_differences(model: onnx.ModelProto, x: np.ndarray, r: np.ndarray, h: float = 1e-6) -> np.ndarray:
    forward = Evaluator(model)
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        values = []
        for step in (h, -h):
            moved = x.copy()
            moved[index] += step
            values.append(float(np.sum(r * forward.run({"x": moved})[0])))
        gradient[index] = (values[0] - values[1]) / (2 * h)
    return gradient


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_operator_matches_finite_differences(name: str) -> None:
    case = CASES[name]
    rng = np.random.default_rng(len(name))
    x = rng.normal(size=case.shape)
    model = build(case, np.float64)
    (y,) = Evaluator(model).run({"x": x})
    r = rng.normal(size=y.shape)
    gradient_model = with_gradient(model)
    y64, analytic = Evaluator(gradient_model).run({"x": x, "r": r})
    np.testing.assert_array_equal(y64, y)
    numeric = finite_differences(model, x, r)
    scale = float(np.max(np.abs(numeric)))
    assert scale > 0, "the case's gradient is not all zero"
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7 * scale, err_msg=name)

    model32 = with_gradient(build(case, np.float32))
    session = ort.InferenceSession(model32.SerializeToString(), providers=["CPUExecutionProvider"])
    _, got32 = session.run(None, {"x": x.astype(np.float32), "r": r.astype(np.float32)})
    assert got32.dtype == np.float32 and got32.shape == x.shape
    np.testing.assert_allclose(got32, analytic, rtol=1e-4, atol=1e-5 * scale, err_msg=f"{name} float32 onnxruntime")


UNSUPPORTED: dict[str, tuple[Case, str]] = {
    "softmax": (Case(one("Softmax"), (2, 3)), "operator Softmax has no backward"),
    "same-padding": (Case(one("Conv", "w", auto_pad="SAME_UPPER"), (1, 2, 4, 4), {"w": (2, 2, 3, 3)}), "auto_pad"),
    "reflect-padding": (Case(one("Pad", "pads", mode="reflect"), (1, 1, 4, 4),
                             {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], I64)}), "mode=reflect"),
    "ceil-mode-average": (Case(one("AveragePool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), (1, 1, 5, 5)),
                          "ceil_mode=1"),
    "computed-weight": (Case(one("Conv", "x"), (1, 1, 3, 3)), "its input 1"),
    "vector-product": (Case(one("MatMul", "w"), (2, 3), {"w": (3,)}), "1-D operand"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_an_operator_without_a_backward_is_named(name: str) -> None:
    case, words = UNSUPPORTED[name]
    model = build(case, np.float32)
    with pytest.raises(NoBackward, match=words):
        differentiate(model, "x", {"y": "r"})
    reason = supported(model, "x", ["y"])
    assert reason is not None and words in reason


def test_an_unsupported_operator_off_the_path_is_no_obstacle() -> None:
    """Only nodes between the input and a seeded value need a backward: a Softmax on a branch
    nobody seeds, or computing shapes, does not stop it."""
    case = Case((node("Softmax", "x", name="unused"), node("Relu", "x")), (2, 3))
    model = build(case, np.float64)
    assert supported(model, "x", ["y"]) is None
    x = np.array([[1.0, -2.0, 3.0], [-1.0, 0.5, -0.1]])
    r = np.arange(6.0).reshape(2, 3)
    _, gradient = ReferenceEvaluator(with_gradient(model)).run(None, {"x": x, "r": r})
    np.testing.assert_array_equal(gradient, np.where(x > 0, r, 0.0))


def test_a_value_not_reached_from_the_input_has_zero_gradient() -> None:
    case = Case((node("Shape", "x", name="s"), node("Cast", "s_out", to=TensorProto.DOUBLE)), (2, 3))
    model = build(case, np.float64)
    _, gradient = ReferenceEvaluator(with_gradient(model)).run(None, {"x": np.ones((2, 3)), "r": np.ones(2)})
    np.testing.assert_array_equal(gradient, np.zeros((2, 3)))


def test_seeds_of_several_outputs_add_up() -> None:
    """A value that is an output and feeds later nodes gets both cotangents."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Mul", ["a", "a"], ["b"])],
        "two",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [3])],
        [helper.make_tensor_value_info(n, TensorProto.DOUBLE, [3]) for n in ("a", "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION)
    result = differentiate(model, "x", {"a": "ra", "b": "rb"})
    result.graph.input.extend(helper.make_tensor_value_info(n, TensorProto.DOUBLE, [3]) for n in ("ra", "rb"))
    result.graph.output.append(helper.make_tensor_value_info(result.gradient, TensorProto.DOUBLE, [3]))
    evaluator = ReferenceEvaluator(helper.make_model(result.graph, opset_imports=model.opset_import))
    x, ra, rb = np.array([1.0, -2.0, 3.0]), np.array([1.0, 1.0, 2.0]), np.array([0.5, 1.0, -1.0])
    (gradient,) = list(evaluator.run([result.gradient], {"x": x, "ra": ra, "rb": rb}))
    np.testing.assert_allclose(gradient, np.where(x > 0, ra + 2 * x * rb, 0.0))


def test_names_are_fresh() -> None:
    """Backward names never collide with the graph's own values."""
    case = Case((node("Relu", "x", name="grad/greater_1"), node("Relu", "grad/greater_1_out")), (2,))
    model = build(case, np.float64)
    graph = differentiate(model, "x", {"y": "r"}).graph
    outputs: Sequence[str] = [o for n in graph.node for o in n.output]
    assert len(outputs) == len(set(outputs))
