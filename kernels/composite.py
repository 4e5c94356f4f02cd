"""Composite losses: a weighted sum of catalog losses over shared inputs, as one ONNX graph.

Each term's kernel is called on its view of the request fields it maps its inputs to (a field
is collapsed once, by the layout all its terms agree on, and each term reshapes it to its own
"..." collapse inside the graph), its own reduction runs, and the graph sums the weighted term
losses, per-sample losses and gradients (a field shared by several terms gets the sum of their
gradients). The same graph serves ad-hoc composites (term params and weights are graph inputs,
so one graph per term structure) and named ones (params and weights are constants).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxscript.optimizer
from onnx import TensorProto, helper, numpy_helper

from kernels.broadcast import equalize_ranks
from kernels.feeds import param_feed
from kernels.graph import (
    ELEMENT_TYPE,
    MEAN,
    OPSET,
    WEIGHTS,
    Dtype,
    Functions,
    GraphInput,
    graph_dims,
    kernel_inputs,
)
from kernels.ops import LOSSD
from kernels.reduction import reduce_loss, reduce_loss_mass, scale_gradient
from kernels.spec import Input, InvalidInput, LossSpec, Params, ProtoKernel, Variant

TERM_WEIGHTS = "term_weights"
TERM_LOSSES, TERM_PER_SAMPLE = "term_losses", "term_per_sample"


@dataclass(frozen=True)
class Term:
    """One weighted catalog loss; ``inputs`` maps each of its inputs to a request field."""

    spec: LossSpec
    weight: float
    params: Params
    inputs: tuple[tuple[str, str], ...]
    pooled: bool = False
    """A per-sample loss taken as its unweighted mean over the batch, one value for the whole batch (the
    cross-entropy of MONAI's DiceCELoss(batch=True), whose Dice is batch-level): only named composites pool a
    term, so that it can be summed with batch-level ones."""

    @property
    def fields(self) -> dict[str, str]:
        return dict(self.inputs)

    @property
    def batch_level(self) -> bool:
        """Whether the term is one value for the whole batch: its loss with its params, or pooled."""
        return self.pooled or self.spec.is_batch_level(self.params)

    @property
    def structure(self) -> tuple[str, Variant, tuple[tuple[str, str], ...]]:
        return (self.spec.name, self.spec.variant(self.params), self.inputs)


def term(spec: LossSpec, weight: float, params: Params | None = None, **inputs: str) -> Term:
    """A term whose inputs take the request fields of their own names unless ``inputs`` renames them."""
    mapping = tuple((i.name, inputs.get(i.name, i.name)) for i in spec.inputs)
    return Term(spec, weight, params if params is not None else spec.params(), mapping)


Structure = tuple[tuple[str, Variant, tuple[tuple[str, str], ...]], ...]
"""What selects a composite graph: each term's loss, graph variant and input mapping."""


def structure(terms: Sequence[Term]) -> Structure:
    return tuple(t.structure for t in terms)


def _blame(index: int, term_: Term, input_name: str) -> str:
    """The request field to name for a term's input: its mapping when renamed, else its loss."""
    return f"terms[{index}].inputs.{input_name}" if term_.fields[input_name] != input_name else f"terms[{index}].loss"


def _split(shape: tuple[str, ...]) -> tuple[int, int] | None:
    """Named axes before and after "...", or None for a fixed-rank shape."""
    if "..." not in shape:
        return None
    before = shape.index("...")
    return before, len(shape) - before - 1


def _layout(field: str, uses: list[tuple[int, Term, Input]]) -> tuple[str, ...]:
    """The shape a field is collapsed by: one its terms' own collapses can all be taken from
    (a fixed-rank shape, else the one with the most named axes before and after "...")."""
    shapes = [(i, t, x, x.shape, _split(x.shape)) for i, t, x in uses]
    fixed = [s for s in shapes if s[4] is None]
    if fixed:
        chosen = fixed[0][3]
        for i, t, x, shape, split in shapes:
            fits = len(shape) == len(chosen) if split is None else sum(split) <= len(chosen)
            if not fits:
                raise InvalidInput(
                    _blame(i, t, x.name),
                    f"{t.spec.name} takes {field!r} with shape ({', '.join(shape)}), but terms[{fixed[0][0]}] "
                    f"({fixed[0][1].spec.name}) takes it with shape ({', '.join(chosen)})",
                )
        return chosen
    before = max(s[4][0] for s in shapes if s[4] is not None)
    after = max(s[4][1] for s in shapes if s[4] is not None)
    for _, _, _, shape, split in shapes:
        if split == (before, after):
            return shape
    i, t, x, shape, _ = shapes[-1]
    raise InvalidInput(
        _blame(i, t, x.name),
        f"the terms lay out {field!r} in incompatible ways ("
        + ", ".join(f"{s[1].spec.name}: ({', '.join(s[3])})" for s in shapes)
        + "); send it as separate fields with an `inputs` map",
    )


def check_terms(terms: Sequence[Term]) -> None:
    """Compositions that cannot be one graph: a batch-level loss with per-sample ones, a field
    that one term takes as integers and another as floats, or incompatible layouts."""
    if not terms:
        raise InvalidInput("terms", "a composite needs at least one term")
    levels = {t.batch_level for t in terms}
    if len(levels) > 1:
        index = next(i for i, t in enumerate(terms) if t.batch_level != terms[0].batch_level)
        batch = next(t for t in terms if t.batch_level)
        per_sample = next(t for t in terms if not t.batch_level)
        how = f" (with {batch.spec.batch_param}=true)" if batch.spec.batch_param and not batch.spec.batch_level else ""
        raise InvalidInput(
            f"terms[{index}].loss",
            f"{batch.spec.name}{how} is one value for the whole batch and {per_sample.spec.name} one per sample: "
            "their per-sample losses have incompatible shapes, so they cannot be summed",
        )
    for index, t in enumerate(terms):
        if t.spec.configured:
            raise InvalidInput(
                f"terms[{index}].loss", f"{t.spec.name} needs an operator-configured model and cannot be a term"
            )
        if isinstance(t.spec, CompositeSpec):
            raise InvalidInput(f"terms[{index}].loss", f"{t.spec.name} is itself a composite; list its terms instead")
    integer: dict[str, tuple[int, Term, Input]] = {}
    for index, t in enumerate(terms):
        for x in t.spec.inputs:
            field = t.fields[x.name]
            first = integer.setdefault(field, (index, t, x))
            if first[2].integer != x.integer:
                kinds = {True: "integers", False: "floats"}
                raise InvalidInput(
                    _blame(index, t, x.name),
                    f"{t.spec.name} needs {field!r} as {kinds[x.integer]}, but terms[{first[0]}] "
                    f"({first[1].spec.name}) needs it as {kinds[first[2].integer]}: the terms need different dtypes "
                    "for one field",
                )
    _check_ellipses(terms, field_inputs(terms))


def _check_ellipses(terms: Sequence[Term], fields: dict[str, Input]) -> None:
    """A term's "..." is one binding across its inputs: where other terms fix the layouts of two of its fields
    with different numbers of axes in its "..." (mse's predictions and targets laid out by crps as (N, M) and
    (N,)), no request can satisfy both."""
    for index, t in enumerate(terms):
        ranks: dict[int, str] = {}
        for x in t.spec.inputs:
            layout = fields[t.fields[x.name]].shape
            if "..." in x.shape and "..." not in layout:
                ranks.setdefault(len(layout) - len(x.shape) + 1, x.name)
        if len(ranks) > 1:
            (a, first), (b, second) = sorted(ranks.items())[:2]
            raise InvalidInput(
                f"terms[{index}].loss",
                f"{t.spec.name} takes {first!r} and {second!r} with the same axes, but the other terms lay them out "
                f"with {a} and {b} axes after the batch axis: send them as separate fields with an `inputs` map",
            )


def field_inputs(terms: Sequence[Term]) -> dict[str, Input]:
    """Each request field (in order of first use) as one input: the layout its terms agree on,
    differentiable when any term differentiates it. Values are checked per term, not here."""
    uses: dict[str, list[tuple[int, Term, Input]]] = {}
    for index, t in enumerate(terms):
        for x in t.spec.inputs:
            uses.setdefault(t.fields[x.name], []).append((index, t, x))
    merged = {}
    for field, used in uses.items():
        first = used[0][2]
        users = ", ".join(sorted({t.spec.name for _, t, _ in used}))
        fills = {x.optional for _, _, x in used}
        merged[field] = Input(
            field,
            _layout(field, used),
            first.kind,
            f"{first.description} (used by {users})",
            differentiable=any(x.differentiable for _, _, x in used),
            optional=first.optional if len(fills) == 1 else None,  # optional where every term fills it alike
        )
    return merged


@dataclass(frozen=True)
class CompositeGraph:
    """A composite's nodes and interface, to become a model (ad hoc) or a function (named)."""

    nodes: list[onnx.NodeProto]
    inputs: list[GraphInput]
    """Fields, then (ad hoc) term params and term weights; then weights and mean."""
    gradients: list[str]
    """Differentiable fields, whose gradients are ``grad_<field>``."""
    functions: list[onnx.FunctionProto]
    """The term kernels and reductions the nodes call, with their callees, each distinct
    function under its own name (terms' kernels share names: see ``kernels.graph.Functions``)."""


class _Nodes:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []

    def add(self, op_type: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    def ints(self, name: str, values: list[int]) -> str:
        return self.add("Constant", [], name, value=helper.make_tensor(name, TensorProto.INT64, [len(values)], values))


def _view(nodes: _Nodes, field: str, layout: tuple[str, ...], own: tuple[str, ...], name: str) -> str:
    """The field as the term's kernel takes it: its own "..." collapse of the field's layout."""
    split = _split(own)
    if own == layout or split is None:
        return field
    before, after = split
    parts = [nodes.add("Shape", [field], f"{name}_head", end=before)] if before else []
    parts.append(nodes.ints(f"{name}_rest", [-1]))
    if after:
        parts.append(nodes.add("Shape", [field], f"{name}_tail", start=-after))
    shape = nodes.add("Concat", parts, f"{name}_shape", axis=0)
    return nodes.add("Reshape", [field, shape], name)


def build_graph(terms: Sequence[Term], dtype: Dtype, constants: bool) -> CompositeGraph:
    """The composite's nodes: ``loss``, ``per_sample``, ``term_losses`` (T,), ``term_per_sample``
    (T, N) and ``grad_<field>``. With ``constants`` the term params and weights are fixed in the
    graph, else they are inputs ``t<i>_<param>`` and ``term_weights`` (T,)."""
    check_terms(terms)
    fields = field_inputs(terms)
    elem_type = ELEMENT_TYPE[dtype]
    nodes = _Nodes()
    reference = next((f for f, x in fields.items() if not x.integer), None)
    if reference is None:
        raise InvalidInput("terms", "a composite needs at least one floating-point input")
    inputs = [
        GraphInput(
            f,
            TensorProto.INT64 if x.integer else elem_type,
            tuple(f"{f}_{d}" if d != "N" else d for d in graph_dims(x.shape)),
        )
        for f, x in fields.items()
    ]
    param_inputs: list[GraphInput] = []
    functions = Functions()
    term_losses, term_samples = [], []
    zero = nodes.ints("axis_zero", [0])
    for i, t in enumerate(terms):
        p = f"t{i}_"
        function = t.spec.function(t.spec.variant(t.params))
        kernel_domain, kernel_name = functions.add(function)
        by_name = {x.name: x for x in t.spec.inputs}
        args = []
        for graph_input in kernel_inputs(t.spec, function, dtype):
            name = graph_input.name
            if name in by_name:
                field = t.fields[name]
                args.append(_view(nodes, field, fields[field].shape, by_name[name].shape, f"{p}{name}"))
            elif name in (WEIGHTS, MEAN):
                args.append(name)
            elif constants:
                value = param_feed(getattr(t.params, name), graph_input.elem_type == TensorProto.INT64, np.float64)
                value = value.reshape(-1) if graph_input.dims else value
                const = nodes.add(
                    "Constant", [], f"{p}{name}_value", value=numpy_helper.from_array(value, f"{p}{name}")
                )
                args.append(const if value.dtype == np.int64 else nodes.add("CastLike", [const, reference], p + name))
            else:
                param_inputs.append(GraphInput(p + name, graph_input.elem_type, graph_input.dims))
                args.append(p + name)
        differentiable = t.spec.differentiable
        if WEIGHTS in args:  # the kernel reduces by itself
            if t.pooled:
                raise ValueError(f"{t.spec.name} reduces by itself and cannot be pooled")
            outputs = [f"{p}loss", f"{p}per_sample", *(f"{p}grad_{n}" for n in differentiable)]
            nodes.nodes.append(helper.make_node(kernel_name, args, outputs, domain=kernel_domain))
        else:
            element_grads = [f"{p}element_grad_{n}" for n in differentiable]
            outputs = [f"{p}elements", *element_grads, *([f"{p}mass"] if t.spec.mass else [])]
            nodes.nodes.append(helper.make_node(kernel_name, args, outputs, domain=kernel_domain))
            reduce_domain, reduce_name = functions.add(reduce_loss_mass if t.spec.mass else reduce_loss)
            reduce_args = [f"{p}elements", f"{p}mass"] if t.spec.mass else [f"{p}elements"]
            how = [WEIGHTS, MEAN]
            if t.pooled:  # its own unweighted mean over its N samples, whatever the request's reduction
                rows = nodes.add("Shape", [f"{p}elements"], f"{p}rows", end=1)
                one = nodes.add(
                    "CastLike", [nodes.add("Constant", [], f"{p}one_value", value_float=1.0), reference], f"{p}one"
                )
                true = nodes.add(
                    "Constant", [], f"{p}true", value=helper.make_tensor(f"{p}t", TensorProto.BOOL, [], [True])
                )
                how = [nodes.add("Expand", [one, rows], f"{p}unit_weights"), true]
            nodes.nodes.append(
                helper.make_node(
                    reduce_name,
                    [*reduce_args, *how],
                    [f"{p}loss", f"{p}per_sample" if not t.pooled else f"{p}sample_losses", f"{p}coef"],
                    domain=reduce_domain,
                )
            )
            if t.pooled:  # per_sample is [loss]
                nodes.add("Unsqueeze", [f"{p}loss", zero], f"{p}per_sample")
            for n in differentiable:
                scaled = [f"{p}element_grad_{n}", f"{p}coef"]
                if len(graph_dims(by_name[n].shape)) == 1:
                    nodes.add("Mul", scaled, f"{p}grad_{n}")
                else:  # as kernels.graph does: short rows are scaled by an outer product
                    scale_domain, scale_name = functions.add(scale_gradient)
                    nodes.nodes.append(helper.make_node(scale_name, scaled, [f"{p}grad_{n}"], domain=scale_domain))
        term_losses.append(nodes.add("Unsqueeze", [f"{p}loss", zero], f"{p}loss_1"))
        term_samples.append(nodes.add("Unsqueeze", [f"{p}per_sample", zero], f"{p}per_sample_1"))

    if constants:
        values = np.array([t.weight for t in terms], dtype=np.float64)
        const = nodes.add("Constant", [], "term_weights_value", value=numpy_helper.from_array(values, "tw"))
        weights = nodes.add("CastLike", [const, reference], TERM_WEIGHTS)
    else:
        weights = TERM_WEIGHTS
        param_inputs.append(GraphInput(TERM_WEIGHTS, elem_type, (len(terms),)))
    nodes.add("Concat", term_losses, TERM_LOSSES, axis=0)
    samples = nodes.add("Concat", term_samples, TERM_PER_SAMPLE, axis=0)
    nodes.add("MatMul", [weights, samples], "per_sample")
    scalars = [
        nodes.add(
            "Squeeze", [nodes.add("Gather", [weights, nodes.ints(f"t{i}_index", [i])], f"t{i}_w")], f"t{i}_weight"
        )
        for i in range(len(terms))
    ]
    # Scalar products and sums, not ReduceSum over the stacked losses: with the graph output bound
    # (IO binding, the CUDA path), onnxruntime 1.31 on CPU gave that reduction twice its value.
    loss = nodes.add("Mul", [scalars[0], "t0_loss"], "t0_weighted_loss")
    for i in range(1, len(terms)):
        loss = nodes.add(
            "Add", [loss, nodes.add("Mul", [scalars[i], f"t{i}_loss"], f"t{i}_weighted_loss")], f"loss_{i}"
        )
    nodes.add("Identity", [loss], "loss")
    users: dict[str, list[str]] = {f: [] for f, x in fields.items() if x.differentiable}
    for i, t in enumerate(terms):
        scalar = scalars[i]
        by_name = {x.name: x for x in t.spec.inputs}
        for n in t.spec.differentiable:
            field = t.fields[n]
            grad = f"t{i}_grad_{n}"
            if by_name[n].shape != fields[field].shape and _split(by_name[n].shape) is not None:
                grad = nodes.add(
                    "Reshape", [grad, nodes.add("Shape", [field], f"t{i}_{n}_back")], f"t{i}_grad_{n}_back"
                )
            users[field].append(nodes.add("Mul", [grad, scalar], f"t{i}_weighted_grad_{n}"))
    for field, parts in users.items():
        total = parts[0]
        for k, part in enumerate(parts[1:]):
            total = nodes.add("Add", [total, part], f"grad_{field}_{k}")
        nodes.add("Identity", [total], f"grad_{field}")
    batch = "batch" if terms[0].batch_level else "N"
    all_inputs = [
        *inputs,
        *param_inputs,
        GraphInput(WEIGHTS, elem_type, (batch,)),
        GraphInput(MEAN, TensorProto.BOOL, ()),
    ]
    return CompositeGraph(nodes.nodes, all_inputs, list(users), functions.protos)


def _domains(functions: Sequence[onnx.FunctionProto]) -> list[onnx.OperatorSetIdProto]:
    found = {f.domain for f in functions} | {LOSSD.domain}
    return [helper.make_opsetid("", OPSET), *(helper.make_opsetid(d, 1) for d in sorted(found))]


def build_model(terms: Sequence[Term], dtype: Dtype, gradients: bool) -> onnx.ModelProto:
    """An ad-hoc composite's checked model: fields, ``t<i>_<param>``, ``term_weights``, weights
    and mean in; loss, per_sample, term_losses, term_per_sample and ``grad_<field>`` out.
    ``InvalidInput`` for terms that cannot be one graph, by the rules or because building it failed."""
    try:
        return _build_model(terms, dtype, gradients)
    except InvalidInput:
        raise
    except Exception as error:  # the optimizer's and checker's errors share no base class but Exception
        raise build_error(terms, error) from error


def _build_model(terms: Sequence[Term], dtype: Dtype, gradients: bool) -> onnx.ModelProto:
    graph = build_graph(terms, dtype, constants=False)
    elem_type = ELEMENT_TYPE[dtype]
    batch = "batch" if terms[0].batch_level else "N"
    outputs = [
        helper.make_tensor_value_info("loss", elem_type, []),
        helper.make_tensor_value_info("per_sample", elem_type, [batch]),
        helper.make_tensor_value_info(TERM_LOSSES, elem_type, [len(terms)]),
        helper.make_tensor_value_info(TERM_PER_SAMPLE, elem_type, [len(terms), batch]),
    ]
    dims = {i.name: i.dims for i in graph.inputs}
    if gradients:
        outputs += [helper.make_tensor_value_info(f"grad_{f}", elem_type, list(dims[f])) for f in graph.gradients]
    inputs = [helper.make_tensor_value_info(i.name, i.elem_type, list(i.dims)) for i in graph.inputs]
    model = helper.make_model(
        helper.make_graph(graph.nodes, "composite", inputs, outputs),
        functions=graph.functions,
        opset_imports=_domains(graph.functions),
        producer_name="lossd",
        doc_string="lossd composite: " + " + ".join(f"{t.weight:g} {t.spec.name}" for t in terms),
    )
    model = equalize_ranks(onnxscript.optimizer.optimize(model))
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model


def build_error(terms: Sequence[Term], error: Exception) -> InvalidInput:
    """A composite graph that could not be built or loaded, as the request's fault (a 422
    naming the terms) rather than a server error; the cause is chained."""
    names = " + ".join(t.spec.name for t in terms)
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return InvalidInput(
        "terms", f"the composite {names} cannot be built as one graph ({type(error).__name__}: {reason[:300]})"
    )


def proto_kernel(name: str, terms: Sequence[Term]) -> ProtoKernel:
    """A named composite as a self-reducing kernel (``kernels.graph.build_model`` takes it like
    any loss's): fields, weights and mean in; loss, per_sample and gradients out. Its term
    params and weights are constants, cast to the dtype of its first float field."""
    graph = build_graph(terms, "float32", constants=True)
    fields = [i for i in graph.inputs if i.name not in (WEIGHTS, MEAN)]
    function = helper.make_function(
        LOSSD.domain,
        f"composite_{name}",
        inputs=[*(i.name for i in fields), WEIGHTS, MEAN],
        outputs=["loss", "per_sample", *(f"grad_{f}" for f in graph.gradients)],
        nodes=graph.nodes,
        opset_imports=_domains(graph.functions),
    )
    return ProtoKernel(
        function,
        functions=tuple(graph.functions),
        input_dims={i.name: tuple(d for d in i.dims if d is not None) for i in fields},
    )


@dataclass(frozen=True, eq=False)
class CompositeSpec(LossSpec):
    """A named composite, registered like any loss; its params are fixed in its terms, but for ``batch``
    (``batch_param``), which selects ``batch_terms`` instead (MONAI's DiceCELoss(batch=True))."""

    terms: tuple[Term, ...] = ()
    batch_terms: tuple[Term, ...] = ()
    """The terms with ``params.batch`` true (empty: the composite has no ``batch`` param)."""

    @property
    def reduces_itself(self) -> bool:
        return True

    def terms_for(self, params: Params) -> tuple[Term, ...]:
        """The terms a request's params select."""
        return self.batch_terms if self.is_batch_level(params) and self.batch_terms else self.terms
