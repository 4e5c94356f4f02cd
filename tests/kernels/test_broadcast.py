"""Broadcasting operands reach onnxruntime at equal rank (its fast path for every layout)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from kernels import REGISTRY
from kernels.broadcast import BROADCASTING, equalize_ranks
from kernels.graph import GraphKey, build_model, columnable
from kernels.spec import LossSpec


def unequal(model: onnx.ModelProto) -> list[str]:
    """Broadcasting nodes of the main graph whose operands differ in rank."""
    inferred = onnx.shape_inference.infer_shapes(model).graph
    ranks = {t.name: len(t.dims) for t in inferred.initializer}
    for value in [*inferred.input, *inferred.value_info, *inferred.output]:
        if value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    found = []
    for node in inferred.node:
        if node.op_type in BROADCASTING:
            have = {ranks.get(name) for name in node.input}
            if len(have) > 1:
                found.append(f"{node.op_type}{[ranks.get(n) for n in node.input]}")
    return found


def test_a_scalar_meets_a_column_at_its_rank_and_the_values_stay() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    nodes = [helper.make_node("Sub", ["two", "x"], ["d"]), helper.make_node("Where", ["c", "d", "x"], ["y"])]
    nodes.insert(0, helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [1])))
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert unequal(model) == ["Sub[0, 2]", "Where[0, 2, 2]"]
    data = np.arange(5, dtype=np.float32).reshape(5, 1)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": data})[0]
    equalize_ranks(model)
    onnx.checker.check_model(model, full_check=True)
    assert unequal(model) == []
    np.testing.assert_array_equal(ort.InferenceSession(model.SerializeToString()).run(None, {"x": data})[0], before)


LAYOUTS = [(s, False) for s in REGISTRY if not s.configured] + [(s, True) for s in REGISTRY if columnable(s)]


@pytest.mark.parametrize(
    ("spec", "column"), LAYOUTS, ids=lambda x: x.name if isinstance(x, LossSpec) else ("column" if x else "rows")
)
def test_every_graph_broadcasts_at_equal_rank(spec: LossSpec, column: bool) -> None:
    """Each loss's first variant, with gradients, in each layout (graphs around configured models are left out)."""
    key = GraphKey(spec.name, spec.variants[0], "float32", bool(spec.differentiable), column)
    assert unequal(build_model(spec, key)) == []
