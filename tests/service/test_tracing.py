"""OpenTelemetry traces (issue 15, item 6): opt-in, the caller's W3C traceparent continued,
spans for decode, kernel and encode; checked in process with an in-memory exporter, and end
to end with a real server exporting OTLP/HTTP to a collector on 127.0.0.1."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import numpy as np
import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service import tracing
from service.app import create_app
from service.settings import Settings
from tests.server import Server, free_port, running_server

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
FOCAL = {"predictions": [[0.2, 0.9], [0.6, 0.1]], "targets": [[0.0, 1.0], [1.0, 0.0]]}


@pytest.fixture
def traced(tmp_path: Any) -> Iterator[tuple[TestClient, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    settings = Settings(data_dir=tmp_path, graph_cache=None, grpc_port=0)
    with TestClient(create_app(settings)) as client:
        tracing.start(settings, exporter)
        try:
            yield client, exporter
        finally:
            tracing.stop()


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def test_a_request_continues_the_callers_trace_with_its_three_steps(
    traced: tuple[TestClient, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    response = client.post("/loss/focal", json=FOCAL, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"POST /loss/focal", "decode", "kernel", "encode"}
    server = spans["POST /loss/focal"]
    assert server.context is not None and server.parent is not None
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert f"{server.parent.span_id:016x}" == PARENT_ID
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 200
    steps = [spans[name] for name in ("decode", "kernel", "encode")]
    for step in steps:
        assert step.parent is not None and step.parent.span_id == server.context.span_id
    # The steps tile the server span, in order, and the kernel took time.
    assert server.start_time == steps[0].start_time and steps[-1].end_time == server.end_time
    for before, after in itertools.pairwise(steps):
        assert before.end_time == after.start_time
    assert steps[1].end_time is not None and steps[1].start_time is not None
    assert steps[1].end_time > steps[1].start_time


def test_without_a_traceparent_a_request_starts_a_trace(traced: tuple[TestClient, InMemorySpanExporter]) -> None:
    client, exporter = traced
    assert client.post("/v2/models/focal/infer", json=v2_focal()).status_code == 200
    spans = by_name(exporter.get_finished_spans())
    assert spans["POST /v2/models/focal/infer"].parent is None
    assert {"decode", "kernel", "encode"} <= set(spans)


def test_a_refused_request_has_its_span_and_status_but_no_steps(
    traced: tuple[TestClient, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    response = client.post("/loss/focal", json={"predictions": [[0.5]], "targets": [[2.0]]})
    assert response.status_code == 422
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"POST /loss/focal"}
    attributes = spans["POST /loss/focal"].attributes
    assert attributes is not None and attributes["http.response.status_code"] == 422


def v2_focal() -> dict[str, Any]:
    values = np.array(FOCAL["predictions"]).ravel().tolist()
    targets = np.array(FOCAL["targets"]).ravel().tolist()
    return {
        "inputs": [
            {"name": "predictions", "shape": [2, 2], "datatype": "FP32", "data": values},
            {"name": "targets", "shape": [2, 2], "datatype": "FP32", "data": targets},
        ]
    }


def test_off_by_default_and_nothing_of_opentelemetry_is_loaded() -> None:
    code = (
        "import sys; from service.app import create_app; from service.settings import Settings;"
        "from service import tracing; s = Settings(); create_app(s);"
        "print(tracing.wanted(s), any(m.startswith('opentelemetry.sdk') for m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "LOSSD_OTEL_ENDPOINT"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({"LOSSD_OTEL_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"LOSSD_OTEL_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_what_turns_it_on(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], wanted: bool) -> None:
    for name in ("LOSSD_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing.wanted(Settings()) is wanted


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP traces receiver: keeps each export's spans."""

    received: ClassVar[list[Any]] = []

    def do_POST(self) -> None:
        request = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["Content-Length"])))
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                Collector.received.extend(scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_real_server_exports_http_and_grpc_spans_over_otlp(tmp_path: Any) -> None:
    import tritonclient.grpc as triton

    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    grpc_port = free_port()
    env = {
        "LOSSD_OTEL_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export every 100 ms
        "LOSSD_GRPC_PORT": str(grpc_port),
        "LOSSD_DATA_DIR": str(tmp_path),
    }
    Collector.received = []
    try:
        server: Server
        with running_server(env) as server:
            import httpx

            assert httpx.post(f"{server.url}/loss/focal", json=FOCAL, headers={"traceparent": TRACEPARENT}).is_success
            client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            tensors = []
            for name in ("predictions", "targets"):
                tensor = triton.InferInput(name, [2, 2], "FP32")
                tensor.set_data_from_numpy(np.array(FOCAL[name], np.float32))
                tensors.append(tensor)
            client.infer("focal", tensors, headers={"traceparent": TRACEPARENT})
            deadline = time.monotonic() + 20
            while len(Collector.received) < 8 and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        collector.shutdown()
        collector.server_close()
    names = sorted(span.name for span in Collector.received)
    assert names == sorted(["POST /loss/focal", "ModelInfer focal"] + ["decode", "kernel", "encode"] * 2)
    for span in Collector.received:
        assert span.trace_id.hex() == TRACE_ID
    roots = [span for span in Collector.received if span.name in ("POST /loss/focal", "ModelInfer focal")]
    assert all(span.parent_span_id.hex() == PARENT_ID for span in roots)
