"""Distribution drift: the Kolmogorov-Smirnov distance between a window's losses and its
baseline's, read from their DDSketches.

Why KS and not Wasserstein: KS is a share of probability mass (0 to 1), whatever the
loss's scale, so one threshold means the same for a bce monitor and a pixel-MSE one; a
Wasserstein distance is in loss units and would need a threshold per monitor. KS also
ignores how far out an outlier lies (losses are heavy-tailed), and it is exact on the
sketch's bin edges: both sketches share one index mapping, so their cumulative weights
at every bin boundary are those of the raw samples. Only within a bin is the position of
a sample lost, which bounds the error by the heaviest bin:

    distance <= exact KS of the raw samples <= upper <= distance + max bin mass.

``distance`` is the lower end, so a window flagged by it has drifted at least that much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from service.monitors.sketch import Bins, Sketch

SIGNIFICANCE = 0.001
"""Drift is flagged only beyond the KS critical value at this level for the two sample
counts, so a window of a few samples is not flagged by sampling noise alone."""
_CRITICAL = math.sqrt(-math.log(SIGNIFICANCE / 2) / 2)


@dataclass(frozen=True)
class Distance:
    distance: float
    """KS distance of the binned distributions (a lower bound of the raw samples')."""
    upper: float
    """An upper bound of the raw samples' KS distance."""


def span(first: Bins, second: Bins) -> tuple[int, int]:
    ranges = [(b.offset, b.offset + b.counts.size) for b in (first, second) if b.counts.size]
    if not ranges:
        return 0, 0
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _dense(bins: Bins, low: int, high: int) -> np.ndarray:
    counts = np.zeros(high - low)
    counts[bins.offset - low : bins.offset - low + bins.counts.size] = bins.counts
    return counts


def masses(sketch: Sketch, negative: tuple[int, int], positive: tuple[int, int]) -> np.ndarray:
    """The sketch's weights per bin, in the order of values: negative keys from the most
    negative (the highest key) up, the zero bin, positive keys up."""
    return np.concatenate([_dense(sketch.negative, *negative)[::-1], [sketch.zero], _dense(sketch.positive, *positive)])


def aligned(first: Sketch, second: Sketch) -> tuple[np.ndarray, np.ndarray, int]:
    """Both sketches' weights per bin over the same bins, and the zero bin's index."""
    negative = span(first.negative, second.negative)
    positive = span(first.positive, second.positive)
    return masses(first, negative, positive), masses(second, negative, positive), negative[1] - negative[0]


def ks(window: Sketch, baseline: Sketch) -> Distance | None:
    """The KS distance of two sketches' weighted distributions (None where one is empty)."""
    first, second, zero = aligned(window, baseline)
    first_total, second_total = first.sum(), second.sum()
    if first_total <= 0 or second_total <= 0:
        return None
    # Cumulative shares after each bin, with the 0 before the first.
    f = np.concatenate([[0.0], np.cumsum(first) / first_total])
    g = np.concatenate([[0.0], np.cumsum(second) / second_total])
    lower = float(np.abs(f - g).max())
    # Within bin i the raw CDFs lie anywhere between their values at its two edges; the
    # zero bin holds one value (0), so both jump there at once and it adds nothing.
    within = np.maximum(f[1:] - g[:-1], g[1:] - f[:-1])
    within[zero] = 0.0
    upper = float(max(within.max(), lower))
    return Distance(min(lower, 1.0), min(upper, 1.0))


def limit(threshold: float, count: int, baseline_count: int) -> float | None:
    """The distance above which a window of ``count`` samples is flagged against a baseline
    of ``baseline_count``: ``threshold``, or the critical value where that is higher."""
    if count <= 0 or baseline_count <= 0:
        return None
    return max(threshold, _CRITICAL * math.sqrt((count + baseline_count) / (count * baseline_count)))
