"""KS drift from sketches against the exact KS distance of the raw samples."""

import numpy as np
import pytest

from service.monitors.drift import _CRITICAL, aligned, ks, limit
from service.monitors.sketch import Sketch

rng = np.random.default_rng(7)
N = 20_000


def exact_ks(a: np.ndarray, wa: np.ndarray, b: np.ndarray, wb: np.ndarray) -> float:
    """sup |F_a - F_b| of the weighted empirical CDFs: both are right-continuous steps, so
    the sup is taken at one of the samples."""
    a, wa, b, wb = a[wa > 0], wa[wa > 0], b[wb > 0], wb[wb > 0]
    points = np.unique(np.concatenate([a, b]))

    def cdf(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
        order = np.argsort(values)
        cumulative: np.ndarray = np.concatenate([[0.0], np.cumsum(weights[order])]) / weights.sum()
        found: np.ndarray = cumulative[np.searchsorted(values[order], points, side="right")]
        return found

    return float(np.abs(cdf(a, wa) - cdf(b, wb)).max())


def ones(n: int) -> np.ndarray:
    return np.ones(n)


CASES = {
    "same distribution": (rng.gamma(2.0, 1.0, N), ones(N), rng.gamma(2.0, 1.0, N), ones(N)),
    "shifted": (rng.gamma(2.0, 1.0, N) + 0.3, ones(N), rng.gamma(2.0, 1.0, N), ones(N)),
    "scaled": (rng.gamma(2.0, 1.5, N), ones(N), rng.gamma(2.0, 1.0, N), ones(N)),
    "heavy tail": (rng.pareto(1.5, N), ones(N), rng.pareto(3.0, N), ones(N)),
    "weighted": (rng.gamma(2.0, 1.0, N), rng.uniform(0, 2, N), rng.gamma(2.0, 1.0, N), rng.uniform(0, 1, N)),
    "negatives and zeros": (
        np.concatenate([rng.normal(0.2, 1.0, N), np.zeros(500)]),
        ones(N + 500),
        np.concatenate([rng.normal(0.0, 1.0, N), np.zeros(2000)]),
        ones(N + 2000),
    ),
    "disjoint": (rng.uniform(10, 11, 1000), ones(1000), rng.uniform(1, 2, 1000), ones(1000)),
    "few samples": (rng.gamma(2.0, 1.0, 7), ones(7), rng.gamma(2.0, 1.0, 5), ones(5)),
    "repeated values": (np.repeat([0.5, 1.0, 2.0], [10, 30, 60]), ones(100), np.repeat([0.5, 2.0], 50), ones(100)),
}


@pytest.mark.parametrize("case", CASES)
def test_the_sketch_distance_bounds_the_exact_one_within_the_heaviest_bin(case: str) -> None:
    a, wa, b, wb = CASES[case]
    first, second = Sketch.of(a, wa), Sketch.of(b, wb)
    found = ks(first, second)
    assert found is not None
    exact = exact_ks(a, wa, b, wb)
    assert found.distance <= exact + 1e-12 <= found.upper + 2e-12, (found, exact)
    *bins, zero = aligned(first, second)
    shares = [np.delete(m, zero) / m.sum() for m in bins]  # the zero bin is one value: no error
    heaviest = max(float(m.max()) for m in shares)
    assert found.upper - found.distance <= heaviest + 1e-12


@pytest.mark.parametrize("case", ["same distribution", "shifted", "scaled", "weighted", "negatives and zeros"])
def test_on_continuous_losses_the_sketch_error_is_under_a_hundredth(case: str) -> None:
    a, wa, b, wb = CASES[case]
    found = ks(Sketch.of(a, wa), Sketch.of(b, wb))
    assert found is not None
    assert found.upper - found.distance < 0.01
    assert abs(found.distance - exact_ks(a, wa, b, wb)) < 0.01


def test_merged_sketches_give_the_distance_of_the_whole() -> None:
    a, b = rng.gamma(2.0, 1.0, 3000), rng.gamma(2.0, 1.2, 3000)
    parts = [Sketch.of(chunk) for chunk in np.array_split(a, 7)]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merged(part)
    assert ks(merged, Sketch.of(b)) == ks(Sketch.of(a), Sketch.of(b))


def test_identical_and_empty_sketches() -> None:
    sketch = Sketch.of(rng.gamma(2.0, 1.0, 500))
    found = ks(sketch, sketch)
    assert found is not None and found.distance == 0.0
    assert ks(Sketch(), sketch) is None and ks(sketch, Sketch.of(np.ones(3), np.zeros(3))) is None


@pytest.mark.parametrize(
    ("threshold", "count", "baseline_count", "expected"),
    [
        (0.1, 1_000_000, 1_000_000, 0.1),  # many samples: the threshold
        (0.1, 10, 1000, _CRITICAL * np.sqrt(1010 / 10_000)),  # few: sampling noise would pass 0.1
        (0.5, 10, 1000, 0.6196),
        (0.1, 0, 1000, None),
    ],
)
def test_the_limit_is_the_threshold_or_the_critical_value(
    threshold: float, count: int, baseline_count: int, expected: float | None
) -> None:
    found = limit(threshold, count, baseline_count)
    assert found == (None if expected is None else pytest.approx(expected, abs=1e-3))
