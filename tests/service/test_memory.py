"""A worker's memory after large requests returns near its idle size (issue 18, item 1).

onnxruntime kept one arena per session at its peak: ten large requests through ten losses
took a worker from 164 MB to 2.2 GB, kept while idle. The bound checked here is what
``kernels.memory`` promises: back within 200 MB of idle after any sequence, and no request
peaking above ``PEAK_PER_BODY`` times its body.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.server import Server, running_server

SETTLED_MB = 200
PEAK_PER_BODY = 6
"""The documented bound (README, "Memory"): a request's peak, above what the worker held
before it, is at most this many times its body (inputs; its outputs come on top: gradients
the size of the predictions). Measured worst: 5.4x (focal, float64, with gradients; 5.9x before the shared arena)."""
LOSSES = ("focal", "mse", "binary_cross_entropy", "huber", "log_cosh", "hinge", "quantile", "smooth_l1")
ROWS = 400_000  # (400000, 10) float64 predictions and targets: a 64 MB body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("memory")
    env = {"LOSSD_WORKERS": "1", "LOSSD_DATA_DIR": str(data), "LOSSD_GRAPH_CACHE": str(data / "graphs")}
    with running_server(env) as running:
        yield running


def status(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory figure, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no {field} for {pid}")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)


def binary_infer(server: Server, loss: str, arrays: dict[str, np.ndarray]) -> int:
    """One V2 binary request with gradients; its body size."""
    inputs: list[dict[str, Any]] = [
        {"name": n, "shape": list(a.shape), "datatype": "FP64", "parameters": {"binary_data_size": a.nbytes}}
        for n, a in arrays.items()
    ]
    outputs = [{"name": o, "parameters": {"binary_data": True}} for o in ("loss", "gradient_predictions")]
    header = orjson.dumps({"inputs": inputs, "outputs": outputs})
    body = header + b"".join(a.tobytes() for a in arrays.values())
    response = httpx.post(
        f"{server.url}/v2/models/{loss}/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=120,
    )
    assert response.status_code == 200, response.text[:300]
    return len(body)


def test_rss_returns_near_idle_after_large_requests(server: Server) -> None:
    rng = np.random.default_rng(0)
    httpx.post(f"{server.url}/loss/mse", json={"predictions": [1.0], "targets": [0.0]}).raise_for_status()
    idle = status(server.pid, "VmRSS")
    predictions = rng.random((ROWS, 10))
    targets = (rng.random((ROWS, 10)) > 0.5).astype(np.float64)
    peaks = {}
    for loss in LOSSES:
        before = status(server.pid, "VmRSS")
        reset_peak(server.pid)
        body = binary_infer(server, loss, {"predictions": predictions, "targets": targets})
        peaks[loss] = (status(server.pid, "VmHWM") - before) / (body / 1e6)
    # Composites of the same terms in different orders are different graphs (issue 18 measured
    # 12 GB after five of them).
    terms = [{"loss": name} for name in ("mse", "huber", "log_cosh", "smooth_l1", "mae")]
    small = {"predictions": predictions[: ROWS // 8].tolist(), "targets": targets[: ROWS // 8].tolist()}
    for shift in range(len(terms)):
        order = terms[shift:] + terms[:shift]
        request = {**small, "terms": order, "dtype": "float64", "outputs": ["loss", "gradients"]}
        response = httpx.post(f"{server.url}/loss/composite", content=orjson.dumps(request), timeout=120)
        assert response.status_code == 200, response.text[:300]
    time.sleep(1)
    settled = status(server.pid, "VmRSS")
    worst = max(peaks, key=peaks.__getitem__)
    print(f"idle {idle} MB, settled {settled} MB; peak per body MB: {peaks}")
    assert settled <= idle + SETTLED_MB, f"{settled} MB after the requests, {idle} MB idle"
    assert peaks[worst] <= PEAK_PER_BODY, f"{worst} peaked at {peaks[worst]:.1f}x its body"
