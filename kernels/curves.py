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


def channel_true_class(classes: int = 2, pixels: int = 4) -> Curve:
    """Channel-first maps ``(N, C, pixels)``: the true class (channel 0, one-hot target on every pixel) gets
    probability x on every pixel, the other channels share 1 - x."""
    rest = 1.0 / (classes - 1)

    def inputs(x: np.ndarray) -> Arrays:
        p = np.repeat(((1 - x) * rest)[:, None, None], classes, axis=1).repeat(pixels, axis=2)
        p[:, 0] = x[:, None]
        targets = np.zeros((x.size, classes, pixels))
        targets[:, 0] = 1.0
        return {"predictions": p, "targets": targets}

    def direction(x: np.ndarray) -> Arrays:
        d = np.full((x.size, classes, pixels), -rest)
        d[:, 0] = 1.0
        return {"predictions": d}

    return Curve("predicted probability of the true class (every pixel, one-hot target)", 0.01, 0.99, inputs, direction)


def prediction(
    target: float, start: float, stop: float, variable: str, offset: float = 0.0, scale: float = 1.0
) -> Curve:
    """Element-wise: the prediction ``offset + scale * x`` against a fixed target (x is the prediction
    itself by default; ``offset = scale = target`` makes x the relative error)."""
    return Curve(
        variable,
        start,
        stop,
        inputs=lambda x: {"predictions": (offset + scale * x)[:, None], "targets": np.full((x.size, 1), target)},
        direction=lambda x: {"predictions": np.full((x.size, 1), scale)},
    )


def log_probability_of_true_class(classes: int = 3) -> Curve:
    """As probability_of_true_class with label targets, for losses that take log-probabilities:
    the inputs are log p, so the derivative along x (the probability) is d(log p)/dx = d p/dx / p."""
    base = probability_of_true_class(classes, labels=True)

    def inputs(x: np.ndarray) -> Arrays:
        arrays = base.inputs(x)
        return {**arrays, "predictions": np.log(arrays["predictions"])}

    def direction(x: np.ndarray) -> Arrays:
        return {"predictions": base.direction(x)["predictions"] / base.inputs(x)["predictions"]}

    return Curve(base.variable, base.start, base.stop, inputs, direction)


def margin(start: float = -2.0, stop: float = 3.0) -> Curve:
    """Binary margin losses: the score x of a sample whose label is +1, so x is the margin y x."""
    return Curve(
        "margin (label x score, label +1)",
        start,
        stop,
        inputs=lambda x: {"predictions": x[:, None], "targets": np.ones((x.size, 1))},
        direction=lambda x: {"predictions": np.ones((x.size, 1))},
    )


def two_labels(start: float = -3.0, stop: float = 3.0) -> Curve:
    """Multi-label losses: the score x of a class that applies, beside a class scored 0 that does not."""
    return Curve(
        "score of a class that applies (another, not applying, scored 0)",
        start,
        stop,
        inputs=lambda x: {
            "predictions": np.stack([x, np.zeros_like(x)], 1),
            "targets": np.tile([1.0, 0.0], (x.size, 1)),
        },
        direction=lambda x: {"predictions": np.tile([1.0, 0.0], (x.size, 1))},
    )


def true_class_score(classes: int = 3, labels: bool = False, start: float = -2.0, stop: float = 3.0) -> Curve:
    """Multi-class margin losses: the true class (0) scores x, every other class 0, so x is the
    true class's margin over the best other score."""

    def inputs(x: np.ndarray) -> Arrays:
        scores = np.zeros((x.size, classes))
        scores[:, 0] = x
        targets = np.zeros(x.size, dtype=np.int64) if labels else np.eye(classes)[np.zeros(x.size, dtype=int)]
        return {"predictions": scores, "targets": targets}

    def direction(x: np.ndarray) -> Arrays:
        d = np.zeros((x.size, classes))
        d[:, 0] = 1.0
        return {"predictions": d}

    return Curve("score of the true class minus the other scores (all 0)", start, stop, inputs, direction)
