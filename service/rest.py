"""The REST edge of the data plane: ``POST /loss/{name}`` and ``POST /loss/composite``.
JSON bodies in, evaluation by service.compute, JSON out; errors propagate as
service.errors values (service.problems renders them)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from kernels.composite import field_inputs
from kernels.runtime import Runtime
from kernels.spec import LossSpec
from service import json_arrays
from service.composite import CompositeRequest
from service.compute import Computation, composite_request, evaluate
from service.errors import extra_keys, from_validation_error, invalid, invalid_request, unsupported
from service.json_types import check_param_types
from service.schemas import request_model
from service.terms import resolve_terms

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
JSON_TYPES = (b"application/json", b"application/problem+json")


def check_content_type(headers: list[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            if media_type not in JSON_TYPES:
                raise unsupported(
                    f"send the request as JSON with 'Content-Type: application/json', not {media_type.decode()!r}",
                    field="content-type",
                )
            return


def parse_json(
    body: bytes, numeric: Callable[[str], bool] = lambda key: False, limit: int | None = None
) -> dict[str, Any]:
    """The body's object; its members that ``numeric`` names hold ndarrays (service.json_arrays)."""
    data = json_arrays.loads(body, numeric, limit)
    if not isinstance(data, dict):
        raise invalid_request(f"the body must be a JSON object, got {type(data).__name__}")
    return data


@cache
def numeric_fields(spec: LossSpec) -> Callable[[str], bool]:
    """The members of a request for ``spec`` that hold arrays: its inputs and ``weights``."""
    return frozenset([*(i.name for i in spec.inputs), "weights"]).__contains__


COMPOSITE_FIELDS = frozenset(CompositeRequest.model_fields) - {"weights"}


def validate_envelope(spec: LossSpec, data: dict[str, Any]) -> BaseModel:
    model = request_model(spec)
    params = data.get("params")
    unknown = extra_keys(data, model.model_fields) or (
        extra_keys(params, spec.params.model_fields, "params.") if isinstance(params, dict) else None
    )
    if unknown is not None and unknown.extra.get("error_count"):  # too many for pydantic to list
        raise unknown
    if isinstance(params, dict):
        check_param_types(spec.params, params)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(list(exc.errors())) from None


def compute(runtime: Runtime, spec: LossSpec, body: bytes, max_elements: int) -> bytes:
    """``POST /loss/{name}``: the raw JSON body in, the JSON response out."""
    envelope: Any = validate_envelope(spec, parse_json(body, numeric_fields(spec), max_elements))
    request = Computation(
        params=envelope.params,
        values={i.name: getattr(envelope, i.name) for i in spec.inputs},
        weights=envelope.weights,
        reduction=envelope.reduction,
        dtype=envelope.dtype,
        gradients="gradients" in envelope.outputs,
    )
    result = evaluate(runtime, spec, request, max_elements)
    # numpy scalars and arrays: orjson writes float32 values as their shortest repr.
    response: dict[str, Any] = {"loss": result.loss[()]}
    if "per_sample" in envelope.outputs:
        response["per_sample"] = result.per_sample
    if "gradients" in envelope.outputs:  # {} for a loss without differentiable inputs
        response["gradients"] = result.gradients
    response.update(reduction=request.reduction, count=result.count, dtype=request.dtype)
    return orjson.dumps(response, option=JSON_OPTIONS)


def compute_composite(runtime: Runtime, body: bytes, max_elements: int) -> bytes:
    """``POST /loss/composite``: the raw JSON body in, the JSON response out."""
    data = parse_json(body, lambda key: key not in COMPOSITE_FIELDS, max_elements)
    try:
        envelope = CompositeRequest.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(list(exc.errors())) from None
    terms = resolve_terms(envelope.terms)
    fields = field_inputs(terms)
    values = envelope.model_extra or {}
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise invalid(unknown[0], f"no term takes an input {unknown[0]!r}; the terms take {', '.join(fields)}")
    request = composite_request(
        terms,
        values=values,
        weights=envelope.weights,
        reduction=envelope.reduction,
        dtype=envelope.dtype,
        gradients="gradients" in envelope.outputs,
    )
    result = evaluate(runtime, None, request, max_elements)
    assert result.terms is not None
    response: dict[str, Any] = {"loss": result.loss if envelope.reduction == "none" else result.loss[()]}
    if "per_sample" in envelope.outputs:
        response["per_sample"] = result.per_sample
    if request.gradients:
        response["gradients"] = result.gradients
    response["terms"] = [
        {"loss": t.spec.name, "weight": t.weight, "value": value} for t, value in zip(terms, result.terms, strict=True)
    ]
    response.update(reduction=envelope.reduction, count=result.count, dtype=envelope.dtype)
    return orjson.dumps(response, option=JSON_OPTIONS)
