"""``python -m bench.monitors``: the cost of recording observations against computing the loss.

One ``lossd serve`` (a temporary SQLite database) answers, alternately on one keep-alive
connection each, ``POST /monitors/{name}/observations`` and a plain ``POST /loss/mse`` of the
same batch (1,000 samples by default); the figure is the ratio of their median latencies
(target: at most 2x). Observations carry a timestamp, so all land in one window.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from bench.process import HOST, ServerProcess


def timed_post(connection: http.client.HTTPConnection, path: str, body: bytes) -> float:
    start = time.perf_counter()
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {payload[:300]!r}")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.monitors", description=__doc__)
    parser.add_argument("--batch", type=int, default=1000, help="samples per request (default 1000)")
    parser.add_argument("--rounds", type=int, default=300, help="requests of each kind (default 300)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    batch = {"predictions": rng.normal(size=args.batch).tolist(), "targets": rng.normal(size=args.batch).tolist()}
    loss_body = orjson.dumps(batch)
    observation_body = orjson.dumps({**batch, "timestamp": time.time()})
    with tempfile.TemporaryDirectory(prefix="lossd-bench-") as directory:
        env = {**os.environ, "LOSSD_DATABASE_URL": f"sqlite:///{Path(directory) / 'monitors.db'}"}
        argv_serve = [sys.executable, "-m", "service.cli", "serve"]
        with ServerProcess("service", argv_serve, env, Path(directory) / "server.log") as server:
            server.wait_ready("/loss/mse", loss_body, timeout=300.0)
            setup = http.client.HTTPConnection(HOST, server.port, timeout=60)
            setup.request(
                "POST", "/monitors", b'{"name": "bench", "loss": "mse"}', {"Content-Type": "application/json"}
            )
            created = setup.getresponse()
            created.read()
            if created.status != 201:
                raise RuntimeError(f"creating the monitor answered {created.status}")
            plain, observed = (http.client.HTTPConnection(HOST, server.port, timeout=60) for _ in range(2))
            for _ in range(10):  # warm-up: sessions, connections, the database file
                timed_post(plain, "/loss/mse", loss_body)
                timed_post(observed, "/monitors/bench/observations", observation_body)
            loss_s, observe_s = [], []
            for _ in range(args.rounds):
                loss_s.append(timed_post(plain, "/loss/mse", loss_body))
                observe_s.append(timed_post(observed, "/monitors/bench/observations", observation_body))
    loss_ms, observe_ms = statistics.median(loss_s) * 1e3, statistics.median(observe_s) * 1e3
    result = {
        "batch": args.batch,
        "rounds": args.rounds,
        "loss_mse_median_ms": round(loss_ms, 3),
        "observations_median_ms": round(observe_ms, 3),
        "ratio": round(observe_ms / loss_ms, 2),
        "target_ratio": 2.0,
    }
    print(f"POST /loss/mse                  {loss_ms:8.3f} ms (median of {args.rounds}, batch {args.batch})")
    print(f"POST /monitors/../observations  {observe_ms:8.3f} ms")
    print(f"ratio                           {observe_ms / loss_ms:8.2f}x (target <= 2x)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
