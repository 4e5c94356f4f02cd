"""Weights beyond one per sample: a weight per position, e.g. per timestep of `(N, T)`.

Keras takes any sample weight that broadcasts to a loss's values: `(N, T)` weights on
`(N, T, D)` predictions weigh each timestep. A loss whose sample loss is the mean over its
positions (the "..." axes after N) gets the same here by treating each position as a
sample: the batch `(N, T, ...)` becomes `(N*T, ...)` with one weight per row, so the
kernel, its graph and its checks are the ones of ordinary sample weights. With `P`
positions per sample, the reductions keep their meaning: "mean" is `sum(w*l)/sum(w)` over
positions (Keras' "mean_with_sample_weight"); "sum" is `sum_n mean_p(w*l)` (uniform
weights give the sum of sample weights); "none" gives each sample's `mean_p(w*l)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from kernels.spec import LossSpec
from service.errors import invalid


def weighable(spec: LossSpec) -> bool:
    """Whether the loss's sample loss is a mean over positions: every input is `(N, ..., [named axes])`."""
    return not spec.batch_level and not spec.configured and all(i.shape[1:2] == ("...",) for i in spec.inputs)


@dataclass(frozen=True)
class Spread:
    """The batch with positions as samples."""

    arrays: dict[str, np.ndarray]
    weights: np.ndarray
    positions: int
    """Positions per original sample (P)."""


def spread(spec: LossSpec, arrays: Mapping[str, np.ndarray], weights: np.ndarray) -> Spread:
    """``weights`` of shape `(N, d1, ..., dk)`, k >= 1, the leading axes of every input."""
    lead = weights.shape
    if not weighable(spec):
        raise invalid(
            "weights",
            f"{spec.name} takes one weight per sample, shape (N,): its sample loss is not a mean over positions",
        )
    for spec_input in spec.inputs:
        shape = arrays[spec_input.name].shape
        named = len(spec_input.shape) - 2  # axes after "..." (a class axis): no weight may cover them
        if shape[: len(lead)] != lead or len(lead) > len(shape) - named:
            raise invalid(
                "weights",
                f"shape {list(lead)} must be the leading axes of every input, before any class axis "
                f"({spec_input.name} is {list(shape)})",
            )
    rows = math.prod(lead)
    flat = {name: array.reshape(rows, *array.shape[len(lead) :]) for name, array in arrays.items()}
    return Spread(flat, weights.reshape(rows), rows // lead[0] if lead[0] else 1)


def per_sample(values: np.ndarray, count: int) -> np.ndarray:
    """Per-position values back to one per sample: their mean over the sample's positions."""
    means: np.ndarray = values.reshape(count, -1).mean(axis=1, dtype=np.float64)
    return means.astype(values.dtype)
