"""Section 3: latency of a 1M-element focal request, the service against its floors.

Two requests, each measured against the floor that does the least the same answer needs:

- V2 binary tensors (``POST /v2/models/focal/infer``, 4 MB + 4 MB of float32) against a bare
  ASGI app that takes the tensors with ``np.frombuffer`` and runs the service's focal
  graph once (``bench.servers.large_floor_app``);
- JSON (``POST /loss/focal``, about 21 MB) against a bare ASGI app that reads the body,
  orjson-parses it and converts both arrays to numpy, and computes nothing.

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
TARGETS = {"v2": 1.3, "json": 1.15}
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


def requests() -> list[Request]:
    predictions, targets = arrays()
    body, headers = v2_binary(predictions, targets)
    document = {"predictions": predictions, "targets": targets, "outputs": ["loss"]}
    json_body = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    return [
        Request("v2", f"V2 binary tensors ({len(body) / 1e6:.1f} MB)", body, headers, V2_PATH, LARGE_V2_PATH),
        Request(
            "json",
            f"JSON ({len(json_body) / 1e6:.1f} MB)",
            json_body,
            {"Content-Type": "application/json"},
            JSON_PATH,
            LARGE_JSON_PATH,
        ),
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


def same_loss(service: float | None, floor: float | None) -> bool | None:
    """None when the floor computes nothing (JSON): there is nothing to compare with."""
    if floor is None:
        return None
    return service is not None and math.isclose(service, floor, rel_tol=1e-5)


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
    agree: bool | None

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
            "target": TARGETS[self.request.key],
            "same_loss": self.agree,
        }


def run(settings: Settings) -> list[Measured]:
    """Start the service and the floor app, check they agree, then time them round-robin."""
    env = server_env(settings.threads)
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="lossd-bench-large-") as tmp, ExitStack() as stack:
        service = stack.enter_context(
            ServerProcess("service", [python, "-m", "service.cli", "serve"], env, Path(tmp) / "service.log")
        )
        floor = stack.enter_context(
            ServerProcess(
                "floor", [python, "-m", "bench.launch", "bench.servers:large_floor_app"], env, Path(tmp) / "floor.log"
            )
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
                for _ in range(settings.repeats):
                    for name, connection, path in (
                        ("service", to_service, request.service_path),
                        ("floor", to_floor, request.floor_path),
                    ):
                        times[name] += [connection.post(path, request)[0] for _ in range(settings.requests)]
            finally:
                to_service.close()
                to_floor.close()
            results.append(Measured(request, Spread.of(times["service"]), Spread.of(times["floor"]), agree))
    return results


def report(results: list[Measured], settings: Settings) -> str:
    headers = ["request", "service ms (min-max)", "floor ms (min-max)", "service / floor", "target", "same loss"]
    rows = [
        [
            m.request.label,
            f"{number(m.service.median * 1e3)} ({number(m.service.low * 1e3)}-{number(m.service.high * 1e3)})",
            f"{number(m.floor.median * 1e3)} ({number(m.floor.low * 1e3)}-{number(m.floor.high * 1e3)})",
            f"{m.ratio:.2f}x",
            f"<= {TARGETS[m.request.key]:.2f}x {'meets' if m.ratio <= TARGETS[m.request.key] else 'MISSES'}",
            {True: "yes", False: "NO", None: "n/a"}[m.agree],
        ]
        for m in results
    ]
    title = (
        f"Large requests: focal on {ROWS:,}x{COLUMNS} float32 (1M elements), 1 uvicorn worker each, ORT intra-op "
        f"threads {settings.threads}; {settings.repeats} x {settings.requests} sequential requests per server, "
        "round-robin; latency median (min-max) of all requests\n"
        "floors: V2 = bare ASGI + np.frombuffer + one ORT run of the same graph; "
        "JSON = bare ASGI reading the body + orjson.loads + np.asarray (no compute)"
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
