"""Repeated measurements summarised as a median with its min-max spread."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter


@dataclass(frozen=True)
class Spread:
    """The median of repeated measurements and their range."""

    median: float
    low: float
    high: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread:
        if not samples:
            raise ValueError("no samples")
        return cls(statistics.median(samples), min(samples), max(samples), tuple(samples))

    def json(self) -> dict[str, float | list[float]]:
        return {"median": self.median, "min": self.low, "max": self.high, "samples": list(self.samples)}


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 1) -> Spread:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then ``repeats`` timed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = perf_counter()
        fn()
        times.append(perf_counter() - start)
    return Spread.of(times)
