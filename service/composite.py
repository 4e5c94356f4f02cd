"""``POST /loss/composite`` and the named composites of ``LOSSD_COMPOSITES``: terms resolved
and checked (service.terms), then one run of the composite's graph."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kernels.composite import TERM_LOSSES, TERM_PER_SAMPLE, CompositeSpec, field_inputs
from kernels.composite_sessions import sessions_for
from kernels.composites import composite, register
from kernels.runtime import NUMPY_DTYPE, Runtime
from kernels.spec import InvalidInput, Task
from service import metrics
from service.arrays import decode_weights
from service.compute import JSON_OPTIONS, parse_json, undefined_loss
from service.errors import ProblemError, from_validation_error, invalid
from service.schemas import DtypeName, Output, Reduction
from service.terms import MAX_TERMS, TermRequest, decode_terms, resolve_terms


class CompositeRequest(BaseModel):
    """A weighted sum of catalog losses over shared inputs; the arrays are further top-level fields,
    named by the terms' inputs (or their ``inputs`` maps)."""

    model_config = ConfigDict(extra="allow", title="CompositeRequest")

    terms: list[TermRequest] = Field(min_length=1, max_length=MAX_TERMS)
    weights: Any = Field(None, description="Non-negative per-sample weights, shape (N,).")
    reduction: Reduction = "mean"
    outputs: list[Output] = Field(
        default_factory=lambda: list[Output](["loss"]), description="loss, per_sample, gradients."
    )
    dtype: DtypeName = "float32"


class CompositeDefinition(BaseModel):
    """A named composite as ``LOSSD_COMPOSITES`` gives it."""

    model_config = ConfigDict(extra="forbid")

    terms: list[TermRequest] = Field(min_length=1, max_length=MAX_TERMS)
    title: str | None = None
    task: Task | None = None
    summary: str = ""
    aliases: list[str] = Field(default_factory=list)
    use_cases: list[str] = Field(default_factory=list)


def compute_composite(runtime: Runtime, body: bytes, max_elements: int) -> bytes:
    """``POST /loss/composite``: the raw JSON body in, the JSON response out."""
    data = parse_json(body)
    try:
        request = CompositeRequest.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(list(exc.errors())) from None
    terms = resolve_terms(request.terms)
    fields = field_inputs(terms)
    unknown = [k for k in request.model_extra or {} if k not in fields]
    if unknown:
        raise invalid(unknown[0], f"no term takes an input {unknown[0]!r}; the terms take {', '.join(fields)}")
    batch_level = terms[0].spec.batch_level
    if batch_level and request.weights is not None:
        raise invalid("weights", "the terms are one value for the whole batch: they take no sample weights")
    if request.reduction == "none" and request.weights is not None:
        raise invalid("weights", "sample weights apply to reductions 'mean' and 'sum', not 'none'")
    dtype = NUMPY_DTYPE[request.dtype]
    batch = decode_terms(terms, request.model_extra or {}, dtype, max_elements)
    mean = request.reduction == "mean"
    weights = decode_weights(request.weights, batch.count, dtype, mean)
    gradients = "gradients" in request.outputs
    sessions = sessions_for(runtime)
    try:
        kernel = sessions.kernel(terms, request.dtype, gradients)
    except InvalidInput as error:  # a graph that cannot be built: the terms' fault, not a 500
        raise invalid(error.field, error.detail) from None
    names = ["loss", "per_sample", TERM_LOSSES, TERM_PER_SAMPLE, *(f"grad_{f}" for f in kernel.gradients)]
    start = time.perf_counter()
    loss, per_sample, term_losses, term_per_sample, *grads = sessions.run(
        kernel, terms, batch.arrays, weights, mean, names
    )
    metrics.kernel_seconds("composite").observe(time.perf_counter() - start)
    if not np.isfinite(loss):
        raise undefined_loss(terms[0].spec, loss, per_sample, request.dtype)
    none = request.reduction == "none"
    response: dict[str, Any] = {"loss": per_sample if none else loss[()]}
    if "per_sample" in request.outputs:
        response["per_sample"] = per_sample
    if gradients:
        response["gradients"] = {f: g.reshape(batch.shapes[f]) for f, g in zip(kernel.gradients, grads, strict=True)}
    response["terms"] = [
        {"loss": t.spec.name, "weight": t.weight, "value": term_per_sample[i] if none else term_losses[i]}
        for i, t in enumerate(terms)
    ]
    response.update(reduction=request.reduction, count=batch.count, dtype=request.dtype)
    return orjson.dumps(response, option=JSON_OPTIONS)


def register_configured(definitions: Mapping[str, Any]) -> list[CompositeSpec]:
    """Register the named composites of ``LOSSD_COMPOSITES``; a bad definition stops start-up
    with a message naming the composite and the field."""
    registered = []
    for name, raw in definitions.items():
        if name == "composite" or not name.isidentifier():
            raise ValueError(f"LOSSD_COMPOSITES: {name!r} cannot name a composite (an identifier, not 'composite')")
        try:
            definition = CompositeDefinition.model_validate(raw)
            terms = resolve_terms(definition.terms)
            spec = composite(
                name,
                terms,
                title=definition.title,
                task=definition.task,
                summary=definition.summary,
                aliases=tuple(definition.aliases),
                use_cases=tuple(definition.use_cases),
            )
        except ValidationError as exc:
            raise ValueError(f"LOSSD_COMPOSITES {name}: {from_validation_error(list(exc.errors())).detail}") from None
        except ProblemError as problem:
            raise ValueError(f"LOSSD_COMPOSITES {name}: {problem.detail}") from None
        registered.append(register(spec))
    return registered
