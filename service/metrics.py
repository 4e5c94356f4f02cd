"""Prometheus metrics for compute requests, correct across uvicorn workers.

With several workers each process records into files under PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode; ``lossd serve`` sets it up before the app is
imported) and ``/metrics`` merges them, whichever worker answers the scrape.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SIZE_BUCKETS = tuple(float(10**e) for e in range(2, 10))

REQUESTS = Counter(
    "lossd_requests", "Compute requests by loss, protocol and HTTP status.", ["loss", "protocol", "status"]
)
REQUEST_SECONDS = Histogram(
    "lossd_request_duration_seconds",
    "Time to answer a compute request, body read excluded.",
    ["loss", "protocol"],
    buckets=LATENCY_BUCKETS,
)
KERNEL_SECONDS = Histogram(
    "lossd_kernel_duration_seconds", "Time in the onnxruntime run of a request.", ["loss"], buckets=LATENCY_BUCKETS
)
REQUEST_BYTES = Histogram("lossd_request_size_bytes", "Compute request body sizes.", ["protocol"], buckets=SIZE_BUCKETS)
RESPONSE_BYTES = Histogram(
    "lossd_response_size_bytes", "Compute response body sizes.", ["protocol"], buckets=SIZE_BUCKETS
)
IN_FLIGHT = Gauge("lossd_requests_in_flight", "Compute requests being answered.", multiprocess_mode="livesum")


@functools.cache
def kernel_seconds(loss: str) -> Any:
    return KERNEL_SECONDS.labels(loss)


class RouteMetrics:
    """The metric children of one compute route, bound once: prometheus_client's
    ``labels()`` lookup costs more than the update itself."""

    def __init__(self, loss: str, protocol: str) -> None:
        self.loss, self.protocol = loss, protocol
        self.seconds = REQUEST_SECONDS.labels(loss, protocol)
        self.bytes = REQUEST_BYTES.labels(protocol)
        self.response_bytes = RESPONSE_BYTES.labels(protocol)
        self.by_status: dict[int, Any] = {}

    def record(self, status: int, seconds: float, size: int, response_size: int) -> None:
        counter = self.by_status.get(status)
        if counter is None:
            counter = self.by_status[status] = REQUESTS.labels(self.loss, self.protocol, str(status))
        counter.inc()
        self.seconds.observe(seconds)
        self.bytes.observe(size)
        self.response_bytes.observe(response_size)


def exposition(*collectors: Collector) -> tuple[bytes, str]:
    """The text exposition of every metric, merged over the worker processes, then those of
    ``collectors`` (which read shared state themselves, e.g. the monitors' database)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(DEFAULT_REGISTRY)
    if collectors:
        extra = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            extra.register(collector)
        body += generate_latest(extra)
    return body, CONTENT_TYPE_LATEST
