"""Run a loss kernel in process, exactly as the service does, for kernel tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels import REGISTRY
from kernels.runtime import NUMPY_DTYPE, Runtime
from kernels.spec import LossSpec
from service.arrays import graph_shape

_RUNTIME: Runtime | None = None


def runtime() -> Runtime:
    """One CPU runtime per test session (building every graph takes a few seconds)."""
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = Runtime(REGISTRY, provider="cpu")
    return _RUNTIME


@dataclass(frozen=True)
class Result:
    loss: np.ndarray
    per_sample: np.ndarray
    gradients: dict[str, np.ndarray]


def evaluate(
    name: str,
    inputs: dict[str, Any],
    params: dict[str, Any] | None = None,
    *,
    reduction: str = "mean",
    weights: Any = None,
    dtype: str = "float64",
    gradients: bool = True,
) -> Result:
    """The loss, per-sample losses and gradients for arrays given at their natural shape.

    ``reduction="none"`` returns gradients of each sample's own loss, as the API does.
    """
    spec: LossSpec | None = REGISTRY.get(name)
    assert spec is not None, name
    model = spec.params(**(params or {}))
    np_dtype = NUMPY_DTYPE[dtype]
    arrays = {}
    shapes = {}
    for spec_input in spec.inputs:
        array = np.asarray(inputs[spec_input.name], dtype=np.int64 if spec_input.kind == "label" else np_dtype)
        shapes[spec_input.name] = array.shape
        arrays[spec_input.name] = array.reshape(graph_shape(spec_input, array.shape))
    count = next(iter(shapes.values()))[0]
    w = np.ones(count, np_dtype) if weights is None else np.asarray(weights, np_dtype)
    rt = runtime()
    kernel = rt.kernel(spec, model, dtype, gradients)
    names = ["loss", "per_sample", *(f"grad_{n}" for n in spec.differentiable if gradients)]
    loss, per_sample, *grads = rt.run(kernel, model, arrays, w, reduction == "mean", names)
    grad_map = {n: g.reshape(shapes[n]) for n, g in zip(spec.differentiable, grads, strict=True)} if gradients else {}
    return Result(per_sample if reduction == "none" else loss, per_sample, grad_map)
