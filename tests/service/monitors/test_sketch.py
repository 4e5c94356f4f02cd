"""Quantile sketches: the library's bins, quantiles within 1% of numpy, exact merging."""

import numpy as np
import pytest

from service.monitors.aggregate import Aggregate, merge
from service.monitors.sketch import MAPPING, Sketch


def test_bins_are_the_library_mappings_keys() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.lognormal(0.0, 4.0, 20_000), rng.uniform(0.0, 1.0, 20_000), [1e-300, 1.0, 1e300]])
    sketch = Sketch.of(values)
    expected = np.bincount([MAPPING.key(v) - sketch.positive.offset for v in values.tolist()])
    np.testing.assert_array_equal(sketch.positive.counts, expected)


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(1).gamma(2.0, 1.5, 50_000),
        np.random.default_rng(2).lognormal(-3.0, 2.0, 50_000),
        np.random.default_rng(3).normal(0.0, 1.0, 50_000),  # negative losses (e.g. a Gaussian NLL)
    ],
    ids=["gamma", "lognormal", "normal"],
)
def test_quantiles_are_within_one_percent_of_numpy(values: np.ndarray) -> None:
    got = Aggregate.of(values).quantiles()
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        expected = float(np.quantile(values, q))
        assert got[name] == pytest.approx(expected, rel=0.01), name


def test_merged_batches_equal_the_whole_and_survive_encoding() -> None:
    rng = np.random.default_rng(4)
    batches = [rng.gamma(2.0, scale, 1000) for scale in (0.5, 1.0, 4.0, 20.0)]
    weights = [rng.uniform(0.5, 2.0, 1000) for _ in batches]
    parts = [Aggregate.of(b, w) for b, w in zip(batches, weights, strict=True)]
    decoded = [
        Aggregate(a.count, a.weight, a.total, a.squares, a.min, a.max, Sketch.decode(a.sketch.encode())) for a in parts
    ]
    merged, whole = merge(decoded), Aggregate.of(np.concatenate(batches), np.concatenate(weights))
    assert merged.count == whole.count == 4000
    assert merged.mean == pytest.approx(whole.mean, rel=1e-12)
    assert merged.std == pytest.approx(whole.std, rel=1e-9)
    assert (merged.min, merged.max) == (whole.min, whole.max)
    assert merged.sketch.positive.offset == whole.sketch.positive.offset
    np.testing.assert_allclose(merged.sketch.positive.counts, whole.sketch.positive.counts, rtol=1e-12)
    assert merged.quantiles() == pytest.approx(whole.quantiles(), rel=1e-12)


def test_weighted_mean_std_and_zero_and_negative_values() -> None:
    aggregate = Aggregate.of(np.array([-2.0, 0.0, 4.0]), np.array([1.0, 2.0, 1.0]))
    assert aggregate.mean == pytest.approx(0.5)
    assert aggregate.std == pytest.approx(np.sqrt((4.0 + 16.0) / 4 - 0.25))
    assert Sketch.decode(aggregate.sketch.encode()).zero == 2.0
    assert aggregate.quantiles()["p50"] == 0


def test_an_empty_aggregate_has_no_statistics() -> None:
    empty = Aggregate()
    assert empty.summary() == {"count": 0, "mean": None, "std": None, "min": None, "max": None}
    assert empty.quantiles() == {"p50": None, "p90": None, "p99": None}


def test_a_sketch_from_another_mapping_or_format_is_refused() -> None:
    import struct
    import zlib

    other = zlib.compress(b"LDS1" + struct.pack("<dd", 1.1, 0.0) + struct.pack("<qI", 0, 0) * 2)
    with pytest.raises(ValueError, match="another index mapping"):
        Sketch.decode(other)
    with pytest.raises(ValueError, match="not a sketch"):
        Sketch.decode(zlib.compress(b"something else"))


def test_the_library_reads_the_protobuf_form() -> None:
    from ddsketch.pb import ddsketch_pb2 as pb
    from ddsketch.pb.proto import DDSketchProto

    values = np.random.default_rng(9).gamma(2.0, 1.0, 5000)
    proto = pb.DDSketch.FromString(Sketch.of(values).proto().SerializeToString())
    sketch = DDSketchProto.from_proto(proto)  # type: ignore[no-untyped-call]
    assert sketch.count == 5000
    assert sketch.get_quantile_value(0.5) == pytest.approx(np.quantile(values, 0.5), rel=0.01)


@pytest.mark.parametrize("seed", range(6))
def test_quantiles_follow_the_library(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 3000))
    values = rng.normal(0.0, 3.0, size) * rng.choice([0.0, 1.0], size, p=[0.1, 0.9])  # negatives, zeros, positives
    weights = None if seed % 2 else rng.choice([0.5, 1.0, 2.0], size)
    sketch = Sketch.of(values, weights)
    merged = sketch.merged(Sketch.of(rng.lognormal(0.0, 2.0, 500)))
    qs = (0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0)
    for each in (sketch, merged, Sketch.of(np.array([5.0])), Sketch.of(np.array([-5.0, 0.0]))):
        assert each.quantiles(qs) == pytest.approx(each.library_quantiles(qs), rel=1e-12)  # the same keys
