"""Run a loss kernel in process, exactly as the service does, for kernel tests."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal, cast

from kernels import REGISTRY
from kernels.features import FEATURE_MODELS, load_feature_models
from kernels.feeds import Evaluation
from kernels.runtime import Runtime
from tests.feature_models import write_extractors

Result = Evaluation
_RUNTIME: Runtime | None = None


def runtime() -> Runtime:
    """One CPU runtime per test session (each graph built on first use), with
    the test feature extractors of tests/feature_models.py configured (``conv`` first,
    so it is the default of ``perceptual``; ``pointwise64``)."""
    global _RUNTIME
    if _RUNTIME is None:
        with tempfile.TemporaryDirectory() as directory:
            models = load_feature_models(write_extractors(Path(directory)))
        _RUNTIME = Runtime(REGISTRY, provider="cpu", resources={FEATURE_MODELS: models})
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


_ON_DEMAND: Runtime | None = None


def on_demand() -> Runtime:
    """A single-threaded CPU runtime without configured extractors."""
    global _ON_DEMAND
    if _ON_DEMAND is None:
        _ON_DEMAND = Runtime(REGISTRY, provider="cpu", intra_op_threads=1)
    return _ON_DEMAND
