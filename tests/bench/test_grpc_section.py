"""The bench's gRPC section compares like with like: its gRPC request and its HTTP V2
request carry the same tensors and get the same loss from the service (small and 1M
elements), and its report renders. In process, no server and nothing timed
(``python -m bench --only grpc --quick`` is the real run)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from bench import grpc as section
from bench.large_requests import arrays, v2_binary
from bench.stats import Spread
from service.grpc import grpc_predict_v2_pb2 as pb
from service.grpc.inference import InferenceService


class Context:
    def invocation_metadata(self) -> tuple[()]:
        return ()

    async def abort(self, code: Any, detail: str) -> None:
        raise AssertionError(f"{code}: {detail}")


def grpc_loss(client: TestClient, payload: bytes) -> float:
    service = InferenceService(client.app)  # type: ignore[arg-type]
    return section.grpc_loss(asyncio.run(service.ModelInfer(payload, Context())))


def test_small_requests_agree(client: TestClient) -> None:
    predictions, targets = section.small_arrays()
    payload = section.infer_request(predictions, targets)
    request = pb.ModelInferRequest.FromString(payload)
    assert [list(i.shape) for i in request.inputs] == [[section.ROWS, section.COLUMNS]] * 2
    answer = client.post(section.V2_PATH, content=section.v2_json(predictions, targets))
    assert answer.status_code == 200, answer.text
    assert np.isclose(grpc_loss(client, payload), section.http_loss(answer.content), rtol=1e-6)


def test_large_requests_agree(client: TestClient) -> None:
    predictions, targets = arrays()
    payload = section.infer_request(predictions, targets)
    body, headers = v2_binary(predictions, targets)
    assert abs(len(payload) - len(body)) < 1000  # the same 8 MB of tensors either way
    answer = client.post(section.V2_PATH, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert np.isclose(grpc_loss(client, payload), section.http_loss(answer.content), rtol=1e-6)


def test_report_renders() -> None:
    one = Spread.of([1.0, 2.0])
    measured = section.Measured(one, one, one, one, one, one, one, one, errors=0, agree=True)
    settings = section.Settings(seconds=1, warmup=1, repeats=2, threads=1)

    class Load:
        name = "a generator"

    text = section.report(measured, Load(), settings)  # type: ignore[arg-type]
    assert "gRPC / HTTP" in text and "meets" in text
