"""Assemble a loss's kernel and the shared reduction into one checked ONNX model."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Literal

import onnx
import onnxscript.optimizer
from onnx import TensorProto, helper
from onnxscript import ir
from onnxscript.values import OnnxFunction

from kernels.broadcast import equalize_ranks
from kernels.reduction import reduce_column, reduce_loss, reduce_loss_mass, scale_column, scale_gradient
from kernels.spec import NO_RESOURCES, Input, KernelFunction, LossSpec, Params, ProtoKernel, Resources, Variant

Dtype = Literal["float32", "float64"]
DTYPES: tuple[Dtype, ...] = ("float32", "float64")
ELEMENT_TYPE = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}
OPSET = 18
WEIGHTS, MEAN = "weights", "mean"
ROW_WISE = "lossd.row_wise"
"""Model metadata: "true" when each sample's losses depend on its own row alone and the
shared reduction sums them, so the batch may be split by rows (kernels.blocks)."""


@dataclass(frozen=True)
class GraphKey:
    """Identifies one graph: a loss, the values of its structural params, a dtype."""

    loss: str
    variant: Variant
    dtype: Dtype
    gradients: bool
    column: bool = False
    """The column layout: every input one value per sample, ``(N,)`` (see ``columnable``)."""

    @property
    def stem(self) -> str:
        """A file-name-safe identifier, e.g. ``focal.from_logits=true.float32.grad``."""
        parts = [self.loss, *(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in self.variant)]
        parts.append(self.dtype)
        return ".".join([*parts, "grad" if self.gradients else "fwd", *(["column"] if self.column else [])])


def columnable(spec: LossSpec) -> bool:
    """Whether the loss has a column layout: its inputs are all element-wise ``(N, ...)`` and
    the shared reduction reduces it. A request of one value per sample (``(N,)``, the most
    common) then runs a graph that takes ``(N,)`` and feeds the kernel the batch as one row
    ``(1, N)``: as ``(N, 1)`` it would pay onnxruntime's slow paths for a last axis of size 1
    (broadcasting row by row, reducing an axis of one), 2-10x at 1M elements."""
    element_wise = all(i.shape == ("N", "...") for i in spec.inputs)
    return element_wise and not (spec.ever_batch_level or spec.mass or spec.configured or spec.reduces_itself)


@dataclass(frozen=True)
class GraphInput:
    name: str
    elem_type: int
    dims: tuple[str | int | None, ...]


def _param_input(params: type[Params], name: str, elem_type: int) -> GraphInput:
    annotation = params.model_fields[name].annotation
    if annotation is float:
        return GraphInput(name, elem_type, ())
    if annotation is int:
        return GraphInput(name, TensorProto.INT64, ())
    # A number or a per-class list (possibly optional): fed as a 1-D tensor. A union with
    # constrained members (Annotated[float, Field(ge=0)] | ...) is a typing.Union, not a UnionType.
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    allowed = typing.get_args(annotation) if union else (annotation,)
    if not any(typing.get_origin(a) is list or a is float for a in allowed):
        raise TypeError(f"param {name!r} of type {annotation} cannot be a graph input")
    return GraphInput(name, elem_type, (None,))


def graph_dims(shape: tuple[str, ...]) -> tuple[str, ...]:
    """A declared shape as the graph sees it: the "..." axes collapsed into one axis."""
    return tuple("R" if dim == "..." else dim for dim in shape)


def graph_shape(spec_input: Input, shape: tuple[int, ...]) -> tuple[int, ...]:
    """An array's shape with its "..." axes collapsed into one, as the graph takes it."""
    if "..." not in spec_input.shape:
        return shape
    before = spec_input.shape.index("...")
    after = len(spec_input.shape) - before - 1
    middle = math.prod(shape[before : len(shape) - after])
    return (*shape[:before], middle, *shape[len(shape) - after :])


def _input_names(function: KernelFunction) -> list[str]:
    if isinstance(function, ProtoKernel):
        return list(function.function.input)
    return [str(param.name) for param in function.function_ir.inputs]


def kernel_inputs(spec: LossSpec, function: KernelFunction, dtype: Dtype, column: bool = False) -> list[GraphInput]:
    """The graph inputs a kernel function consumes, in its declared order (``column``: the
    inputs as ``(N,)``)."""
    elem_type = ELEMENT_TYPE[dtype]
    by_name = {i.name: i for i in spec.inputs}
    fixed = function.input_dims if isinstance(function, ProtoKernel) else {}
    result = []
    for name in _input_names(function):
        if name in by_name:
            spec_input = by_name[name]
            kind = TensorProto.INT64 if spec_input.integer else elem_type
            dims = ("N",) if column else fixed.get(name, graph_dims(spec_input.shape))
            result.append(GraphInput(name, kind, dims))
        elif name in spec.params.model_fields:
            result.append(_param_input(spec.params, name, elem_type))
        elif name == WEIGHTS:
            result.append(GraphInput(WEIGHTS, elem_type, ("N",)))
        elif name == MEAN:
            result.append(GraphInput(MEAN, TensorProto.BOOL, ()))
        else:
            raise ValueError(f"{spec.name}: kernel input {name!r} is neither an input nor a param")
    return result


def _value_info(name: str, elem_type: int, dims: tuple[str | int | None, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, list(dims))


Identity = tuple[str, str]
"""A function's (domain, name): what a node calls it by."""


def _subgraph_nodes(nodes: typing.Iterable[onnx.NodeProto]) -> typing.Iterator[onnx.NodeProto]:
    """Nodes and, recursively, the nodes of their graph attributes (If, Loop, Scan bodies)."""
    for node in nodes:
        yield node
        for attribute in node.attribute:
            for graph in [attribute.g, *attribute.graphs] if attribute.HasField("g") else attribute.graphs:
                yield from _subgraph_nodes(graph.node)


class Functions:
    """The function protos of one model, each distinct function under its own (domain, name).

    Kernels are onnxscript functions named after their Python definitions, so different
    functions share a name: the factories' closures (``overlap_kernel`` of Dice and of
    Tversky, ``probabilities`` of each activation) and the shared pieces of different
    variants. A model holds one function per (domain, name), so gathering several kernels'
    functions by name alone lets one replace another: calls then reach the wrong body (a
    wrong value, or a checker or inliner failure when the arities differ). Here a function
    keeps its name unless a different one already holds it; then it gets the next free
    ``<name>_<k>`` and its callers' nodes are rewritten to it. The same function reached
    twice (the shared reduction, ``log1p``) is one proto: same name and same body after its
    callees are resolved.
    """

    def __init__(self) -> None:
        self._protos: dict[Identity, onnx.FunctionProto] = {}
        self._bodies: dict[tuple[Identity, bytes], Identity] = {}
        self._scripted: dict[int, tuple[OnnxFunction[..., typing.Any], Identity]] = {}

    @property
    def protos(self) -> list[onnx.FunctionProto]:
        return list(self._protos.values())

    def add(self, function: KernelFunction) -> Identity:
        """Add a kernel with everything it calls; the (domain, name) a node calls it by."""
        if isinstance(function, ProtoKernel):
            renames = self.merge(function.functions)
            for call in function.calls:
                original = (call.domain, call.name)
                resolved = self._scripted_identity(call)
                if renames.setdefault(original, resolved) != resolved:
                    raise ValueError(f"{function.function.name} calls two different functions named {original}")
            return self._place(function.function, renames)
        return self._scripted_identity(function)

    def merge(self, protos: typing.Iterable[onnx.FunctionProto]) -> dict[Identity, Identity]:
        """Add protos that call each other by their (domain, name), each unique among them (as
        ``Functions.protos`` gives them); returns where each now is."""
        library = {(p.domain, p.name): p for p in protos}
        placed: dict[Identity, Identity] = {}

        def visit(identity: Identity) -> Identity:
            if identity not in placed:
                proto = library[identity]
                callees = {(n.domain, n.op_type) for n in _subgraph_nodes(proto.node)} & library.keys()
                placed[identity] = self._place(proto, {c: visit(c) for c in callees - {identity}})
            return placed[identity]

        for identity in library:
            visit(identity)
        return placed

    def _scripted_identity(self, function: OnnxFunction[..., typing.Any]) -> Identity:
        found = self._scripted.get(id(function))
        if found is not None:
            return found[1]
        renames: dict[Identity, Identity] = {}
        for node in ir.traversal.RecursiveGraphIterator(function.function_ir.graph):
            callee = node.meta.get("callee")
            if isinstance(callee, OnnxFunction):
                original = (callee.domain, callee.name)
                resolved = self._scripted_identity(callee)
                if renames.setdefault(original, resolved) != resolved:
                    raise ValueError(f"{function.name} calls two different functions named {original}")
        identity = self._place(function.to_function_proto(), renames)
        self._scripted[id(function)] = (function, identity)  # the reference keeps the id unique
        return identity

    def _place(self, proto: onnx.FunctionProto, renames: dict[Identity, Identity]) -> Identity:
        """Where ``proto``, its calls rewritten by ``renames``, lives: an identical function's
        place, else its own name, else the next free ``<name>_<k>``."""
        proto = onnx.FunctionProto.FromString(proto.SerializeToString())
        for node in _subgraph_nodes(proto.node):
            node.domain, node.op_type = renames.get((node.domain, node.op_type), (node.domain, node.op_type))
        name = proto.name
        anonymous = onnx.FunctionProto.FromString(proto.SerializeToString())
        anonymous.name = anonymous.doc_string = ""
        body = ((proto.domain, name), anonymous.SerializeToString(deterministic=True))
        found = self._bodies.get(body)
        if found is not None:
            return found
        k = 1
        while (proto.domain, proto.name) in self._protos:
            k += 1
            proto.name = f"{name}_{k}"
        identity = (proto.domain, proto.name)
        self._protos[identity] = proto
        self._bodies[body] = identity
        return identity


def _reduction_nodes(
    spec: LossSpec, functions: Functions, column: bool, differentiable: tuple[str, ...]
) -> tuple[list[onnx.NodeProto], list[str]]:
    """The shared reduction after the kernel (added to ``functions``), and the names the
    kernel's outputs take."""
    elements, mass = "elements", "mass"
    kernel_outputs = [elements, *(f"element_grad_{n}" for n in differentiable)]
    kernel_outputs += [mass] if spec.mass else []
    reduce = reduce_column if column else reduce_loss_mass if spec.mass else reduce_loss
    reduce_args = [elements, mass] if spec.mass else [elements]
    domain, name = functions.add(reduce)
    node = helper.make_node(name, [*reduce_args, WEIGHTS, MEAN], ["loss", "per_sample", "coef"], domain=domain)
    return [node], kernel_outputs


def _scale_gradient(name: str, rank: int, functions: Functions, column: bool) -> list[onnx.NodeProto]:
    """grad = element gradient x coef, coef (N,) given the gradient's rank and layout."""
    if rank == 1 and not column:
        return [helper.make_node("Mul", [f"element_grad_{name}", "coef"], [f"grad_{name}"])]
    domain, function = functions.add(scale_column if column else scale_gradient)
    return [helper.make_node(function, [f"element_grad_{name}", "coef"], [f"grad_{name}"], domain=domain)]


def build_model(spec: LossSpec, key: GraphKey, resources: Resources = NO_RESOURCES) -> onnx.ModelProto:
    """The ONNX model for one graph key: inputs, weights and ``mean`` in; ``loss``,
    ``per_sample`` and ``grad_<input>`` out. Checked, shape-inferred and inlined.
    ``resources`` holds what the key's configured params name (e.g. feature models)."""
    function = spec.function(key.variant, resources)
    differentiable = spec.differentiable_for(key.variant, resources)
    if isinstance(function, ProtoKernel) and function.forward is not None and not key.gradients:
        function, differentiable = dataclasses.replace(function, function=function.forward), ()
    elem_type = ELEMENT_TYPE[key.dtype]
    inputs = kernel_inputs(spec, function, key.dtype, key.column)
    functions = Functions()
    kernel_domain, kernel_name = functions.add(function)
    self_reducing = WEIGHTS in {i.name for i in inputs}
    if key.column and (self_reducing or not columnable(spec)):
        raise ValueError(f"{spec.name} has no column layout")
    grads = [f"grad_{n}" for n in differentiable]
    reduction: list[onnx.NodeProto] = []
    if self_reducing:
        kernel_outputs = ["loss", "per_sample", *grads]
    else:
        reduction, kernel_outputs = _reduction_nodes(spec, functions, key.column, differentiable)
    returned = len(next(p for p in functions.protos if (p.domain, p.name) == (kernel_domain, kernel_name)).output)
    if returned != len(kernel_outputs):
        raise ValueError(f"{spec.name}: kernel returns {returned} values, expected {len(kernel_outputs)}")

    declared = {i.name for i in spec.inputs}
    nodes: list[onnx.NodeProto] = []
    args = [i.name for i in inputs]
    if key.column:  # the batch as one row: (N,) -> (1, N)
        nodes.append(
            helper.make_node(
                "Constant", [], ["row_axis"], value=helper.make_tensor("row_axis", TensorProto.INT64, [1], [0])
            )
        )
        for i in inputs:
            if i.name in declared:
                nodes.append(helper.make_node("Unsqueeze", [i.name, "row_axis"], [f"{i.name}_row"]))
        args = [f"{a}_row" if a in declared else a for a in args]
    nodes += [helper.make_node(kernel_name, args, kernel_outputs, domain=kernel_domain), *reduction]
    batch_level = spec.variant_batch_level(key.variant)
    batch = "batch" if batch_level else "N"
    outputs = [_value_info("loss", elem_type, ()), _value_info("per_sample", elem_type, (batch,))]
    dims = {i.name: i.dims for i in inputs}
    if key.gradients:
        for name in differentiable:
            if not self_reducing:
                nodes += _scale_gradient(name, len(dims[name]), functions, key.column)
            outputs.append(_value_info(f"grad_{name}", elem_type, dims[name]))

    graph_inputs = [_value_info(i.name, i.elem_type, i.dims) for i in inputs if i.name not in (WEIGHTS, MEAN)]
    graph_inputs += [_value_info(WEIGHTS, elem_type, (batch,)), _value_info(MEAN, TensorProto.BOOL, ())]
    graph = helper.make_graph(nodes, key.stem, graph_inputs, outputs)
    model = helper.make_model(
        graph,
        functions=functions.protos,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("lossd", 1)],
        producer_name="lossd",
        doc_string=f"lossd kernel {key.stem}",
    )
    model = onnxscript.optimizer.optimize(model)
    model.ir_version = 10
    model = equalize_ranks(model)
    # A kernel that reduces itself splits into row blocks only where its reduction is a weighted sum
    # over samples (a named composite of row-wise terms, see kernels.composites).
    linear = not self_reducing or spec.reduces_itself
    row_wise = spec.row_wise and linear and not (batch_level or spec.mass)
    row_wise = row_wise and all(i.shape[0] == "N" for i in spec.inputs)
    helper.set_model_props(model, {ROW_WISE: str(row_wise).lower()})
    onnx.checker.check_model(model, full_check=True)
    return model
