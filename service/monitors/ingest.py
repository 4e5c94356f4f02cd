"""Observations in: per-sample losses from the monitor's kernel, by the same path as
``POST /loss/{name}``, aggregated and committed as one row."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from kernels.runtime import Runtime
from kernels.spec import LossSpec
from service.arrays import check_params
from service.compute import Computation, evaluate, select_kernel
from service.errors import from_validation_error, invalid, invalid_request, not_found
from service.lookup import loss_named
from service.monitors.aggregate import Aggregate
from service.monitors.store import Monitor, Store, Tags, TooManySegments
from service.monitors.timestamps import parse_time, rfc3339, window_of
from service.monitors.views import segments_of
from service.rest import numeric_fields, parse_json, validate_envelope

MAX_TAG_LENGTH = 200


@dataclass(frozen=True)
class Batch:
    losses: np.ndarray
    """Per-sample losses."""
    weights: np.ndarray | None
    loss: float
    """The batch's loss, reduced as POST /loss/{name} does (its canonical weighted mean)."""


def find(store: Store, name: str) -> Monitor:
    monitor = store.get(name)
    if monitor is None:
        raise not_found("Unknown monitor", f"no monitor named {name!r}; GET /monitors lists them")
    return monitor


def loss_spec(name: str) -> LossSpec:
    return loss_named(name, field="loss")


def checked_params(runtime: Runtime, spec: LossSpec, params: dict[str, Any]) -> None:
    """422 for params the loss does not take (or that do not fit float32, the dtype a monitor
    computes in), 409 for a loss that is not configured here."""
    try:
        model = spec.params.model_validate(params)
    except ValidationError as exc:
        raise from_validation_error([{**e, "loc": ("params", *e["loc"])} for e in exc.errors()]) from None
    check_params(model, np.float32)
    select_kernel(runtime, spec, model, "float32", False)


def compute_batch(
    runtime: Runtime, spec: LossSpec, monitor_params: dict[str, Any], data: dict[str, Any], max_elements: int
) -> Batch:
    """Per-sample losses of a batch: ``data`` holds the loss's inputs and optional ``weights``."""
    allowed = {i.name for i in spec.inputs} | {"weights"}
    for key in data:
        if key not in allowed:
            detail = f"{key}: unknown field; send {', '.join(sorted(allowed))}, timestamp and tags"
            raise invalid_request(detail, field=key)
    envelope: Any = validate_envelope(spec, {**data, "params": monitor_params})
    request = Computation(
        params=envelope.params,
        values={i.name: getattr(envelope, i.name) for i in spec.inputs},
        weights=envelope.weights,
        reduction="mean",
        dtype="float32",
        gradients=False,
    )
    result = evaluate(runtime, spec, request, max_elements)
    weights = None if envelope.weights is None else np.asarray(envelope.weights, dtype=np.float64).ravel()
    return Batch(np.asarray(result.per_sample, dtype=np.float64).ravel(), weights, float(result.loss))


def checked_tags(monitor: Monitor, value: object) -> Tags:
    """An observation's ``tags``: every declared segment key, null where left out."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise invalid("tags", f'expected an object of tag values, e.g. {{"region": "eu"}}, got {value!r}')
    for key, tag in value.items():
        if key not in monitor.segments:
            raise invalid(
                f"tags.{key}", f"{key!r} is not a segment of monitor {monitor.name!r}; {segments_of(monitor)}"
            )
        if tag is not None and (not isinstance(tag, str) or len(tag) > MAX_TAG_LENGTH):
            raise invalid(
                f"tags.{key}", f"expected a string of at most {MAX_TAG_LENGTH} characters or null, got {tag!r}"
            )
    return {key: value.get(key) for key in monitor.segments}


def observe(
    runtime: Runtime, store: Store, monitor: Monitor, body: bytes, max_elements: int, max_segments: int = 100
) -> dict[str, Any]:
    """``POST /monitors/{name}/observations``: committed before this returns."""
    spec = loss_spec(monitor.loss)
    data = parse_json(body, numeric_fields(spec), max_elements)
    stamp = data.pop("timestamp", None)
    tags = checked_tags(monitor, data.pop("tags", None))
    now = time.time()
    seconds = now if stamp is None else parse_time(stamp, "timestamp")
    start = window_of(stamp, seconds, monitor.window_seconds, "timestamp")
    if monitor.expired(start, now):
        raise invalid(
            "timestamp",
            f"{stamp!r} is older than monitor {monitor.name!r} keeps windows (retention_seconds "
            f"{monitor.retention_seconds}): its window is deleted",
        )
    batch = compute_batch(runtime, spec, monitor.params, data, max_elements)
    aggregate = Aggregate.of(batch.losses, batch.weights)
    try:
        recorded = store.record(monitor, start, aggregate, tags, max_segments, now)
    except TooManySegments:
        raise invalid(
            "tags",
            f"monitor {monitor.name!r} has {max_segments} segments, the most it may have (LOSSD_MAX_SEGMENTS); "
            f"tags {tags} would open another",
        ) from None
    if not recorded:
        raise not_found("Unknown monitor", f"monitor {monitor.name!r} was deleted")
    return {"accepted": aggregate.count, "loss": batch.loss, "window": rfc3339(start)}
