"""Per-model inference statistics, as Triton's statistics extension reports them
(``GET /v2/models/{name}/stats``): every compute request of a loss that the data plane
answers, REST and V2 alike, counted by service.routing.answer.

Per worker process: with ``LOSSD_WORKERS`` > 1 each worker counts what it answered, and a
stats request reports the figures of the worker that answers it (Prometheus' ``/metrics``
is the merged view). Recording costs a few attribute updates per request, no lock: the
compute routes run on the event loop's thread, one request after the other.

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
    """The onnxruntime run of the request this thread computes (perf_counter seconds),
    set by service.compute.evaluate; 0.0 when the request has not reached the kernel."""

    kernel_start: float = 0.0
    kernel_end: float = 0.0


CLOCK = Clock()


class ModelStats:
    """One model's counters, cumulative since the worker started."""

    __slots__ = (
        "fail_count",
        "fail_ns",
        "infer_ns",
        "input_ns",
        "last_inference",
        "name",
        "output_ns",
        "success_count",
        "success_ns",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.success_count = self.success_ns = self.fail_count = self.fail_ns = 0
        self.input_ns = self.infer_ns = self.output_ns = 0
        self.last_inference = 0
        """Milliseconds since the epoch of the latest success (0: none yet)."""

    def success(self, start: float, end: float, kernel_start: float, kernel_end: float) -> None:
        """A 200 answered between ``start`` and ``end`` (perf_counter seconds), its kernel
        run between ``kernel_start`` and ``kernel_end`` (0.0: the request ran none)."""
        self.success_count += 1
        self.success_ns += int((end - start) * 1e9)
        if kernel_start:
            self.input_ns += int((kernel_start - start) * 1e9)
            self.infer_ns += int((kernel_end - kernel_start) * 1e9)
            self.output_ns += int((end - kernel_end) * 1e9)
        else:
            self.input_ns += int((end - start) * 1e9)
        self.last_inference = int(time.time() * 1000)

    def failure(self, start: float, end: float) -> None:
        self.fail_count += 1
        self.fail_ns += int((end - start) * 1e9)

    def json(self) -> dict[str, Any]:
        """The model's entry of Triton's ``model_stats``."""
        count = self.success_count

        def duration(ns: int, of: int = count) -> dict[str, int]:
            return {"count": of, "ns": ns}

        return {
            "name": self.name,
            "version": "1",
            "last_inference": self.last_inference,
            "inference_count": count,
            "execution_count": count,
            "inference_stats": {
                "success": duration(self.success_ns),
                "fail": duration(self.fail_ns, self.fail_count),
                "queue": duration(0),
                "compute_input": duration(self.input_ns),
                "compute_infer": duration(self.infer_ns),
                "compute_output": duration(self.output_ns),
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
