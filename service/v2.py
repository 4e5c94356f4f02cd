"""The Open Inference Protocol (KServe V2, as Triton serves it) for every loss: model
metadata and config derived from the declarations, and infer requests with JSON or
binary tensors (the binary tensor data extension), computed by the data plane (``service.compute``). Its errors
are service.errors values; service.problems renders them as ``{"error": ...}``.

What does not depend on the binding (the models' metadata, tensors from bytes or numbers,
``prepare``: checked inputs, parameters and outputs as the data plane's Computation) is
shared with the gRPC edge (service.grpc), which decodes its protobuf messages into them."""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kernels.graph import graph_dims
from kernels.runtime import Runtime
from kernels.spec import Input, LossSpec
from service import __version__, json_arrays
from service.compute import Computation, Computed, evaluate
from service.errors import EXTRA, Kind, ServiceError, extra_keys, location, malformed, unsupported
from service.limits import inflated_too_large

HEADER_LENGTH = "inference-header-content-length"
DATATYPES: dict[str, type[np.generic]] = {
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
}
FLOAT_OF_DTYPE = {"float32": "FP32", "float64": "FP64"}
RESERVED = {
    "binary_data_output",
    "reduction",
    "dtype",
    "sequence_id",
    "sequence_start",
    "sequence_end",
    "priority",
    "timeout",
}
EXTENSIONS = ["binary_tensor_data", "model_configuration", "parameters", "statistics"]


def bad_request(message: str) -> ServiceError:
    """A request the protocol cannot take (400, as Triton answers)."""
    return ServiceError(Kind.INVALID, "Invalid inference request", message)


class TensorInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int] = Field(min_length=0)
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = Field(None, description="JSON tensor data, row-major, flat or nested; absent with binary_data_size.")


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[TensorInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


# The response as encode_response writes it, for the OpenAPI document (never parsed).
class TensorOutput(BaseModel):
    """One output tensor."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size when the data follows the JSON.")
    data: list[float] | None = Field(None, description="The elements, flat and row-major, when sent as JSON.")


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[TensorOutput]


# Triton's statistics extension, as service.stats writes it, for the OpenAPI document.
class StatisticDuration(BaseModel):
    count: int
    ns: int = Field(description="Cumulative nanoseconds.")


class InferStatistics(BaseModel):
    success: StatisticDuration = Field(description="Requests answered with a 200, whole answer (body read excluded).")
    fail: StatisticDuration = Field(description="Requests answered with an error.")
    queue: StatisticDuration = Field(description="Always 0 ns: lossd queues nothing.")
    compute_input: StatisticDuration = Field(description="Parsing and checking the inputs.")
    compute_infer: StatisticDuration = Field(description="The onnxruntime run.")
    compute_output: StatisticDuration = Field(description="Encoding the response.")


class ModelStatistics(BaseModel):
    name: str
    version: str
    last_inference: int = Field(description="Milliseconds since the epoch of the latest success; 0: none yet.")
    inference_count: int = Field(description="Successful requests (lossd batches nothing: one inference each).")
    execution_count: int
    inference_stats: InferStatistics
    batch_stats: list[dict[str, Any]] = Field(description="Always empty (max_batch_size is 0).")


class ModelStatisticsResponse(BaseModel):
    model_stats: list[ModelStatistics]


def output_names(spec: LossSpec) -> list[str]:
    return ["loss", "per_sample", *(f"gradient_{n}" for n in spec.differentiable)]


def _dims(spec_input: Input) -> list[int]:
    return [-1] * len(graph_dims(spec_input.shape))


def _input_datatype(spec_input: Input) -> str:
    return "INT64" if spec_input.integer else "FP32"


def server_metadata() -> dict[str, Any]:
    return {"name": "lossd", "version": __version__, "extensions": EXTENSIONS}


def model_metadata(spec: LossSpec) -> dict[str, Any]:
    """Shapes use -1 for every axis; an input's "..." axes are one -1 here but any number
    of axes may be sent. Float inputs and outputs are FP32 or FP64 (both served). A loss that
    is one value for the whole batch lists no ``weights``: it takes none."""
    weights = [] if spec.batch_level else [{"name": "weights", "datatype": "FP32", "shape": [-1]}]
    return {
        "name": spec.name,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": i.name, "datatype": _input_datatype(i), "shape": _dims(i)} for i in spec.inputs] + weights,
        "outputs": [
            {"name": "loss", "datatype": "FP32", "shape": [-1]},
            {"name": "per_sample", "datatype": "FP32", "shape": [-1]},
            *(
                {"name": f"gradient_{i.name}", "datatype": "FP32", "shape": _dims(i)}
                for i in spec.inputs
                if i.differentiable
            ),
        ],
    }


def model_config(spec: LossSpec) -> dict[str, Any]:
    """Triton's model configuration: the batch axis is part of every shape, so
    ``max_batch_size`` is 0 (lossd batches nothing itself)."""
    metadata = model_metadata(spec)
    optional = {"weights", *(i.name for i in spec.inputs if i.optional is not None)}
    return {
        "name": spec.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": 0,
        "input": [
            {
                "name": i["name"],
                "data_type": f"TYPE_{i['datatype']}",
                "dims": i["shape"],
                "optional": i["name"] in optional,
            }
            for i in metadata["inputs"]
        ],
        "output": [
            {"name": o["name"], "data_type": f"TYPE_{o['datatype']}", "dims": o["shape"]} for o in metadata["outputs"]
        ],
        "parameters": {name: {"string_value": str(field.default)} for name, field in spec.params.model_fields.items()},
    }


def _decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent, inflated: at most ``limit`` bytes (LOSSD_MAX_BODY_BYTES), so that a
    small compressed body cannot inflate without bound."""
    if encoding is None:
        return body
    coding = encoding.strip().lower()  # content codings are case-insensitive (RFC 9110, 8.4.1)
    if coding == "identity":
        return body
    if coding not in ("gzip", "deflate"):
        raise unsupported(f"unsupported Content-Encoding {encoding!r}: use gzip, deflate or none")
    encoding = coding
    parts: list[bytes] = []
    size, rest = 0, body
    while True:  # a gzip body may be several members (RFC 1952, 2.2), each inflated in turn
        inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)  # 31: gzip framing; 15: zlib's
        try:
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise malformed(f"the body is not valid {encoding} data: {exc}", title="Malformed body") from None
        parts.append(part)
        size += len(part)
        if size > limit:
            raise inflated_too_large(limit)
        if not inflater.eof:
            raise malformed(
                f"the body is not valid {encoding} data: the compressed stream ends early", title="Malformed body"
            )
        rest = inflater.unused_data
        if not rest:
            break
        if encoding != "gzip" or not rest.startswith(b"\x1f\x8b"):
            detail = f"the body is not valid {encoding} data: {len(rest)} bytes follow the compressed stream"
            raise malformed(detail, title="Malformed body")
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    return data


def buffer_type(datatype: Any) -> str:
    """How simdjson reads a tensor's JSON data: as double, int64 or uint64."""
    if isinstance(datatype, str) and datatype.startswith("INT"):
        return "i"
    if isinstance(datatype, str) and datatype.startswith("UINT"):
        return "u"
    return "d"


def split_body(
    body: bytes, headers: Mapping[str, str], max_body: int, max_elements: int | None = None
) -> tuple[InferRequest, memoryview]:
    body = _decompress(body, headers.get("content-encoding"), max_body)
    length_header = headers.get(HEADER_LENGTH)
    if length_header is None:
        header, binary = body, memoryview(b"")
    else:
        try:
            length = int(length_header)
        except ValueError:
            raise bad_request(f"Inference-Header-Content-Length {length_header!r} is not an integer") from None
        if not 0 < length <= len(body):
            raise bad_request(f"Inference-Header-Content-Length {length} does not fit a body of {len(body)} bytes")
        header, binary = body[:length], memoryview(body)[length:]
    try:
        request = InferRequest.model_validate(json_arrays.loads_infer_header(header, buffer_type, max_elements))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise bad_request(f"{location(tuple(first['loc']))}: {first['msg']}") from None
    return request, binary


def datatype_of(name: str, datatype: str, shape: Sequence[int]) -> type[np.generic]:
    """The numpy type of an input's datatype, once its shape is checked."""
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise bad_request(f"input {name}: datatype {datatype} is not supported ({', '.join(DATATYPES)})")
    if any(d < 0 for d in shape):
        raise bad_request(f"input {name}: shape {list(shape)} has a negative dimension")
    return dtype


def tensor_from_bytes(
    name: str, datatype: str, shape: Sequence[int], data: bytes | memoryview, what: str
) -> np.ndarray:
    """An input sent as raw bytes (row-major, little-endian): a binary tensor's slice of an
    HTTP body, or a gRPC ``raw_input_contents`` entry. ``what`` names the bytes' size field."""
    dtype = datatype_of(name, datatype, shape)
    expected = math.prod(shape) * np.dtype(dtype).itemsize
    if len(data) != expected:
        raise bad_request(
            f"input {name}: {what} of {len(data)} bytes does not match shape {list(shape)} of {datatype} "
            f"({expected} bytes)"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def tensor_from_values(name: str, datatype: str, shape: Sequence[int], values: Any) -> np.ndarray:
    """An input sent as numbers: JSON ``data`` (flat or nested) or gRPC typed ``contents``."""
    dtype = datatype_of(name, datatype, shape)
    count = math.prod(shape)
    if isinstance(values, json_arrays.BadArray):
        if values.error.kind is not Kind.INVALID:  # LOSSD_MAX_ELEMENTS
            raise values.error
        raise bad_request(f"input {name}: data {values.error.detail.split(': ', 1)[1]}")
    problem = json_arrays.list_problem(values) if isinstance(values, list) else None  # small or slow-path bodies
    if problem is not None:
        raise bad_request(f"input {name}: data {problem}")
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.asarray(values, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        problem = json_arrays.first_problem(values) if isinstance(values, list) else None
        raise bad_request(f"input {name}: data {problem or 'must be a (nested) list of numbers'}") from None
    if array.size != count:
        raise bad_request(f"input {name}: shape {list(shape)} needs {count} values, data has {array.size}")
    return array.reshape(shape)


def decode_tensor(tensor: TensorInput, binary: memoryview, offset: int) -> tuple[np.ndarray, int]:
    """A tensor from its JSON data or its slice of the binary part; returns the next offset."""
    size = tensor.parameters.get("binary_data_size")
    if size is None:
        if tensor.data is None:
            datatype_of(tensor.name, tensor.datatype, tensor.shape)
            raise bad_request(f"input {tensor.name}: no data and no binary_data_size")
        return tensor_from_values(tensor.name, tensor.datatype, tensor.shape, tensor.data), offset
    dtype = datatype_of(tensor.name, tensor.datatype, tensor.shape)
    if not isinstance(size, int) or isinstance(size, bool):
        raise bad_request(f"input {tensor.name}: binary_data_size {size!r} is not an integer")
    expected = math.prod(tensor.shape) * np.dtype(dtype).itemsize
    if size != expected:
        raise bad_request(
            f"input {tensor.name}: binary_data_size {size} does not match shape {tensor.shape} of "
            f"{tensor.datatype} ({expected} bytes)",
        )
    if offset + size > len(binary):
        raise bad_request(f"input {tensor.name}: the body ends before its {size} bytes of binary data")
    data = binary[offset : offset + size]
    return tensor_from_bytes(tensor.name, tensor.datatype, tensor.shape, data, "binary_data_size"), offset + size


def parse_params(spec: LossSpec, parameters: Mapping[str, Any]) -> Any:
    """Request parameters other than the protocol's own are the loss's params; list-valued
    params (class weights) may come as JSON text, since V2 parameters are scalars."""
    given = {}
    for key, value in parameters.items():
        if key in RESERVED:
            continue
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise bad_request(f"parameter {key}: {value!r} is not a JSON list") from None
        given[key] = value
    unknown = extra_keys(given, spec.params.model_fields)
    if unknown is not None:  # found without pydantic, which makes an error object per key
        count = unknown.extra.get("error_count", len(unknown.extra["errors"]))
        more = f" (and {count - 1} more unknown parameters)" if count > 1 else ""
        raise bad_request(f"parameter {unknown.field}: {EXTRA}{more}")
    try:
        return spec.params.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise bad_request(f"parameter {location(tuple(first['loc']))}: {first['msg']}") from None


def input_names(spec: LossSpec) -> set[str]:
    return {i.name for i in spec.inputs} | {"weights"}


def check_input(spec: LossSpec, name: str, names: set[str], seen: Mapping[str, Any]) -> None:
    """An input named in a request: one of the model's, and given once."""
    if name not in names:
        raise bad_request(f"model {spec.name} has no input {name!r}; its inputs: {', '.join(sorted(names))}")
    if name in seen:
        raise bad_request(f"input {name} is given twice")


@dataclass(frozen=True)
class Prepared:
    """A decoded infer request, as the data plane takes it: the computation, the outputs to
    send (in order) and the float dtype of the answer."""

    computation: Computation
    requested: list[str]
    dtype: str
    named: bool = True
    """The request named its outputs (else it asked for all of them)."""

    def delivered(self, spec: LossSpec, result: Computed) -> list[str]:
        """The requested outputs the result holds: a graph variant may return no gradients
        (a configured extractor without a backward); asking for one by name is then a 400."""
        missing = [n for n in self.requested if n.startswith("gradient_") and n[9:] not in result.gradients]
        if missing and self.named:
            detail = f"model {spec.name} returns no {missing[0]} with these parameters"
            raise bad_request(f"{detail}: its configured model has no backward (GET /losses/{spec.name} says why)")
        return [n for n in self.requested if n not in missing]


def prepare(
    spec: LossSpec,
    values: Mapping[str, np.ndarray],
    datatypes: Mapping[str, str],
    parameters: Mapping[str, Any],
    outputs: Sequence[str] | None,
) -> Prepared:
    """The protocol's request, bound-independent (HTTP and gRPC): decoded inputs by name
    (checked by ``check_input``) with their datatypes, the request ``parameters`` as Python
    scalars, and the names of the requested outputs (None: all of them)."""
    missing = [i.name for i in spec.required if i.name not in values]
    if missing:
        raise bad_request(f"missing input(s) {', '.join(missing)} for model {spec.name}")
    available = output_names(spec)
    requested = list(outputs) if outputs is not None else available
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise bad_request(f"model {spec.name} has no output {unknown[0]!r}; its outputs: {', '.join(available)}")
    reduction = parameters.get("reduction", "mean")
    if reduction not in ("mean", "sum", "none"):
        raise bad_request(f"parameter reduction: {reduction!r} is not one of mean, sum, none")
    first_float = next(i.name for i in spec.inputs if not i.integer)
    dtype = parameters.get("dtype", "float64" if datatypes[first_float] == "FP64" else "float32")
    if dtype not in ("float32", "float64"):
        raise bad_request(f"parameter dtype: {dtype!r} is not one of float32, float64")
    computation = Computation(
        params=parse_params(spec, parameters),
        values={i.name: values[i.name] for i in spec.inputs if i.name in values},
        weights=values.get("weights"),
        reduction=reduction,
        dtype=dtype,
        gradients=any(name.startswith("gradient_") for name in requested),
    )
    return Prepared(computation, requested, dtype, named=outputs is not None)


def infer(
    runtime: Runtime, spec: LossSpec, body: bytes, headers: Mapping[str, str], max_elements: int, max_body: int
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    request, binary = split_body(body, headers, max_body, max_elements)
    names = input_names(spec)
    values: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for tensor in request.inputs:
        check_input(spec, tensor.name, names, values)
        values[tensor.name], offset = decode_tensor(tensor, binary, offset)
        datatypes[tensor.name] = tensor.datatype
    if offset != len(binary):
        raise bad_request(f"the body has {len(binary) - offset} bytes of binary data that no input claims")
    outputs = [o.name for o in request.outputs] if request.outputs is not None else None
    prepared = prepare(spec, values, datatypes, request.parameters, outputs)
    result = evaluate(runtime, spec, prepared.computation, max_elements)
    return encode_response(spec, request, prepared.delivered(spec, result), result, prepared.dtype)


def output_array(name: str, result: Computed) -> np.ndarray:
    if name == "loss":
        return np.asarray(result.loss)
    if name == "per_sample":
        return result.per_sample
    return result.gradients[name.removeprefix("gradient_")]


def encode_response(
    spec: LossSpec, request: InferRequest, requested: list[str], result: Computed, dtype: str
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    binary_default = bool(request.parameters.get("binary_data_output", False))
    wanted: dict[str, bool] = {name: binary_default for name in requested}
    for output in request.outputs or []:
        wanted[output.name] = bool(output.parameters.get("binary_data", binary_default))
    outputs, blobs = [], []
    for name, as_binary in wanted.items():
        array = np.ascontiguousarray(output_array(name, result))
        entry: dict[str, Any] = {"name": name, "datatype": FLOAT_OF_DTYPE[dtype], "shape": list(array.shape)}
        if as_binary:
            blob = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1)
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": spec.name, "model_version": "1", "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, [(b"content-type", b"application/json")]
    headers = [(b"content-type", b"application/octet-stream"), (HEADER_LENGTH.encode(), str(len(header)).encode())]
    return b"".join([header, *blobs]), headers
