"""What a monitor keeps per observation batch and per window: count, weighted sums, extremes
and a quantile sketch, all of which merge exactly (the sketch within its relative accuracy)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.monitors.sketch import Sketch

QUANTILES = (0.5, 0.9, 0.99)


@dataclass
class Aggregate:
    """Samples ``count``; ``weight`` = sum(w), ``total`` = sum(w*l), ``squares`` = sum(w*l*l)."""

    count: int = 0
    weight: float = 0.0
    total: float = 0.0
    squares: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    sketch: Sketch = field(default_factory=Sketch)
    stored: tuple[float | None, ...] | None = None
    """The quantiles (of QUANTILES) as stored with a window read without its sketch, which
    then cannot be merged."""
    drift: float | None = None
    """The KS distance from its segment's baseline as stored with a window row (None for a
    merged aggregate, or a window before its baseline was fixed)."""

    @classmethod
    def of(cls, losses: np.ndarray, weights: np.ndarray | None = None) -> Aggregate:
        losses = np.asarray(losses, dtype=np.float64).ravel()
        w: np.ndarray | None = None
        if weights is None:
            weight, weighted = float(losses.size), losses
        else:
            w = np.asarray(weights, dtype=np.float64).ravel()
            weight, weighted = float(w.sum()), w * losses
        return cls(
            count=int(losses.size),
            weight=weight,
            total=float(weighted.sum()),
            squares=float(weighted @ losses),
            min=float(losses.min()) if losses.size else math.inf,
            max=float(losses.max()) if losses.size else -math.inf,
            sketch=Sketch.of(losses, w),
        )

    def merged(self, other: Aggregate) -> Aggregate:
        if self.stored is not None or other.stored is not None:
            raise ValueError("a window read without its sketch cannot be merged")
        return Aggregate(
            self.count + other.count,
            self.weight + other.weight,
            self.total + other.total,
            self.squares + other.squares,
            min(self.min, other.min),
            max(self.max, other.max),
            self.sketch.merged(other.sketch),
        )

    @property
    def mean(self) -> float | None:
        return self.total / self.weight if self.weight > 0 else None

    @property
    def std(self) -> float | None:
        """The weighted population standard deviation."""
        mean = self.mean
        if mean is None:
            return None
        return math.sqrt(max(self.squares / self.weight - mean * mean, 0.0))

    def summary(self) -> dict[str, Any]:
        """``count``, ``mean``, ``std``, ``min``, ``max`` (None where there is no sample)."""
        empty = self.count == 0
        return {
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
            "min": None if empty else self.min,
            "max": None if empty else self.max,
        }

    def quantiles(self) -> dict[str, float | None]:
        values = self.sketch.quantiles(QUANTILES) if self.stored is None else self.stored
        return {f"p{round(q * 100)}": v for q, v in zip(QUANTILES, values, strict=True)}


def merge(aggregates: Iterable[Aggregate]) -> Aggregate:
    result = Aggregate()
    for aggregate in aggregates:
        result = result.merged(aggregate)
    return result
