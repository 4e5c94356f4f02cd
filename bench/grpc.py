"""Section: the Open Inference Protocol over gRPC against the HTTP V2 binding, one lossd
server serving both (LOSSD_GRPC_PORT beside LOSSD_PORT), in the same run:

- small focal (32x10 float32): requests/s of gRPC ModelInfer (raw FP32 tensors, as
  tritonclient.grpc sends them) against ``POST /v2/models/focal/infer`` with JSON tensors;
  the target is at least 1x;
- 1M-element focal (4 MB + 4 MB of float32): latency of gRPC ModelInfer with raw tensors
  against V2 binary tensors over HTTP, sequential requests; the target is at most 1.2x.

Load for gRPC comes from a bounded asyncio client (grpcio's aio channel, ``concurrency``
calls in flight on one HTTP/2 connection, the serialized request sent as is, a fixed
duration with a timeout on top, 127.0.0.1 only); HTTP load from the bench's own generator
(bench.load). Each repeat measures both, round-robin; ratios are per repeat.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import grpc
import numpy as np
import orjson

from bench.large_requests import Connection, Request, v2_binary
from bench.large_requests import arrays as large_arrays
from bench.load import Generator, Target
from bench.process import HOST, ServerProcess, free_port
from bench.small_requests import server_env
from bench.stats import Spread
from bench.table import render, spread
from service.grpc import grpc_predict_v2_pb2 as pb

METHOD = "/inference.GRPCInferenceService/ModelInfer"
V2_PATH = "/v2/models/focal/infer"
ROWS, COLUMNS = 32, 10
SMALL_TARGET = 1.0
"""gRPC requests/s over HTTP V2 JSON: at least this."""
LARGE_TARGET = 1.2
"""gRPC latency over HTTP V2 binary: at most this."""


@dataclass(frozen=True)
class Settings:
    seconds: float
    warmup: float
    repeats: int
    threads: int
    concurrency: int = 8
    large_requests: int = 5


@dataclass(frozen=True)
class Measured:
    small_grpc: Spread
    """Requests/s, one per repeat."""
    small_http: Spread
    small_ratios: Spread
    small_grpc_cpu_us: Spread
    """The server's CPU microseconds per request, one per repeat."""
    small_http_cpu_us: Spread
    large_grpc: Spread
    """Seconds per request, all requests."""
    large_http: Spread
    large_ratios: Spread
    """Per repeat: the median gRPC latency over the median HTTP one."""
    errors: int
    agree: bool
    """Both bindings answer the same losses."""

    def json(self) -> dict[str, Any]:
        return {
            "small_grpc_rps": self.small_grpc.json(),
            "small_http_json_rps": self.small_http.json(),
            "small_grpc_over_http": self.small_ratios.json(),
            "small_target": SMALL_TARGET,
            "small_grpc_server_cpu_us": self.small_grpc_cpu_us.json(),
            "small_http_server_cpu_us": self.small_http_cpu_us.json(),
            "large_grpc_seconds": self.large_grpc.json(),
            "large_http_binary_seconds": self.large_http.json(),
            "large_grpc_over_http": self.large_ratios.json(),
            "large_target": LARGE_TARGET,
            "errors": self.errors,
            "same_loss": self.agree,
        }


def infer_request(predictions: np.ndarray, targets: np.ndarray) -> bytes:
    """A serialized ModelInferRequest for focal's loss, tensors raw."""
    request = pb.ModelInferRequest(model_name="focal")
    for name, array in (("predictions", predictions), ("targets", targets)):
        request.inputs.add(name=name, datatype="FP32", shape=array.shape)
        request.raw_input_contents.append(array.tobytes())
    request.outputs.add(name="loss")
    return bytes(request.SerializeToString())


def grpc_loss(answer: bytes) -> float:
    response = pb.ModelInferResponse.FromString(answer)
    return float(np.frombuffer(response.raw_output_contents[0], np.float32)[0])


def http_loss(answer: bytes) -> float:
    return float(orjson.loads(answer)["outputs"][0]["data"][0])


def small_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    predictions = rng.uniform(0.01, 0.99, (ROWS, COLUMNS)).astype(np.float32)
    return predictions, rng.integers(0, 2, (ROWS, COLUMNS)).astype(np.float32)


def v2_json(predictions: np.ndarray, targets: np.ndarray) -> bytes:
    inputs = [
        {"name": name, "shape": list(array.shape), "datatype": "FP32", "data": array.reshape(-1).tolist()}
        for name, array in (("predictions", predictions), ("targets", targets))
    ]
    return orjson.dumps({"inputs": inputs, "outputs": [{"name": "loss"}]})


async def grpc_load(address: str, payload: bytes, concurrency: int, seconds: float) -> tuple[int, float, int]:
    """Calls answered, seconds taken and calls failed: ``concurrency`` calls in flight for
    ``seconds`` on one channel (bounded by a timeout of ``seconds + 30``)."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(METHOD)  # no serializers: bytes in, bytes out
        await call(payload, timeout=30)
        deadline = perf_counter() + seconds

        async def worker() -> tuple[int, int]:
            done = failed = 0
            while perf_counter() < deadline:
                try:
                    await call(payload, timeout=10)
                    done += 1
                except grpc.aio.AioRpcError:
                    failed += 1
            return done, failed

        start = perf_counter()
        counts = await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), seconds + 30)
        elapsed = perf_counter() - start
    return sum(c[0] for c in counts), elapsed, sum(c[1] for c in counts)


def grpc_rate(address: str, payload: bytes, concurrency: int, seconds: float) -> float:
    done, elapsed, _ = asyncio.run(grpc_load(address, payload, concurrency, seconds))
    return done / elapsed


def grpc_latencies(address: str, payload: bytes, count: int) -> tuple[list[float], bytes]:
    """Sequential calls on a channel connected beforehand; each call's seconds, the last answer."""
    with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", -1)]) as channel:
        call = channel.unary_unary(METHOD)
        answer: bytes = call(payload, timeout=60)
        times = []
        for _ in range(count):
            start = perf_counter()
            answer = call(payload, timeout=60)
            times.append(perf_counter() - start)
    return times, answer


@dataclass
class Small:
    """Per repeat: requests/s and the server's CPU microseconds per request, each binding."""

    grpc_rps: list[float] = field(default_factory=list)
    http_rps: list[float] = field(default_factory=list)
    grpc_cpu_us: list[float] = field(default_factory=list)
    http_cpu_us: list[float] = field(default_factory=list)
    errors: int = 0


def small(load: Generator, settings: Settings, address: str, server: ServerProcess) -> Small:
    """Both bindings round-robin after a warm-up, each repeat."""
    payload, body = infer_request(*small_arrays()), v2_json(*small_arrays())
    target = Target(HOST, server.port, V2_PATH, body)
    grpc_rate(address, payload, settings.concurrency, settings.warmup)
    load.run(target, settings.warmup)
    found = Small()
    for _ in range(settings.repeats):
        before = server.cpu_seconds()
        done, elapsed, failed = asyncio.run(grpc_load(address, payload, settings.concurrency, settings.seconds))
        middle = server.cpu_seconds()
        result = load.run(target, settings.seconds)
        after = server.cpu_seconds()
        found.grpc_rps.append(done / elapsed)
        found.http_rps.append(result.rps)
        found.grpc_cpu_us.append((middle - before) / max(done, 1) * 1e6)
        found.http_cpu_us.append((after - middle) / max(result.requests, 1) * 1e6)
        found.errors += failed + result.errors
    return found


def large(settings: Settings, address: str, port: int) -> tuple[list[float], list[float], list[float], bool]:
    """Latencies of each binding (all requests), the ratio of medians per repeat, and
    whether both answered the same loss."""
    predictions, targets = large_arrays()
    payload = infer_request(predictions, targets)
    body, headers = v2_binary(predictions, targets)
    request = Request("v2", "V2 binary", body, headers, V2_PATH, V2_PATH)
    over_grpc: list[float] = []
    over_http: list[float] = []
    ratios = []
    to_http = Connection(port)
    try:
        _, http_answer = to_http.post(V2_PATH, request)
        _, grpc_answer = grpc_latencies(address, payload, 1)
        agree = bool(np.isclose(grpc_loss(grpc_answer), http_loss(http_answer), rtol=1e-6))
        for _ in range(settings.repeats):
            grpc_times, _ = grpc_latencies(address, payload, settings.large_requests)
            http_times = [to_http.post(V2_PATH, request)[0] for _ in range(settings.large_requests)]
            over_grpc += grpc_times
            over_http += http_times
            ratios.append(Spread.of(grpc_times).median / Spread.of(http_times).median)
    finally:
        to_http.close()
    return over_grpc, over_http, ratios, agree


def run(load: Generator, settings: Settings) -> Measured:
    """One lossd server with both bindings; the small section, then the large one."""
    grpc_port = free_port()
    env = {**server_env(settings.threads), "LOSSD_GRPC_PORT": str(grpc_port)}
    address = f"{HOST}:{grpc_port}"
    argv = [sys.executable, "-m", "service.cli", "serve"]
    with (
        tempfile.TemporaryDirectory(prefix="lossd-bench-grpc-") as tmp,
        ServerProcess("service", argv, env, Path(tmp) / "service.log") as server,
    ):
        http_answer = server.wait_ready(V2_PATH, v2_json(*small_arrays()), timeout=180)
        _, grpc_answer = grpc_latencies(address, infer_request(*small_arrays()), 1)
        agree = bool(np.isclose(grpc_loss(grpc_answer), http_answer["outputs"][0]["data"][0], rtol=1e-6))
        found = small(load, settings, address, server)
        large_grpc, large_http, large_ratios, large_agree = large(settings, address, server.port)
    return Measured(
        Spread.of(found.grpc_rps),
        Spread.of(found.http_rps),
        Spread.of([g / h for g, h in zip(found.grpc_rps, found.http_rps, strict=True)]),
        Spread.of(found.grpc_cpu_us),
        Spread.of(found.http_cpu_us),
        Spread.of(large_grpc),
        Spread.of(large_http),
        Spread.of(large_ratios),
        found.errors,
        agree and large_agree,
    )


def verdict(ratio: float, target: float, at_least: bool) -> str:
    met = ratio >= target if at_least else ratio <= target
    return f"{'>=' if at_least else '<='} {target:.2f}x {'meets' if met else 'MISSES'}"


def report(measured: Measured, load: Generator, settings: Settings) -> str:
    m = measured
    headers = ["request", "gRPC (min-max)", "HTTP V2 (min-max)", "gRPC / HTTP (per repeat)", "target"]
    rows = [
        [
            f"small focal {ROWS}x{COLUMNS}, req/s (gRPC raw vs HTTP JSON)",
            spread(m.small_grpc),
            spread(m.small_http),
            f"{m.small_ratios.median:.2f}x ({m.small_ratios.low:.2f}-{m.small_ratios.high:.2f})",
            verdict(m.small_ratios.median, SMALL_TARGET, at_least=True),
        ],
        [
            "small focal, server CPU us per request",
            spread(m.small_grpc_cpu_us),
            spread(m.small_http_cpu_us),
            f"{m.small_grpc_cpu_us.median / m.small_http_cpu_us.median:.2f}x",
            "",
        ],
        [
            "1M-element focal, ms (gRPC raw vs HTTP binary)",
            spread(m.large_grpc, 1e3),
            spread(m.large_http, 1e3),
            f"{m.large_ratios.median:.2f}x ({m.large_ratios.low:.2f}-{m.large_ratios.high:.2f})",
            verdict(m.large_ratios.median, LARGE_TARGET, at_least=False),
        ],
    ]
    title = (
        f"gRPC against HTTP V2: one lossd server (1 uvicorn worker, ORT intra-op threads {settings.threads}) "
        f"serving both; {settings.repeats} repeats, round-robin\n"
        f"small: {settings.seconds:g} s of load each, gRPC from a bounded asyncio client "
        f"({settings.concurrency} calls in flight, one connection), HTTP from the {load.name}\n"
        f"large: {settings.large_requests} sequential requests per repeat each; "
        f"errors {m.errors}, same loss {'yes' if m.agree else 'NO'}"
    )
    return "\n".join([title, "", render(headers, rows)])
