"""``POST /loss/{name}``: raw body in, one onnxruntime run, JSON bytes out."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from kernels.runtime import NUMPY_DTYPE, Runtime
from kernels.spec import LossSpec
from service.arrays import decode_inputs, decode_weights
from service.errors import ProblemError, from_validation_error, invalid
from service.schemas import request_model

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


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


def compute(runtime: Runtime, spec: LossSpec, body: bytes, max_elements: int) -> bytes:
    request = validate_envelope(spec, parse_json(body))
    params = request.params  # type: ignore[attr-defined]
    reduction: str = request.reduction  # type: ignore[attr-defined]
    outputs: list[str] = request.outputs  # type: ignore[attr-defined]
    dtype_name: str = request.dtype  # type: ignore[attr-defined]
    dtype = NUMPY_DTYPE[dtype_name]
    weights_value = request.weights  # type: ignore[attr-defined]
    if reduction == "none" and weights_value is not None:
        raise invalid("weights", "sample weights apply to reductions 'mean' and 'sum', not 'none'")
    if spec.batch_level and weights_value is not None:
        raise invalid("weights", f"{spec.name} is one value for the whole batch: it takes no sample weights")

    batch = decode_inputs(spec, params, data_of(request, spec), dtype, max_elements)
    mean = reduction == "mean"
    weights = decode_weights(weights_value, batch.count, dtype, mean)
    gradients = "gradients" in outputs and bool(spec.differentiable)
    kernel = runtime.kernel(spec, params, dtype_name, gradients)
    names = ["loss", "per_sample", *(f"grad_{n}" for n in spec.differentiable if gradients)]
    loss_array, per_sample, *grads = runtime.run(kernel, params, batch.arrays, weights, mean, names)
    loss = loss_array[()]  # a numpy scalar: orjson writes float32 as its shortest repr

    if not np.isfinite(loss):
        raise undefined_loss(spec, per_sample, dtype_name)
    response: dict[str, Any] = {"loss": per_sample if reduction == "none" else loss}
    if "per_sample" in outputs:
        response["per_sample"] = per_sample
    if gradients:
        response["gradients"] = {
            name: grad.reshape(batch.shapes[name]) for name, grad in zip(spec.differentiable, grads, strict=True)
        }
    response.update(reduction=reduction, count=batch.count, dtype=dtype_name)
    return orjson.dumps(response, option=JSON_OPTIONS)


def data_of(request: BaseModel, spec: LossSpec) -> dict[str, Any]:
    return {i.name: getattr(request, i.name) for i in spec.inputs}


def undefined_loss(spec: LossSpec, per_sample: np.ndarray, dtype: str) -> ProblemError:
    """A non-finite loss (JSON has no inf or NaN): a sample's own loss, or the weighted mean's divisor."""
    bad = ~np.isfinite(per_sample)
    if bad.any():
        n = int(np.argmax(bad))
        return ProblemError(
            422,
            "Undefined loss",
            f"the loss of sample {n} is not finite ({per_sample[n].item()!r}) in {dtype}: its inputs are beyond the "
            "range the loss can be computed in",
            field=spec.inputs[0].name,
        )
    return ProblemError(
        422,
        "Undefined loss",
        "the loss is not finite: with reduction 'mean', every target is ignored or has zero weight",
        field="targets",
    )
