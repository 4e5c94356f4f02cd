"""One loss computation, shared by the REST API and the Open Inference Protocol: checked
inputs in, one onnxruntime run, loss, per-sample losses and gradients out."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from kernels.composite import CompositeSpec
from kernels.runtime import NUMPY_DTYPE, Kernel, OperatorModelError, Runtime
from kernels.spec import LossSpec, NotConfigured, Params, UnknownChoice
from service import metrics
from service.arrays import check_fixed_dims, decode_inputs, decode_weights
from service.errors import ProblemError, from_validation_error, invalid, not_configured
from service.schemas import request_model
from service.terms import decode_terms

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True)
class Computation:
    """What a request asks for; ``values`` are JSON lists or numpy arrays by input name."""

    params: Params
    values: Mapping[str, Any]
    weights: Any
    reduction: Literal["mean", "sum", "none"]
    dtype: Literal["float32", "float64"]
    gradients: bool


@dataclass(frozen=True)
class Computed:
    loss: np.ndarray
    """A scalar, or per-sample values for reduction 'none'."""
    per_sample: np.ndarray
    gradients: dict[str, np.ndarray]
    """By input name, each in its input's shape."""
    count: int


def evaluate(runtime: Runtime, spec: LossSpec, request: Computation, max_elements: int) -> Computed:
    if spec.batch_level and request.weights is not None:
        raise invalid("weights", f"{spec.name} is one value for the whole batch: it takes no sample weights")
    if request.reduction == "none" and request.weights is not None:
        raise invalid("weights", "sample weights apply to reductions 'mean' and 'sum', not 'none'")
    dtype = NUMPY_DTYPE[request.dtype]
    gradients = request.gradients and bool(spec.differentiable)
    kernel = select_kernel(runtime, spec, request.params, request.dtype, gradients)
    if isinstance(spec, CompositeSpec):  # each term checks its own inputs
        batch = decode_terms(spec.terms, request.values, dtype, max_elements)
    else:
        batch = decode_inputs(spec, request.params, request.values, dtype, max_elements)
    if kernel.fixed_dims:
        check_fixed_dims(spec, kernel, batch)
    mean = request.reduction == "mean"
    weights = decode_weights(request.weights, batch.count, dtype, mean)
    names = ["loss", "per_sample", *(f"grad_{n}" for n in spec.differentiable if gradients)]
    start = time.perf_counter()
    try:
        loss, per_sample, *grads = runtime.run(kernel, request.params, batch.arrays, weights, mean, names)
    except OperatorModelError as exc:
        raise invalid(spec.inputs[0].name, f"the configured model could not process the inputs: {exc}") from None
    metrics.kernel_seconds(spec.name).observe(time.perf_counter() - start)
    if not np.isfinite(loss):
        raise undefined_loss(spec, loss, per_sample, request.dtype)
    shaped = {name: grad.reshape(batch.shapes[name]) for name, grad in zip(spec.differentiable, grads, strict=False)}
    return Computed(per_sample if request.reduction == "none" else loss, per_sample, shaped, batch.count)


def undefined_loss(spec: LossSpec, loss: np.ndarray, per_sample: np.ndarray, dtype: str) -> ProblemError:
    """Why a reduced loss is not finite: a sample's loss overflowed the dtype, the sum did,
    or a mean has nothing to divide by."""
    hint = "; send dtype float64" if dtype == "float32" else ""
    bad = ~np.isfinite(per_sample)
    if bad.any():  # e.g. exp of a large log-rate, a squared distance beyond float32's range
        index = int(np.argmax(bad))
        what = "the loss" if spec.batch_level else f"the loss of sample [{index}]"
        detail = f"{what} is {per_sample[index].item()!r}: the inputs overflow {dtype}{hint}"
        return ProblemError(422, "Undefined loss", detail, field=spec.inputs[0].name)
    if np.isinf(loss):
        return ProblemError(422, "Undefined loss", f"the reduced loss overflows {dtype}{hint}")
    return ProblemError(
        422,
        "Undefined loss",
        "the loss is not finite: with reduction 'mean', every target is ignored or has zero weight",
        field="targets",
    )


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProblemError(400, "Malformed JSON", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProblemError(422, "Invalid request", f"the body must be a JSON object, got {type(data).__name__}")
    return data


def validate_envelope(spec: LossSpec, data: dict[str, Any]) -> BaseModel:
    try:
        return request_model(spec).model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(list(exc.errors())) from None


def select_kernel(runtime: Runtime, spec: LossSpec, params: Params, dtype: str, gradients: bool) -> Kernel:
    """The graph for a request: 409 when the loss needs something the operator has not
    configured, 422 when a param names something that is not configured."""
    try:
        return runtime.kernel(spec, params, dtype, gradients)
    except NotConfigured as exc:
        raise not_configured(exc) from None
    except UnknownChoice as exc:
        raise invalid(f"params.{exc.param}", str(exc)) from None


def compute(runtime: Runtime, spec: LossSpec, body: bytes, max_elements: int) -> bytes:
    """``POST /loss/{name}``: the raw JSON body in, the JSON response out."""
    envelope: Any = validate_envelope(spec, parse_json(body))
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
