"""bench.perceptual's rows time what they say: the VGG-style extractor has a backward, and the
timed gradient graph returns a finite, non-zero gradient of the batch's shape (one short run)."""

from __future__ import annotations

import numpy as np

from bench import perceptual
from kernels.backward import supported


def test_the_bench_extractor_has_a_backward_and_the_rows_time_the_gradient() -> None:
    model = perceptual.vgg_style()
    assert supported(model, "images", [o.name for o in model.graph.output]) is None
    rows = perceptual.measure(threads=1, repeats=1)
    assert set(rows) == {False, True}
    (forward, none), (backward, gradient) = rows[False], rows[True]
    assert none is None and gradient is not None
    assert gradient.shape == perceptual.SHAPE and np.isfinite(gradient).all() and np.abs(gradient).max() > 0
    assert forward.median > 0 and backward.median > 0
