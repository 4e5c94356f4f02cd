"""The committed gRPC stubs are what service/grpc/generate.py makes of the committed proto
(`python -m service.grpc.generate` after editing it), and the proto speaks Triton's wire
format: every message, field and method it declares is Triton's, with the same number and
type (tritonclient.grpc's own stubs are the reference)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor
from tritonclient.grpc import service_pb2 as triton

from service.grpc import generate
from service.grpc import grpc_predict_v2_pb2 as pb


def test_committed_stubs_are_current(tmp_path: Path) -> None:
    for generated in generate.generate(tmp_path):
        committed = generate.ROOT / generated.relative_to(tmp_path)
        assert committed.read_text() == generated.read_text(), (
            f"{committed.relative_to(generate.ROOT)} is stale: run `python -m service.grpc.generate`"
        )


def fields(message: Descriptor) -> dict[str, tuple[int, int, str]]:
    return {f.name: (f.number, f.type, f.message_type.name if f.message_type else "") for f in message.fields}


def reference(name: str) -> Descriptor:
    pool = triton.DESCRIPTOR.pool
    found: Descriptor = pool.FindMessageTypeByName(f"inference.{name}")
    return found


@pytest.mark.parametrize("name", sorted(pb.DESCRIPTOR.message_types_by_name))
def test_messages_are_tritons(name: str) -> None:
    ours, theirs = pb.DESCRIPTOR.message_types_by_name[name], reference(name)
    for nested in ours.nested_types:
        assert fields(nested).items() <= fields(theirs.nested_types_by_name[nested.name]).items(), nested.name
    assert fields(ours).items() <= fields(theirs).items()


def test_methods_are_tritons() -> None:
    ours = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert ours.full_name == theirs.full_name == "inference.GRPCInferenceService"
    for method in ours.methods:
        other = theirs.methods_by_name[method.name]
        assert (method.input_type.name, method.output_type.name) == (other.input_type.name, other.output_type.name)
