"""Per-model inference statistics, as Triton's statistics extension reports them
(``GET /v2/models/{name}/stats``): every compute request of a loss that the data plane
answers, REST and V2 alike, counted by service.routing.answer.

Per worker process: with ``LOSSD_WORKERS`` > 1 each worker counts what it answered, and a
stats request reports the figures of the worker that answers it (Prometheus' ``/metrics``
is the merged view). Recording costs a few attribute updates per request, no lock:
service.routing.answer records on the event loop's thread, one request after the other,
also for a large request computed on a worker thread.

Timings are those Triton reports, in nanoseconds: ``success``/``fail`` the whole answer
(body read excluded), ``compute_input`` parsing and checking the inputs, ``compute_infer``
the onnxruntime run, ``compute_output`` encoding the response; ``queue`` is always 0 ns
(lossd queues nothing: over ``LOSSD_MAX_CONCURRENCY`` it refuses). lossd batches nothing
(``max_batch_size`` 0), so ``inference_count`` and ``execution_count`` are both the count of
successful requests, and ``batch_stats`` is empty.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class Clock(threading.local):
    """The latest onnxruntime run on this thread (perf_counter seconds), set by
    service.compute.evaluate. A request ran the kernel when ``kernel_start`` is not before
    its own start (perf_counter is monotonic, so a stale run is earlier): nothing to reset."""

    kernel_start: float = 0.0
    kernel_end: float = 0.0


CLOCK = Clock()


class ModelStats:
    """One model's counters, cumulative since the worker started: floats of perf_counter
    seconds on the hot path (no conversion per request), nanoseconds when read."""

    __slots__ = (
        "fail_count",
        "fail_seconds",
        "infer_seconds",
        "input_seconds",
        "last_end",
        "name",
        "output_seconds",
        "success_count",
        "success_seconds",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.success_count = self.fail_count = 0
        self.success_seconds = self.fail_seconds = 0.0
        self.input_seconds = self.infer_seconds = self.output_seconds = 0.0
        self.last_end: float | None = None
        """perf_counter at the end of the latest success."""

    def success(self, start: float, end: float, kernel_start: float, kernel_end: float) -> None:
        """A 200 answered between ``start`` and ``end`` (perf_counter seconds); the thread's
        latest kernel run, which is this request's where it does not begin before ``start``."""
        self.success_count += 1
        self.success_seconds += end - start
        if kernel_start >= start:
            self.input_seconds += kernel_start - start
            self.infer_seconds += kernel_end - kernel_start
            self.output_seconds += end - kernel_end
        else:  # no kernel run (none of today's routes answers a 200 without one)
            self.input_seconds += end - start
        self.last_end = end

    def failure(self, start: float, end: float) -> None:
        self.fail_count += 1
        self.fail_seconds += end - start

    def json(self) -> dict[str, Any]:
        """The model's entry of Triton's ``model_stats``."""
        count = self.success_count
        last = 0
        if self.last_end is not None:  # perf_counter to the wall clock
            last = int((time.time() - (time.perf_counter() - self.last_end)) * 1000)

        def duration(seconds: float, of: int = count) -> dict[str, int]:
            return {"count": of, "ns": round(seconds * 1e9)}

        return {
            "name": self.name,
            "version": "1",
            "last_inference": last,
            "inference_count": count,
            "execution_count": count,
            "inference_stats": {
                "success": duration(self.success_seconds),
                "fail": duration(self.fail_seconds, self.fail_count),
                "queue": duration(0.0),
                "compute_input": duration(self.input_seconds),
                "compute_infer": duration(self.infer_seconds),
                "compute_output": duration(self.output_seconds),
            },
            "batch_stats": [],
        }


STATS: dict[str, ModelStats] = {}
"""By model (canonical loss) name."""


def of(name: str) -> ModelStats:
    """The counters of a model, made on first use."""
    stats = STATS.get(name)
    if stats is None:
        stats = STATS[name] = ModelStats(name)
    return stats


def model_stats(names: list[str]) -> dict[str, Any]:
    """Triton's statistics response for these models (in this order)."""
    return {"model_stats": [of(name).json() for name in names]}
