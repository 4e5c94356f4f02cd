"""Section 3: latency of a 1M-element focal request, the service against its floors.

Each request is measured against the floor that does the least the same answer needs:

- V2 binary tensors (``POST /v2/models/focal/infer``, 4 MB + 4 MB of float32) against a bare
  ASGI app that takes the tensors with ``np.frombuffer`` and runs the service's focal
  graph once (``bench.servers.large_floor_app``);
- JSON (``POST /loss/focal``, about 21 MB), as ``(100000, 10)`` and as ``(1000000,)``,
  against the parse floor: a bare ASGI app that parses the body with simdjson straight into
  numpy buffers (no Python object per number) and runs the same graph once.

One uvicorn worker each, sequential requests (each on a connection opened beforehand), round-robin.
"""

from __future__ import annotations

import http.client
import math
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import orjson

from bench.process import HOST, ServerProcess
from bench.servers import LARGE_JSON_PATH, LARGE_V2_PATH
from bench.small_requests import server_env
from bench.stats import Spread
from bench.table import number, render

ROWS, COLUMNS = 100_000, 10
V2_PATH = "/v2/models/focal/infer"
JSON_PATH = "/loss/focal"
TARGETS = {"v2": 1.3, "json": 2.0, "json_flat": 2.0}
"""The service's latency should be at most this multiple of its floor's."""


@dataclass(frozen=True)
class Request:
    key: str
    label: str
    body: bytes
    headers: dict[str, str]
    service_path: str
    floor_path: str


def arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    predictions = rng.uniform(0.01, 0.99, (ROWS, COLUMNS)).astype(np.float32)
    targets = rng.integers(0, 2, (ROWS, COLUMNS)).astype(np.float32)
    return predictions, targets


def v2_binary(predictions: np.ndarray, targets: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """A V2 infer request with both tensors in the binary extension, the loss asked as JSON."""
    inputs = [
        {
            "name": name,
            "shape": list(array.shape),
            "datatype": "FP32",
            "parameters": {"binary_data_size": array.nbytes},
        }
        for name, array in (("predictions", predictions), ("targets", targets))
    ]
    header = orjson.dumps({"inputs": inputs, "outputs": [{"name": "loss", "parameters": {"binary_data": False}}]})
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    return header + predictions.tobytes() + targets.tobytes(), headers


def json_request(key: str, predictions: np.ndarray, targets: np.ndarray) -> Request:
    document = {"predictions": predictions, "targets": targets, "outputs": ["loss"]}
    body = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    shape = "x".join(map(str, predictions.shape)) if predictions.ndim > 1 else f"{predictions.size},"
    label = f"JSON ({shape}) ({len(body) / 1e6:.1f} MB)"
    return Request(key, label, body, {"Content-Type": "application/json"}, JSON_PATH, LARGE_JSON_PATH)


def requests() -> list[Request]:
    predictions, targets = arrays()
    body, headers = v2_binary(predictions, targets)
    return [
        Request("v2", f"V2 binary tensors ({len(body) / 1e6:.1f} MB)", body, headers, V2_PATH, LARGE_V2_PATH),
        json_request("json", predictions, targets),
        json_request("json_flat", predictions.reshape(-1), targets.reshape(-1)),
    ]


class Connection:
    """Requests to a server, timing whole requests. A fresh connection for each, opened
    before the clock starts: a kept-alive one would be closed by uvicorn after 5 s idle while
    the other server is measured."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection: http.client.HTTPConnection | None = None

    def post(self, path: str, request: Request) -> tuple[float, bytes]:
        self.close()
        connection = self.connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
        connection.connect()
        start = perf_counter()
        connection.request("POST", path, request.body, request.headers)
        response = connection.getresponse()
        answer = response.read()
        elapsed = perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"POST {path} answered {response.status}: {answer[:300]!r}")
        return elapsed, answer

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def loss_of(answer: bytes) -> float | None:
    data = orjson.loads(answer)
    if "outputs" in data:
        return float(data["outputs"][0]["data"][0])
    return float(data["loss"]) if "loss" in data else None


def same_loss(service: float | None, floor: float | None) -> bool:
    return service is not None and floor is not None and math.isclose(service, floor, rel_tol=1e-5)


@dataclass(frozen=True)
class Settings:
    repeats: int
    requests: int
    threads: int


@dataclass(frozen=True)
class Measured:
    request: Request
    service: Spread
    floor: Spread
    agree: bool
    ratios: Spread
    """Service over floor, one per round-robin repeat (the medians of its requests)."""

    @property
    def ratio(self) -> float:
        return self.service.median / self.floor.median

    def json(self) -> dict[str, Any]:
        return {
            "label": self.request.label,
            "body_bytes": len(self.request.body),
            "service_seconds": self.service.json(),
            "floor_seconds": self.floor.json(),
            "service_over_floor": self.ratio,
            "service_over_floor_per_repeat": self.ratios.json(),
            "target": TARGETS[self.request.key],
            "same_loss": self.agree,
        }


def servers() -> dict[str, list[str]]:
    """The command line of each server; they run with ``server_env``."""
    python = sys.executable
    return {
        "service": [python, "-m", "service.cli", "serve"],
        "floor": [python, "-m", "bench.launch", "bench.servers:large_floor_app"],
    }


def run(settings: Settings) -> list[Measured]:
    """Start the service and the floor app, check they agree, then time them round-robin."""
    env = server_env(settings.threads)
    argv = servers()
    with tempfile.TemporaryDirectory(prefix="lossd-bench-large-") as tmp, ExitStack() as stack:
        service, floor = (
            stack.enter_context(ServerProcess(name, argv[name], env, Path(tmp) / f"{name}.log"))
            for name in ("service", "floor")
        )
        small = orjson.dumps({"predictions": [[0.5]], "targets": [[1.0]]})
        service.wait_ready(JSON_PATH, small, timeout=180)
        floor.wait_ready(LARGE_JSON_PATH, small)
        results = []
        for request in requests():
            to_service, to_floor = Connection(service.port), Connection(floor.port)
            try:
                _, service_answer = to_service.post(request.service_path, request)
                _, floor_answer = to_floor.post(request.floor_path, request)
                agree = same_loss(loss_of(service_answer), loss_of(floor_answer))
                times: dict[str, list[float]] = {"service": [], "floor": []}
                ratios = []
                for _ in range(settings.repeats):
                    medians = {}
                    for name, connection, path in (
                        ("service", to_service, request.service_path),
                        ("floor", to_floor, request.floor_path),
                    ):
                        batch = [connection.post(path, request)[0] for _ in range(settings.requests)]
                        times[name] += batch
                        medians[name] = Spread.of(batch).median
                    ratios.append(medians["service"] / medians["floor"])
            finally:
                to_service.close()
                to_floor.close()
            service_times, floor_times = Spread.of(times["service"]), Spread.of(times["floor"])
            results.append(Measured(request, service_times, floor_times, agree, Spread.of(ratios)))
    return results


def report(results: list[Measured], settings: Settings) -> str:
    headers = [
        "request",
        "service ms (min-max)",
        "floor ms (min-max)",
        "service / floor (per repeat)",
        "target",
        "same loss",
    ]
    rows = [
        [
            m.request.label,
            f"{number(m.service.median * 1e3)} ({number(m.service.low * 1e3)}-{number(m.service.high * 1e3)})",
            f"{number(m.floor.median * 1e3)} ({number(m.floor.low * 1e3)}-{number(m.floor.high * 1e3)})",
            f"{m.ratio:.2f}x ({m.ratios.low:.2f}-{m.ratios.high:.2f})",
            f"<= {TARGETS[m.request.key]:.2f}x {'meets' if m.ratio <= TARGETS[m.request.key] else 'MISSES'}",
            "yes" if m.agree else "NO",
        ]
        for m in results
    ]
    title = (
        f"Large requests: focal on {ROWS * COLUMNS:,} float32 elements, 1 uvicorn worker each, ORT intra-op "
        f"threads {settings.threads}; {settings.repeats} x {settings.requests} sequential requests per server, "
        "round-robin; latency median (min-max) of all requests\n"
        "floors: V2 = bare ASGI + np.frombuffer + one ORT run of the same graph; "
        "JSON = bare ASGI + simdjson into numpy buffers + the same ORT run"
    )
    return "\n".join([title, "", render(headers, rows)])


def json(results: list[Measured], settings: Settings) -> dict[str, Any]:
    return {
        "rows": ROWS,
        "columns": COLUMNS,
        "threads": settings.threads,
        "repeats": settings.repeats,
        "requests": settings.requests,
        "results": {m.request.key: m.json() for m in results},
    }
