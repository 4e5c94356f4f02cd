"""Assemble a loss's kernel and the shared reduction into one checked ONNX model."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from typing import Literal

import onnx
import onnxscript.optimizer
from onnx import TensorProto, helper

from kernels.reduction import reduce_loss, reduce_loss_mass
from kernels.spec import NO_RESOURCES, Input, KernelFunction, LossSpec, Params, ProtoKernel, Resources, Variant

Dtype = Literal["float32", "float64"]
DTYPES: tuple[Dtype, ...] = ("float32", "float64")
ELEMENT_TYPE = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}
OPSET = 18
WEIGHTS, MEAN = "weights", "mean"
ROW_WISE, NODES = "lossd.row_wise", "lossd.nodes"
"""Model metadata: "true" when each sample's losses depend on its own row alone and the
shared reduction sums them, so the batch may be split by rows (kernels.blocks)."""


@dataclass(frozen=True)
class GraphKey:
    """Identifies one graph: a loss, the values of its structural params, a dtype."""

    loss: str
    variant: Variant
    dtype: Dtype
    gradients: bool

    @property
    def stem(self) -> str:
        """A file-name-safe identifier, e.g. ``focal.from_logits=true.float32.grad``."""
        parts = [self.loss, *(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in self.variant)]
        parts.append(self.dtype)
        return ".".join([*parts, "grad" if self.gradients else "fwd"])


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


def kernel_inputs(spec: LossSpec, function: KernelFunction, dtype: Dtype) -> list[GraphInput]:
    """The graph inputs a kernel function consumes, in its declared order."""
    elem_type = ELEMENT_TYPE[dtype]
    by_name = {i.name: i for i in spec.inputs}
    fixed = function.input_dims if isinstance(function, ProtoKernel) else {}
    result = []
    for name in _input_names(function):
        if name in by_name:
            spec_input = by_name[name]
            kind = TensorProto.INT64 if spec_input.integer else elem_type
            result.append(GraphInput(name, kind, fixed.get(name, graph_dims(spec_input.shape))))
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


def function_proto(function: KernelFunction) -> onnx.FunctionProto:
    return function.function if isinstance(function, ProtoKernel) else function.to_function_proto()


def called_functions(*roots: KernelFunction) -> list[onnx.FunctionProto]:
    found: dict[tuple[str, str], onnx.FunctionProto] = {}
    for root in roots:
        if isinstance(root, ProtoKernel):
            found[(root.function.domain, root.function.name)] = root.function
            scripted = list(root.calls)
        else:
            scripted = [root]
        for script_root in scripted:
            for fn in [script_root, *script_root.function_ir.get_called_functions().values()]:
                proto = fn.to_function_proto()
                found[(proto.domain, proto.name)] = proto
    return list(found.values())


def _reduction_nodes(spec: LossSpec) -> tuple[list[onnx.NodeProto], list[str], KernelFunction]:
    """The shared reduction after the kernel, and the names the kernel's outputs take."""
    elements, mass = "elements", "mass"
    kernel_outputs = [elements, *(f"element_grad_{n}" for n in spec.differentiable)]
    kernel_outputs += [mass] if spec.mass else []
    reduce = reduce_loss_mass if spec.mass else reduce_loss
    reduce_args = [elements, mass] if spec.mass else [elements]
    node = helper.make_node(reduce.name, [*reduce_args, WEIGHTS, MEAN], ["loss", "per_sample", "coef"], domain="lossd")
    return [node], kernel_outputs, reduce


def _scale_gradient(name: str, rank: int) -> list[onnx.NodeProto]:
    """grad = element gradient x coef, coef (N,) given the gradient's rank."""
    if rank == 1:
        return [helper.make_node("Mul", [f"element_grad_{name}", "coef"], [f"grad_{name}"])]
    axes = helper.make_tensor(f"axes_{name}", TensorProto.INT64, [rank - 1], list(range(1, rank)))
    return [
        helper.make_node("Constant", [], [f"axes_{name}"], value=axes),
        helper.make_node("Unsqueeze", ["coef", f"axes_{name}"], [f"coef_{name}"]),
        helper.make_node("Mul", [f"element_grad_{name}", f"coef_{name}"], [f"grad_{name}"]),
    ]


def build_model(spec: LossSpec, key: GraphKey, resources: Resources = NO_RESOURCES) -> onnx.ModelProto:
    """The ONNX model for one graph key: inputs, weights and ``mean`` in; ``loss``,
    ``per_sample`` and ``grad_<input>`` out. Checked, shape-inferred and inlined.
    ``resources`` holds what the key's configured params name (e.g. feature models)."""
    function = spec.function(key.variant, resources)
    elem_type = ELEMENT_TYPE[key.dtype]
    inputs = kernel_inputs(spec, function, key.dtype)
    fn_proto = function_proto(function)
    self_reducing = WEIGHTS in {i.name for i in inputs}
    grads = [f"grad_{n}" for n in spec.differentiable]
    reduction: list[onnx.NodeProto] = []
    if self_reducing:
        kernel_outputs, functions = ["loss", "per_sample", *grads], [function]
    else:
        reduction, kernel_outputs, reduce = _reduction_nodes(spec)
        functions = [function, reduce]
    if len(fn_proto.output) != len(kernel_outputs):
        raise ValueError(f"{spec.name}: kernel returns {len(fn_proto.output)} values, expected {len(kernel_outputs)}")

    kernel_node = helper.make_node(fn_proto.name, [i.name for i in inputs], kernel_outputs, domain=fn_proto.domain)
    nodes = [kernel_node, *reduction]
    batch = "batch" if spec.batch_level else "N"
    outputs = [_value_info("loss", elem_type, ()), _value_info("per_sample", elem_type, (batch,))]
    dims = {i.name: i.dims for i in inputs}
    if key.gradients:
        for name in spec.differentiable:
            if not self_reducing:
                nodes += _scale_gradient(name, len(dims[name]))
            outputs.append(_value_info(f"grad_{name}", elem_type, dims[name]))

    graph_inputs = [_value_info(i.name, i.elem_type, i.dims) for i in inputs if i.name not in (WEIGHTS, MEAN)]
    graph_inputs += [_value_info(WEIGHTS, elem_type, (batch,)), _value_info(MEAN, TensorProto.BOOL, ())]
    graph = helper.make_graph(nodes, key.stem, graph_inputs, outputs)
    model = helper.make_model(
        graph,
        functions=called_functions(*functions),
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("lossd", 1)],
        producer_name="lossd",
        doc_string=f"lossd kernel {key.stem}",
    )
    model = onnxscript.optimizer.optimize(model)
    model.ir_version = 10
    row_wise = spec.row_wise and not (self_reducing or spec.batch_level or spec.mass)
    row_wise = row_wise and all(i.shape[0] == "N" for i in spec.inputs)
    helper.set_model_props(model, {ROW_WISE: str(row_wise).lower(), NODES: str(len(model.graph.node))})
    onnx.checker.check_model(model, full_check=True)
    return model
