"""Test declarations of the perceptual loss (kernels/perceptual.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.kernels.catalog.base import Arrays, GoldenElsewhere, LossInfo, NoGradients
from tests.kernels.properties import Images

# -- finite-difference inputs ----------------------------------------------------------------------


def fd_images(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """(N, 3, H, W) images for the default (``conv``) test extractor."""
    shape = (2, 3, 6, 5)
    return {"predictions": rng.normal(size=shape), "targets": rng.normal(size=shape)}


# -- declarations ----------------------------------------------------------------------------------

LOSSES = (
    LossInfo(
        "perceptual",
        golden=GoldenElsewhere(
            test="kernels/test_perceptual.py",
            why="no library computes it: the feature extractor is whatever ONNX model the operator configures. "
            "Its golden is an independent float64 reference (the extractor run on its own by onnxruntime, LPIPS's "
            "normalisation and distance in numpy) on extractors the test builds, for every reduction, with and "
            "without weights, both dtypes",
        ),
        gradients=NoGradients(
            why="the feature extractor is an arbitrary model the operator configures, with no analytic backward here",
            inputs=fd_images,
        ),
        domain=Images(),
    ),
)
