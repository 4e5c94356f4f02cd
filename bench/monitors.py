"""``python -m bench.monitors``: the cost of recording observations against computing the loss.

One ``lossd serve`` (a temporary SQLite database) answers, alternately on one keep-alive
connection each, ``POST /monitors/{name}/observations`` and a plain ``POST /loss/mse`` of the
same batch (1,000 samples by default); the figure is the ratio of their median latencies
(target: at most 1.5x). Observations carry a timestamp and a segment tag, so all land in one
window of one segment. A second row measures the same batch with ids: ``POST
/monitors/{name}/predictions`` (ids, predictions, tags) then ``POST /monitors/{name}/labels``
(ids and targets), fresh ids each round, against ``POST /loss/mse`` of the batch (target: the
two together at most 1.5x), with each request alone and the fixed cost of any request (a
4-sample ``POST /loss/mse``) beside it: two requests pay that cost twice.

``--scale``: the reads at scale. ``--batches`` batches (default 100,000) of one monitor over
720 hourly windows, and 1,000 other monitors of 24 windows each, are written through the
store; then ``lossd serve`` on that database answers GET windows, GET /monitors/{name},
/metrics and /ui/monitors (medians), the database's size is read, and the ingest ratio
above is measured on the big monitor. Targets: windows <= 50 ms, monitor <= 30 ms,
/metrics <= 200 ms, page <= 1 s, database <= 20 MiB.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.process import HOST, ServerProcess

OPENED: list[http.client.HTTPConnection] = []
"""Every connection the bench opened: closed when it ends."""


def connect(port: int, timeout: float = 60) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    OPENED.append(connection)
    return connection


def timed_post(connection: http.client.HTTPConnection, path: str, body: bytes) -> float:
    start = time.perf_counter()
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {payload[:300]!r}")
    return elapsed


def timed_get(connection: http.client.HTTPConnection, path: str) -> float:
    start = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {payload[:300]!r}")
    return elapsed


def ingest_ratio(port: int, monitor: str, batch: int, rounds: int, timestamp: float) -> dict[str, float]:
    """Median latencies of POST /loss/mse and of the same batch as an observation of ``monitor``."""
    rng = np.random.default_rng(0)
    values = {"predictions": rng.normal(size=batch).tolist(), "targets": rng.normal(size=batch).tolist()}
    loss_body = orjson.dumps(values)
    observation_body = orjson.dumps({**values, "timestamp": timestamp, "tags": TAGS})
    plain, observed = connect(port), connect(port)
    path = f"/monitors/{monitor}/observations"
    for _ in range(10):  # warm-up: sessions, connections, the database file
        timed_post(plain, "/loss/mse", loss_body)
        timed_post(observed, path, observation_body)
    loss_s, observe_s = [], []
    for _ in range(rounds):
        loss_s.append(timed_post(plain, "/loss/mse", loss_body))
        observe_s.append(timed_post(observed, path, observation_body))
    loss_ms, observe_ms = statistics.median(loss_s) * 1e3, statistics.median(observe_s) * 1e3
    return {
        "loss_mse_median_ms": round(loss_ms, 3),
        "observations_median_ms": round(observe_ms, 3),
        "ratio": round(observe_ms / loss_ms, 2),
    }


TAGS = {"model_version": "v7"}
"""The segment every bench observation and prediction carries (the issue's target is with segments)."""


def times(ratio: float | None) -> str:
    return "n/a (the CPU clock did not move)" if ratio is None else f"{ratio:.2f}x"


def fixed_cost_ms(connection: http.client.HTTPConnection, rounds: int) -> float:
    """Median latency of a 4-sample POST /loss/mse: what any request costs before its batch."""
    body = orjson.dumps({"predictions": [0.1, 0.2, 0.3, 0.4], "targets": [0.0, 0.1, 0.2, 0.3]})
    return round(statistics.median(timed_post(connection, "/loss/mse", body) for _ in range(rounds)) * 1e3, 3)


def quartiles_ms(times: list[float]) -> tuple[float, float, float]:
    """Median and the interquartile range, in ms."""
    low, median, high = statistics.quantiles(times, n=4)
    return median * 1e3, low * 1e3, high * 1e3


def labels_ratio(
    port: int, monitor: str, batch: int, rounds: int, timestamp: float, cpu: Callable[[], float]
) -> dict[str, Any]:
    """Median latencies (with quartiles) of POST /loss/mse and of the same batch stored as
    predictions by id and then labelled, alternately, fresh ids each round; then the
    server's CPU seconds per request of each kind, ``rounds`` of one kind after the other
    (on a loaded machine latencies measure the scheduler as much as the server)."""
    rng = np.random.default_rng(0)
    predictions, targets = rng.normal(size=batch).tolist(), rng.normal(size=batch).tolist()
    loss_body = orjson.dumps({"predictions": predictions, "targets": targets})
    plain, predicted, labelled = connect(port), connect(port), connect(port)
    times: dict[str, list[float]] = {"loss": [], "predictions": [], "labels": [], "both": []}
    for round_ in range(-10, rounds):  # the first ten warm up
        ids = [f"r{round_}-{i}" for i in range(batch)]
        loss_s = timed_post(plain, "/loss/mse", loss_body)
        body = orjson.dumps({"ids": ids, "predictions": predictions, "timestamp": timestamp, "tags": TAGS})
        predictions_s = timed_post(predicted, f"/monitors/{monitor}/predictions", body)
        labels_s = timed_post(labelled, f"/monitors/{monitor}/labels", orjson.dumps({"ids": ids, "targets": targets}))
        if round_ >= 0:
            for key, value in (("loss", loss_s), ("predictions", predictions_s), ("labels", labels_s)):
                times[key].append(value)
            times["both"].append(predictions_s + labels_s)
    figures: dict[str, Any] = {}
    for key, values in times.items():
        median, low, high = quartiles_ms(values)
        figures[f"{key}_median_ms"], figures[f"{key}_iqr_ms"] = round(median, 3), [round(low, 3), round(high, 3)]
    ratio = {key: round(figures[f"{key}_median_ms"] / figures["loss_median_ms"], 2) for key in times}
    # labels_ratio: predictions + labels, the figure the target is for.
    figures.update(
        labels_ratio=ratio["both"], predictions_ratio=ratio["predictions"], labels_alone_ratio=ratio["labels"]
    )
    figures["fixed_median_ms"] = fixed_cost_ms(plain, rounds)
    bodies: dict[str, list[bytes]] = {"loss": [], "predictions": [], "labels": []}
    for round_ in range(rounds):
        ids = [f"c{round_}-{i}" for i in range(batch)]
        bodies["loss"].append(loss_body)
        bodies["predictions"].append(
            orjson.dumps({"ids": ids, "predictions": predictions, "timestamp": timestamp, "tags": TAGS})
        )
        bodies["labels"].append(orjson.dumps({"ids": ids, "targets": targets}))
    paths = {
        "loss": "/loss/mse",
        "predictions": f"/monitors/{monitor}/predictions",
        "labels": f"/monitors/{monitor}/labels",
    }
    for key, sent in bodies.items():
        before = cpu()
        for body in sent:
            timed_post(plain, paths[key], body)
        figures[f"{key}_cpu_ms"] = round((cpu() - before) / rounds * 1e3, 3)
    both, loss_cpu = figures["predictions_cpu_ms"] + figures["labels_cpu_ms"], figures["loss_cpu_ms"]
    # The server's CPU clock ticks in 10 ms: a short run of small requests may not move it.
    figures["labels_cpu_ratio"] = round(both / loss_cpu, 2) if loss_cpu > 0 else None
    figures["predictions_cpu_ratio"] = round(figures["predictions_cpu_ms"] / loss_cpu, 2) if loss_cpu > 0 else None
    return figures


def serve(directory: Path, database: Path) -> ServerProcess:
    env = {**os.environ, "LOSSD_DATABASE_URL": f"sqlite:///{database}"}
    argv_serve = [sys.executable, "-m", "service.cli", "serve"]
    return ServerProcess("service", argv_serve, env, directory / "server.log")


def ingest(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    loss_body = orjson.dumps({"predictions": rng.normal(size=4).tolist(), "targets": rng.normal(size=4).tolist()})
    with (
        tempfile.TemporaryDirectory(prefix="lossd-bench-") as directory,
        serve(Path(directory), Path(directory) / "monitors.db") as server,
    ):
        server.wait_ready("/loss/mse", loss_body, timeout=300.0)
        setup = connect(server.port)
        monitor = orjson.dumps({"name": "bench", "loss": "mse", "segments": sorted(TAGS)})
        setup.request("POST", "/monitors", monitor, {"Content-Type": "application/json"})
        created = setup.getresponse()
        created.read()
        if created.status != 201:
            raise RuntimeError(f"creating the monitor answered {created.status}")
        figures = ingest_ratio(server.port, "bench", args.batch, args.rounds, time.time())
        with_ids = labels_ratio(server.port, "bench", args.batch, args.rounds, time.time(), server.cpu_seconds)
    result = {"batch": args.batch, "rounds": args.rounds, **figures, "target_ratio": 1.5}
    result.update({"with_ids": with_ids, "target_labels_ratio": 1.5})
    print(
        f"POST /loss/mse                  {figures['loss_mse_median_ms']:8.3f} ms "
        f"(median of {args.rounds}, batch {args.batch})"
    )
    print(f"POST /monitors/../observations  {figures['observations_median_ms']:8.3f} ms")
    print(f"ratio                           {figures['ratio']:8.2f}x (target <= 1.5x; with tags, one segment)")
    for key, title in (("loss", "POST /loss/mse"), ("predictions", "  predictions"), ("labels", "  labels")):
        low, high = with_ids[f"{key}_iqr_ms"]
        print(f"{title:31s} {with_ids[f'{key}_median_ms']:8.3f} ms (quartiles {low:.3f} to {high:.3f})")
    low, high = with_ids["both_iqr_ms"]
    print(
        f"predictions + labels (with ids)  {with_ids['both_median_ms']:8.3f} ms (quartiles {low:.3f} to {high:.3f}), "
        f"ratio {with_ids['labels_ratio']:.2f}x (target <= 1.5x)"
    )
    twice = 2 * with_ids["fixed_median_ms"] / with_ids["loss_median_ms"]
    print(
        f"  each alone against POST /loss/mse: predictions {with_ids['predictions_ratio']:.2f}x, "
        f"labels {with_ids['labels_alone_ratio']:.2f}x; one request's fixed cost (POST /loss/mse of 4 samples) "
        f"{with_ids['fixed_median_ms']:.3f} ms, twice that {twice:.2f}x"
    )
    print(
        f"server CPU per request: /loss/mse {with_ids['loss_cpu_ms']:.3f} ms, predictions "
        f"{with_ids['predictions_cpu_ms']:.3f} ms ({times(with_ids['predictions_cpu_ratio'])}), labels "
        f"{with_ids['labels_cpu_ms']:.3f} ms; predictions + labels {times(with_ids['labels_cpu_ratio'])}"
    )
    print(json.dumps(result))


WINDOWS, OTHERS, OTHER_WINDOWS, HOUR = 720, 1000, 24, 3600
SCALE_TARGETS = {"windows_ms": 50.0, "monitor_ms": 30.0, "metrics_ms": 200.0, "page_ms": 1000.0, "database_mib": 20.0}


def populate(database: Path, batches: int, samples: int) -> tuple[float, float]:
    """The big monitor's batches over 720 hourly windows ending now, and the other
    monitors, written through the store. Returns (seconds taken, the current window's start)."""
    from service.monitors.aggregate import Aggregate
    from service.monitors.store import open_store

    rng = np.random.default_rng(1)
    pool = [Aggregate.of(rng.gamma(2.0, 1.0, samples)) for _ in range(64)]  # batches to draw from
    store = open_store(f"sqlite:///{database}", database.parent)
    now = time.time()
    current = now // HOUR * HOUR
    first = current - (WINDOWS - 1) * HOUR
    started = time.perf_counter()
    big = store.create("big", "mse", {}, HOUR, {"windows": 24, "threshold": 3.0}, segments=sorted(TAGS))
    for i in range(batches):
        store.record(big, int(first + (i * WINDOWS // batches) * HOUR), pool[i % len(pool)], TAGS, now=now)
    for m in range(OTHERS):
        other = store.create(f"other-{m:04d}", "mse", {}, HOUR, {"windows": 3, "threshold": 3.0})
        for w in range(OTHER_WINDOWS):
            store.record(other, int(current - (OTHER_WINDOWS - 1 - w) * HOUR), pool[(m + w) % len(pool)], now=now)
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return time.perf_counter() - started, current


def median_ms(connection: http.client.HTTPConnection, path: str, rounds: int) -> tuple[float, float, float]:
    """Median, min and max of ``rounds`` GETs (after one warm-up), in ms."""
    timed_get(connection, path)
    times = [timed_get(connection, path) * 1e3 for _ in range(rounds)]
    return statistics.median(times), min(times), max(times)


def scale(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="lossd-scale-") as directory:
        database = Path(directory) / "monitors.db"
        took, current = populate(database, args.batches, args.samples)
        size_mib = sum(f.stat().st_size for f in Path(directory).glob("monitors.db*")) / 2**20
        print(
            f"written through the store: {args.batches} batches of {args.samples} samples over {WINDOWS} windows, "
            f"{OTHERS} other monitors x {OTHER_WINDOWS} windows, in {took:.1f} s"
        )
        rng = np.random.default_rng(0)
        ready_body = orjson.dumps({"predictions": rng.normal(size=4).tolist(), "targets": rng.normal(size=4).tolist()})
        with serve(Path(directory), database) as server:
            server.wait_ready("/loss/mse", ready_body, timeout=300.0)
            connection = connect(server.port, timeout=120)
            figures: dict[str, tuple[float, float, float]] = {
                "windows_ms": median_ms(connection, "/monitors/big/windows", args.reads),
                "monitor_ms": median_ms(connection, "/monitors/big", args.reads),
                "metrics_ms": median_ms(connection, "/metrics", max(args.reads // 4, 3)),
                "page_ms": median_ms(connection, "/ui/monitors", max(args.reads // 10, 3)),
            }
            ratio = ingest_ratio(server.port, "big", args.batch, args.rounds, current + 1.0)
    result: dict[str, object] = {"batches": args.batches, "samples": args.samples, "populate_s": round(took, 1)}
    for name, (median, low, high) in figures.items():
        verdict = "ok" if median <= SCALE_TARGETS[name] else "OVER"
        print(f"{name:14s} {median:9.2f} (min {low:.2f}, max {high:.2f})  target <= {SCALE_TARGETS[name]:g}  {verdict}")
        result[name] = round(median, 2)
        result[name.replace("_ms", "_spread_ms")] = [round(low, 2), round(high, 2)]
    verdict = "ok" if size_mib <= SCALE_TARGETS["database_mib"] else "OVER"
    print(f"database_mib   {size_mib:9.2f}  target <= {SCALE_TARGETS['database_mib']:g}  {verdict}")
    print(
        f"ingest: POST /loss/mse {ratio['loss_mse_median_ms']:.3f} ms, "
        f"observation {ratio['observations_median_ms']:.3f} ms, "
        f"ratio {ratio['ratio']:.2f}x (batch {args.batch}; target <= 1.5x)"
    )
    result.update({"database_mib": round(size_mib, 2), **ratio, "targets": SCALE_TARGETS})
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.monitors", description=__doc__)
    parser.add_argument("--batch", type=int, default=1000, help="samples per request (default 1000)")
    parser.add_argument("--rounds", type=int, default=300, help="requests of each kind (default 300)")
    parser.add_argument("--scale", action="store_true", help="the reads at scale (see above)")
    parser.add_argument("--batches", type=int, default=100_000, help="--scale: the big monitor's batches")
    parser.add_argument("--samples", type=int, default=100, help="--scale: samples per written batch (default 100)")
    parser.add_argument("--reads", type=int, default=40, help="--scale: GETs of each kind (default 40)")
    args = parser.parse_args(argv)
    try:
        if args.scale:
            scale(args)
        else:
            ingest(args)
    finally:
        while OPENED:
            OPENED.pop().close()


if __name__ == "__main__":
    main()
