"""Test declarations of the perceptual loss (kernels/perceptual.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.kernels.catalog.base import Arrays, GoldenElsewhere, GradientCase, LossInfo
from tests.kernels.properties import Images

# -- finite-difference inputs ----------------------------------------------------------------------


def fd_images(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """(N, 2, H, W) images for the float64 ``pointwise64`` test extractor (its loss is
    float64-exact, so central differences are meaningful; the float32 extractors' gradients
    are checked in kernels/test_perceptual_gradients.py)."""
    shape = (2, 2, 4, 3)
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
        gradients=GradientCase(fd_images, params=({"feature_model": "pointwise64"},)),
        domain=Images(),
        whole="its graph holds the operator's extractor: configured graphs never run in row blocks",
    ),
)
