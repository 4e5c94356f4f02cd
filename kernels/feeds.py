"""What a graph is fed and what comes back: params as tensors, and arrays between their
natural shapes and the graph's layout, where each input's "..." axes are one axis. The
runtime decides the layout here and nowhere else."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels.graph import graph_shape
from kernels.spec import Input

NUMPY_DTYPE: dict[str, type[np.floating[Any]]] = {"float32": np.float32, "float64": np.float64}


@dataclass(frozen=True)
class Evaluation:
    loss: np.ndarray
    """A scalar, or per-sample values for reduction 'none'."""
    per_sample: np.ndarray
    gradients: dict[str, np.ndarray]
    """By input name, each in its input's natural shape."""


def param_feed(value: Any, annotation_is_int: bool, dtype: type[np.floating[Any]]) -> np.ndarray:
    """A param's value as the graph input it feeds; an absent optional weight means 1."""
    if annotation_is_int:
        return np.array(value, dtype=np.int64)
    if value is None:
        return np.ones(1, dtype=dtype)
    if isinstance(value, list):
        return np.asarray(value, dtype=dtype)
    return np.array(value, dtype=dtype)


def to_graph(layouts: Iterable[Input], arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each array at the layout its graph takes (views: no copy)."""
    return {x.name: arrays[x.name].reshape(graph_shape(x, arrays[x.name].shape)) for x in layouts}


def one_per_sample(layouts: Iterable[Input], arrays: Mapping[str, np.ndarray]) -> bool:
    """Every input holds one value per sample (``(N,)``, or ``(N, 1, ...)``): the column layout."""
    return all(arrays[x.name].ndim >= 1 and arrays[x.name].size == arrays[x.name].shape[0] for x in layouts)


def from_graph(
    names: Iterable[str], outputs: Iterable[np.ndarray], arrays: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Gradients back at the natural shapes of the arrays they are taken with respect to."""
    return {name: grad.reshape(arrays[name].shape) for name, grad in zip(names, outputs, strict=True)}
