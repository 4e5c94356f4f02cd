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


def cumulative(sketch: Sketch, negative: tuple[int, int], positive: tuple[int, int]) -> np.ndarray:
    """The sketch's cumulative weights after each bin, from a 0 before the first, in the
    order of values: negative keys from the most negative (the highest key) up, the zero
    bin, positive keys up. (One array filled in place: this runs on every write.)"""
    size = negative[1] - negative[0]
    out = np.zeros(2 + size + positive[1] - positive[0])
    bins = sketch.negative
    if bins.counts.size:
        # Key k sits at position 1 + (negative[1] - 1 - k): reversed.
        high = 1 + negative[1] - bins.offset
        out[high - bins.counts.size : high] = bins.counts[::-1]
    out[1 + size] = sketch.zero
    bins = sketch.positive
    if bins.counts.size:
        low = 2 + size + bins.offset - positive[0]
        out[low : low + bins.counts.size] = bins.counts
    return np.cumsum(out, out=out)


def aligned(first: Sketch, second: Sketch) -> tuple[np.ndarray, np.ndarray, int]:
    """Both sketches' weights per bin over the same bins, and the zero bin's index."""
    negative = span(first.negative, second.negative)
    positive = span(first.positive, second.positive)
    f, g = (np.diff(cumulative(s, negative, positive)) for s in (first, second))
    return f, g, negative[1] - negative[0]


def ks(window: Sketch, baseline: Sketch, bound: bool = True) -> Distance | None:
    """The KS distance of two sketches' weighted distributions (None where one is empty);
    without ``bound``, ``upper`` is not worked out (it is then the distance)."""
    negative = span(window.negative, baseline.negative)
    positive = span(window.positive, baseline.positive)
    f, g = cumulative(window, negative, positive), cumulative(baseline, negative, positive)
    if f[-1] <= 0 or g[-1] <= 0:
        return None
    f *= 1.0 / f[-1]
    g *= 1.0 / g[-1]
    gap = f - g
    lower = min(max(float(gap.max()), -float(gap.min())), 1.0)
    if not bound:
        return Distance(lower, lower)
    # Within bin i the raw CDFs lie anywhere between their values at its two edges; the
    # zero bin holds one value (0), so both jump there at once and it adds nothing.
    within = np.maximum(f[1:] - g[:-1], g[1:] - f[:-1])
    within[negative[1] - negative[0]] = 0.0
    return Distance(lower, min(max(float(within.max()), lower), 1.0))


def limit(threshold: float, count: int, baseline_count: int) -> float | None:
    """The distance above which a window of ``count`` samples is flagged against a baseline
    of ``baseline_count``: ``threshold``, or the critical value where that is higher."""
    if count <= 0 or baseline_count <= 0:
        return None
    return max(threshold, _CRITICAL * math.sqrt((count + baseline_count) / (count * baseline_count)))
