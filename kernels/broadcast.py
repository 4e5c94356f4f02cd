"""Broadcast operands at equal rank, so a loss's cost does not depend on its layout.

onnxruntime's CPU broadcasting takes a slow path, one inner loop per row, when a
lower-rank operand (a scalar constant, a param) meets a tensor whose last axis has
size 1. That is the layout of the most common request: one prediction per sample,
``(N,)``, fed as ``(N, 1)`` once its "..." axes are collapsed. Measured (2 threads,
1M elements): ``(N, 1) - ()`` 12 ms, ``(N, 1) - (1, 1)`` 0.1 ms, ``(N, 10) - ()``
0.13 ms. Giving the lower-rank operand leading axes of size 1 (an ``Unsqueeze``,
folded away for constants) makes every layout take the fast path.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

BROADCASTING = frozenset(
    {
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Pow",
        "Max",
        "Min",
        "Mod",
        "Where",
        "Equal",
        "Greater",
        "GreaterOrEqual",
        "Less",
        "LessOrEqual",
        "And",
        "Or",
        "Xor",
        "PRelu",
        "BitShift",
    }
)


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """The rank of every value whose rank shape inference knows."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    ranks = {t.name: len(t.dims) for t in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    return ranks


def equalize_ranks(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every lower-rank operand of a broadcasting node unsqueezed to the
    node's rank (in place; nodes inside subgraphs are left as they are)."""
    ranks = _ranks(model)
    nodes: list[onnx.NodeProto] = []
    made: dict[tuple[str, int], str] = {}
    for node in model.graph.node:
        known = [ranks.get(name) for name in node.input if name]
        if node.op_type in BROADCASTING and node.domain in ("", "ai.onnx") and None not in known and known:
            rank = max(r for r in known if r is not None)
            for position, name in enumerate(node.input):
                have = ranks[name]
                if have >= rank:
                    continue
                key = (name, rank)
                if key not in made:
                    made[key] = f"{name}__rank{rank}"
                    axes = f"{made[key]}__axes"
                    tensor = helper.make_tensor(axes, TensorProto.INT64, [rank - have], list(range(rank - have)))
                    nodes.append(helper.make_node("Constant", [], [axes], value=tensor))
                    nodes.append(helper.make_node("Unsqueeze", [name, axes], [made[key]]))
                node.input[position] = made[key]
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model
