"""ModelInferRequest in, ModelInferResponse out: protobuf messages as service.v2's
protocol model (the same checks, parameters and outputs as HTTP), nothing computed here.
Inputs come as ``raw_input_contents`` (one entry per input, in order, as tritonclient.grpc
sends them) or as typed ``contents``; outputs always go as ``raw_output_contents``, as
Triton answers."""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.spec import LossSpec
from service import v2
from service.compute import Computed
from service.grpc import grpc_predict_v2_pb2 as pb

CONTENTS = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
}
"""The typed contents field of each datatype (FP16 has none: raw only, as in Triton)."""


def parameter(value: pb.InferParameter) -> Any:
    """An InferParameter as the Python scalar it holds (None when none is set)."""
    which = value.WhichOneof("parameter_choice")
    return None if which is None else getattr(value, which)


def parameters(mapping: Any) -> dict[str, Any]:
    return {key: parameter(value) for key, value in mapping.items()}


def decode(spec: LossSpec, request: pb.ModelInferRequest) -> v2.Prepared:
    """The request's inputs, parameters and outputs, checked as service.v2 checks HTTP's."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise v2.bad_request(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: "
            "send one per input, in the order of inputs, or none"
        )
    names = v2.input_names(spec)
    values: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    for index, tensor in enumerate(request.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
        v2.check_input(spec, name, names, values)
        if raw:
            if tensor.HasField("contents"):
                raise v2.bad_request(f"input {name}: both contents and raw_input_contents")
            values[name] = v2.tensor_from_bytes(name, datatype, shape, raw[index], f"raw_input_contents[{index}]")
        else:
            values[name] = v2.tensor_from_values(name, datatype, shape, typed_contents(name, datatype, shape, tensor))
        datatypes[name] = datatype
    outputs = [output.name for output in request.outputs] or None  # none named: all of them
    return v2.prepare(spec, values, datatypes, parameters(request.parameters), outputs)


def typed_contents(name: str, datatype: str, shape: list[int], tensor: pb.ModelInferRequest.InferInputTensor) -> Any:
    field = CONTENTS.get(datatype)
    if field is None:
        v2.datatype_of(name, datatype, shape)  # an unknown datatype is refused as such
        raise v2.bad_request(f"input {name}: {datatype} has no typed contents: send it in raw_input_contents")
    return getattr(tensor.contents, field)


def encode(spec: LossSpec, request: pb.ModelInferRequest, prepared: v2.Prepared, result: Computed) -> Any:
    """The response: every requested output, in order, as raw little-endian bytes."""
    response = pb.ModelInferResponse(model_name=spec.name, model_version="1", id=request.id)
    datatype = v2.FLOAT_OF_DTYPE[prepared.dtype]
    for name in prepared.delivered(spec, result):
        array = np.ascontiguousarray(v2.output_array(name, result))
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(array.tobytes())
    return response
