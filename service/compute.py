"""The data plane: one loss computation for every protocol and for monitors. Checked inputs
in, one onnxruntime run, loss, per-sample losses and gradients out; errors are
service.errors values, which each protocol edge renders its own way."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from kernels.composite import CompositeSpec, Term
from kernels.feeds import NUMPY_DTYPE
from kernels.runtime import Kernel, OperatorModelError, Runtime
from kernels.spec import InvalidInput, LossSpec, NoParams, NotConfigured, Params, UnknownChoice
from service import metrics, positions
from service.arrays import check_number, check_params, decode_inputs, decode_weights, to_array
from service.errors import Kind, ServiceError, from_kernel, invalid, not_configured
from service.stats import CLOCK
from service.terms import decode_terms

COMPOSITE = "composite"
"""The metrics name of ad-hoc composites (``POST /loss/composite``)."""
UNDEFINED = "Undefined loss"


@dataclass(frozen=True)
class Computation:
    """What a request asks for; ``values`` are JSON lists or numpy arrays by input name.
    ``terms`` make it an ad-hoc composite (each term holds its own params)."""

    params: Params
    values: Mapping[str, Any]
    weights: Any
    reduction: Literal["mean", "sum", "none"]
    dtype: Literal["float32", "float64"]
    gradients: bool
    terms: tuple[Term, ...] = ()


@dataclass(frozen=True)
class Computed:
    loss: np.ndarray
    """A scalar, or per-sample values for reduction 'none'."""
    per_sample: np.ndarray
    gradients: dict[str, np.ndarray]
    """By input name, each in its input's shape."""
    count: int
    terms: list[np.ndarray] | None = None
    """An ad-hoc composite's term values (per sample for reduction 'none')."""


def composite_request(terms: Sequence[Term], **fields: Any) -> Computation:
    return Computation(params=NoParams(), terms=tuple(terms), **fields)


def evaluate(runtime: Runtime, spec: LossSpec | None, request: Computation, max_elements: int) -> Computed:
    """``spec`` is the loss (a named composite included); None with ``request.terms``."""
    try:
        return _evaluate(runtime, spec, request, max_elements)
    except InvalidInput as exc:  # a loss's own checks, or the graph's fixed sizes
        raise from_kernel(exc) from None


def _evaluate(runtime: Runtime, spec: LossSpec | None, request: Computation, max_elements: int) -> Computed:
    terms = request.terms
    batch_level = spec.is_batch_level(request.params) if spec is not None else terms[0].batch_level
    if batch_level and request.weights is not None:
        raise invalid("weights", batch_weights_refusal(spec))
    dtype = NUMPY_DTYPE[request.dtype]
    check_params(request.params, dtype)  # the graph takes params in the request's dtype
    for index, term in enumerate(terms):
        check_params(term.params, dtype, f"terms[{index}].params")
        check_number(f"terms[{index}].weight", term.weight, dtype)
    if spec is None:
        batch = decode_terms(terms, request.values, dtype, max_elements)
        composite = runtime.composite(terms, request.dtype, request.gradients)
    else:
        gradients = request.gradients and bool(spec.differentiable)
        kernel = select_kernel(runtime, spec, request.params, request.dtype, gradients)
        if isinstance(spec, CompositeSpec):  # each term checks its own inputs
            batch = decode_terms(spec.terms_for(request.params), request.values, dtype, max_elements)
        else:
            batch = decode_inputs(spec, request.params, request.values, dtype, max_elements)
        if kernel.fixed_dims:
            runtime.check_dims(kernel, batch.arrays)
    mean = request.reduction == "mean"
    arrays, spread = batch.arrays, None
    raw = None if request.weights is None else to_array("weights", request.weights, dtype)
    if raw is not None and raw.ndim >= 2 and spec is not None:  # a weight per position (service.positions)
        spread = positions.spread(spec, batch.arrays, raw)
        arrays, raw = spread.arrays, spread.weights
    weights = decode_weights(raw, len(spread.weights) if spread is not None else batch.count, dtype, mean)
    start = time.perf_counter()
    term_values = None
    if spec is None:
        result, term_losses, term_per_sample = runtime.composites.compute(composite, terms, arrays, weights, mean)
        term_values = list(term_per_sample if request.reduction == "none" else term_losses)
    else:
        try:
            result = runtime.compute(kernel, request.params, arrays, weights, mean)
        except OperatorModelError as exc:
            raise invalid(spec.inputs[0].name, f"the configured model could not process the inputs: {exc}") from None
    end = time.perf_counter()
    metrics.kernel_seconds(spec.name if spec is not None else COMPOSITE).observe(end - start)
    CLOCK.kernel_start, CLOCK.kernel_end = start, end
    if not np.isfinite(result.loss):
        raise undefined_loss(spec or terms[0].spec, result.loss, result.per_sample, request.dtype, batch_level)
    loss, per_sample, grads = result.loss, result.per_sample, result.gradients
    weighted = per_sample * weights if raw is not None else per_sample
    if spread is not None:
        scale = 1.0 if mean else 1.0 / spread.positions  # "sum" and "none" sum each sample's mean over positions
        loss = (loss * scale).astype(loss.dtype)
        grads = {n: (g * scale).astype(g.dtype).reshape(batch.arrays[n].shape) for n, g in grads.items()}
        per_sample = positions.per_sample(per_sample, batch.count)
        weighted = positions.per_sample(weighted, batch.count)
    if request.reduction == "none":
        loss = weighted
        if term_values is not None and raw is not None:
            term_values = [values * weights for values in term_values]
    return Computed(loss, per_sample, grads, batch.count, term_values)


def batch_weights_refusal(spec: LossSpec | None) -> str:
    """Why a batch-level request takes no sample weights, and what weighs its inputs instead (an
    optional weights input, e.g. TF-GAN's real and generated weights)."""
    if spec is None:
        return "the terms are one value for the whole batch: they take no sample weights"
    how = "" if spec.batch_level or spec.batch_param is None else f" with {spec.batch_param}=true"
    text = f"{spec.name}{how} is one value for the whole batch: it takes no sample weights"
    optional = [i.name for i in spec.inputs if i.optional is not None]
    if optional:
        text += f"; weigh its scores with the inputs {' and '.join(optional)} instead"
    return text


def undefined_loss(
    spec: LossSpec, loss: np.ndarray, per_sample: np.ndarray, dtype: str, batch_level: bool = False
) -> ServiceError:
    """Why a reduced loss is not finite: a sample's loss overflowed the dtype, the sum did,
    or a mean has nothing to divide by."""
    hint = "; send dtype float64" if dtype == "float32" else ""
    bad = ~np.isfinite(per_sample)
    if bad.any():  # e.g. exp of a large log-rate, a squared distance beyond float32's range
        index = int(np.argmax(bad))
        what = "the loss" if batch_level else f"the loss of sample [{index}]"
        detail = f"{what} is {per_sample[index].item()!r}: the inputs overflow {dtype}{hint}"
        return ServiceError(Kind.INVALID, UNDEFINED, detail, field=spec.inputs[0].name)
    if np.isinf(loss):
        return ServiceError(Kind.INVALID, UNDEFINED, f"the reduced loss overflows {dtype}{hint}")
    detail = "the loss is not finite: with reduction 'mean', every target is ignored or has zero weight"
    return ServiceError(Kind.INVALID, UNDEFINED, detail, field="targets")


def select_kernel(runtime: Runtime, spec: LossSpec, params: Params, dtype: str, gradients: bool) -> Kernel:
    """The graph for a request: not configured when the loss needs something the operator has
    not configured, invalid when a param names something that is not configured."""
    try:
        return runtime.kernel(spec, params, dtype, gradients)
    except NotConfigured as exc:
        raise not_configured(exc) from None
    except UnknownChoice as exc:
        raise invalid(f"params.{exc.param}", str(exc)) from None
