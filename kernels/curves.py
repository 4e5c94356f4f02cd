"""How to draw a loss: a batch of inputs along one variable, and their derivative.

``GET /losses/{name}/curve`` evaluates the kernel on ``inputs(x)`` (one sample per point
of x, reduction 'none') and reports the loss and its derivative along x, which is the
kernel's gradient projected on ``direction(x)`` = d(inputs)/dx. For a batch-level loss (one value
for the whole batch, e.g. a GAN loss on real and fake batches) each point is its own batch: row k of
every array ``inputs(x)`` and ``direction(x)`` give is the batch drawn at ``x[k]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Curve:
    variable: str
    """What x is, for the axis label, e.g. "residual (prediction - target)"."""
    start: float
    stop: float
    inputs: Callable[[np.ndarray], Arrays]
    direction: Callable[[np.ndarray], Arrays]
    """d(input)/dx for each differentiable input the curve moves (others are fixed)."""
    params: dict[str, object] = field(default_factory=dict)
    """Params the curve is drawn with, where the defaults would not show the loss."""

    def sample(self, points: int) -> np.ndarray:
        return np.linspace(self.start, self.stop, points)


def residual(start: float = -3.0, stop: float = 3.0) -> Curve:
    """Element-wise regression: prediction x against a target of 0."""
    return Curve(
        "residual (prediction - target)",
        start,
        stop,
        inputs=lambda x: {"predictions": x[:, None], "targets": np.zeros((x.size, 1))},
        direction=lambda x: {"predictions": np.ones((x.size, 1))},
    )


def probability_of_target(start: float = 0.01, stop: float = 0.99) -> Curve:
    """Binary: predicted probability p for a positive target."""
    return Curve(
        "predicted probability of the true class",
        start,
        stop,
        inputs=lambda x: {"predictions": x[:, None], "targets": np.ones((x.size, 1))},
        direction=lambda x: {"predictions": np.ones((x.size, 1))},
    )


def probability_of_true_class(classes: int = 3, labels: bool = False) -> Curve:
    """Categorical: the true class (0) gets probability x, the others share 1 - x."""
    rest = 1.0 / (classes - 1)

    def inputs(x: np.ndarray) -> Arrays:
        p = np.repeat(((1 - x) * rest)[:, None], classes, axis=1)
        p[:, 0] = x
        targets = np.zeros(x.size, dtype=np.int64) if labels else np.eye(classes)[np.zeros(x.size, dtype=int)]
        return {"predictions": p, "targets": targets}

    def direction(x: np.ndarray) -> Arrays:
        d = np.full((x.size, classes), -rest)
        d[:, 0] = 1.0
        return {"predictions": d}

    return Curve("predicted probability of the true class", 0.01, 0.99, inputs, direction)
