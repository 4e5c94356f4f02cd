"""Run a loss kernel in process, exactly as the service does, for kernel tests."""

from __future__ import annotations

from typing import Any, Literal, cast

from kernels import REGISTRY
from kernels.runtime import Evaluation, Runtime

Result = Evaluation
_RUNTIME: Runtime | None = None


def runtime() -> Runtime:
    """One CPU runtime per test session (building every graph takes a few seconds)."""
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = Runtime(REGISTRY, provider="cpu")
    return _RUNTIME


def evaluate(
    name: str,
    inputs: dict[str, Any],
    params: dict[str, Any] | None = None,
    *,
    reduction: str = "mean",
    weights: Any = None,
    dtype: Literal["float32", "float64"] = "float64",
    gradients: bool = True,
) -> Evaluation:
    """The loss, per-sample losses and gradients for arrays given at their natural shape.

    ``reduction="none"`` returns gradients of each sample's own loss, as the API does.
    """
    spec = REGISTRY.get(name)
    assert spec is not None, name
    assert reduction in ("mean", "sum", "none"), reduction
    return runtime().evaluate(
        spec,
        inputs,
        spec.params(**(params or {})),
        reduction=cast(Literal["mean", "sum", "none"], reduction),
        weights=weights,
        dtype=dtype,
        gradients=gradients,
    )
