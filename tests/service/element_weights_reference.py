"""Writes ``tests/service/golden/element_weights.json``: Keras 3 losses with a sample weight
per position, the peer cases that ``service.positions`` makes expressible. Run with the
reference libraries (``make golden``'s venv): ``python -m tests.service.element_weights_reference``.
The suite reads the file with numpy alone (``tests/service/test_element_weights.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "golden" / "element_weights.json"
SHAPE = (3, 4, 5)
"""(N, T, D): a weight per (sample, timestep); D the last axis Keras reduces first."""
CASES = {
    "mse": "MeanSquaredError",
    "mae": "MeanAbsoluteError",
    "huber": "Huber",
    "log_cosh": "LogCosh",
    "msle": "MeanSquaredLogarithmicError",
    "binary_cross_entropy": "BinaryCrossentropy",
    "hinge": "Hinge",
    "squared_hinge": "SquaredHinge",
    "cross_entropy": "CategoricalCrossentropy",
    "kl_divergence": "KLDivergence",
    "categorical_hinge": "CategoricalHinge",
    "sparse_cross_entropy": "SparseCategoricalCrossentropy",
}


def inputs(loss: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if loss in ("cross_entropy", "kl_divergence", "sparse_cross_entropy", "categorical_hinge"):
        predictions = rng.dirichlet(np.ones(SHAPE[-1]), SHAPE[:-1])
        labels = rng.integers(0, SHAPE[-1], SHAPE[:-1])
        if loss == "sparse_cross_entropy":
            return {"predictions": predictions, "targets": labels}
        one_hot = np.eye(SHAPE[-1])[labels]
        targets = rng.dirichlet(np.ones(SHAPE[-1]), SHAPE[:-1]) if loss == "kl_divergence" else one_hot
        return {"predictions": predictions, "targets": targets}
    if loss in ("hinge", "squared_hinge"):
        return {"predictions": rng.normal(size=SHAPE), "targets": rng.choice([-1.0, 1.0], SHAPE)}
    if loss == "binary_cross_entropy":
        return {"predictions": rng.uniform(0.05, 0.95, SHAPE), "targets": rng.integers(0, 2, SHAPE).astype(float)}
    return {"predictions": rng.uniform(0.1, 3.0, SHAPE), "targets": rng.uniform(0.1, 3.0, SHAPE)}


def main() -> None:
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    keras.config.set_floatx("float64")
    rng = np.random.default_rng(7)
    weights = rng.uniform(0.0, 2.0, SHAPE[:2])
    weights[1, 2] = 0.0
    cases: dict[str, Any] = {}
    for loss, name in CASES.items():
        arrays = inputs(loss, rng)
        found = {}
        for reduction in ("mean_with_sample_weight", "sum", None):
            function = getattr(keras.losses, name)(reduction=reduction)
            value = function(arrays["targets"], arrays["predictions"], sample_weight=weights)
            found[str(reduction)] = keras.ops.convert_to_numpy(value).tolist()
        cases[loss] = {"inputs": {k: v.tolist() for k, v in arrays.items()}, "keras": found}
    document = {
        "generated_by": "python -m tests.service.element_weights_reference",
        "keras": keras.__version__,
        "weights": weights.tolist(),
        "conventions": "keras 'mean_with_sample_weight' = lossd mean; keras 'sum' = lossd sum x T; keras None "
        "(per position) averaged over T = lossd none",
        "cases": cases,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
