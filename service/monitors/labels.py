"""Late labels by prediction id: ``POST /monitors/{name}/predictions`` stores predictions
(service.monitors.pending) until ``POST /monitors/{name}/labels`` joins their targets; each
matched sample is then computed by the monitor's kernel and recorded in its prediction's
window and segment, by the rollups' own write path, in the transaction that marks its
prediction labelled (a stored request's row goes once none of its predictions waits).

Counting a labels request: each id's first occurrence is *matched* (its prediction waits)
or *unmatched* (never sent, already labelled, expired, or its window is past retention);
every later occurrence of an id in the same request is a *duplicate* and is not recorded
again (with other targets or weight than the first: a 409 naming the id).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

import numpy as np
import orjson

from kernels.runtime import Runtime
from kernels.spec import Input, LossSpec
from service.arrays import check_finite, to_array
from service.errors import Kind, ServiceError, invalid, invalid_request, not_found, too_many_elements
from service.monitors.aggregate import Aggregate, merge
from service.monitors.ingest import checked_tags, compute_batch, loss_spec
from service.monitors.pending import Claimed, IdConflict, claim, decode, encode, forget, put
from service.monitors.store import Monitor, Store, TooManySegments, tags_key
from service.monitors.timestamps import parse_time, window_of
from service.rest import parse_json

MAX_ID_LENGTH = 128
PLAIN_BYTES = 1 << 20
"""Bodies below this are read by orjson: service.json_arrays walks their ids string by string
(a body of 1,000 ids and predictions: ~1 ms against ~0.1 ms); larger ones are mostly numbers,
which it reads faster."""
TARGETS = "targets"


def prediction_inputs(monitor: Monitor, spec: LossSpec) -> list[Input]:
    """The loss's inputs a prediction carries: all but ``targets`` (a 422 for a loss whose
    samples cannot be labelled later)."""
    names = [i.name for i in spec.inputs]
    if TARGETS not in names or spec.is_batch_level(spec.params.model_validate(monitor.params)):
        raise invalid_request(
            f"monitor {monitor.name!r} computes {spec.name}, which has no per-sample targets (its inputs are "
            f"{', '.join(names)}): send its samples as observations",
            field="ids",
        )
    return [i for i in spec.inputs if i.name != TARGETS]


def read(body: bytes, numeric: frozenset[str], max_elements: int) -> dict[str, Any]:
    if len(body) < PLAIN_BYTES:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # json_arrays' messages say what is wrong, and read NaN where JSON has none
        else:
            if not isinstance(data, dict):
                raise invalid_request(f"the body must be a JSON object, got {type(data).__name__}")
            return data
    return parse_json(body, numeric.__contains__, max_elements)


def within(arrays: dict[str, np.ndarray], max_elements: int) -> None:
    total = 0
    for name, array in arrays.items():
        total += array.size
        if total > max_elements:
            raise too_many_elements(max_elements, name)


def checked_ids(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise invalid("ids", f"expected a non-empty list of id strings, got {value!r:.80}")
    if set(map(type, value)) == {str} and 1 <= min(map(len, value)) <= max(map(len, value)) <= MAX_ID_LENGTH:
        return value
    for index, item in enumerate(value):
        if not isinstance(item, str) or not 1 <= len(item) <= MAX_ID_LENGTH:
            raise invalid(f"ids[{index}]", f"expected a string of 1 to {MAX_ID_LENGTH} characters, got {item!r:.160}")
    return value


def first_places(ids: list[str]) -> dict[str, int]:
    """Each id's first place in the request."""
    places = dict(zip(ids, range(len(ids)), strict=True))  # the last place of each: the first where none repeats
    if len(places) == len(ids):
        return places
    first: dict[str, int] = {}
    for place, id_ in enumerate(ids):
        first.setdefault(id_, place)
    return first


def per_id(field: str, value: Any, count: int, dtype: type[np.generic]) -> np.ndarray:
    """An array with one entry per id along its first axis."""
    array = to_array(field, value, dtype)
    if array.ndim == 0 or array.shape[0] != count:
        raise invalid(
            field, f"expected {count} samples along the first axis, one per id, got shape {list(array.shape)}"
        )
    return array


def unknown_fields(data: dict[str, Any], allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            raise invalid_request(f"{key}: unknown field; send {', '.join(sorted(allowed))}", field=key)


def id_conflict(id_: str, what: str) -> ServiceError:
    return ServiceError(Kind.CONFLICT, "Prediction id conflict", f"ids: {id_!r} {what}", field="ids", id=id_)


def predict(store: Store, monitor: Monitor, body: bytes, max_elements: int) -> dict[str, Any]:
    """``POST /monitors/{name}/predictions``: committed before this returns."""
    spec = loss_spec(monitor.loss)
    inputs = prediction_inputs(monitor, spec)
    data = read(body, frozenset(i.name for i in inputs), max_elements)
    unknown_fields(data, {"ids", "timestamp", "tags", *(i.name for i in inputs)})
    ids = checked_ids(data.get("ids"))
    stamp = data.get("timestamp")
    tags = tags_key(checked_tags(monitor, data.get("tags")))
    now = time.time()
    seconds = None if stamp is None else parse_time(stamp, "timestamp")
    start = window_of(stamp, now if seconds is None else seconds, monitor.window_seconds, "timestamp")
    if monitor.expired(start, now):
        raise invalid(
            "timestamp",
            f"{stamp!r} is older than monitor {monitor.name!r} keeps windows (retention_seconds "
            f"{monitor.retention_seconds}): its window is deleted",
        )
    arrays: dict[str, tuple[np.ndarray, bool]] = {}
    for spec_input in inputs:
        if spec_input.name not in data:
            raise invalid(spec_input.name, "is required")
        array = per_id(spec_input.name, data[spec_input.name], len(ids), np.float64)
        check_finite(spec_input.name, array)
        arrays[spec_input.name] = (array, spec_input.integer)
    within({name: array for name, (array, _) in arrays.items()}, max_elements)
    layout, matrix = encode(arrays, len(ids))
    first = first_places(ids)
    if len(first) < len(ids):
        for place, id_ in enumerate(ids):
            if not np.array_equal(matrix[first[id_]], matrix[place]):
                raise id_conflict(id_, "is given twice in this request with different predictions")
    unique = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    try:
        new = put(store, monitor, list(first), layout, matrix[unique], start, tags, seconds, now)
    except IdConflict as exc:
        raise id_conflict(
            exc.args[0], "waits for its label with other content (predictions, timestamp or tags)"
        ) from None
    if new is None:
        raise not_found("Unknown monitor", f"monitor {monitor.name!r} was deleted")
    return {"accepted": new, "duplicates": len(ids) - new}


def label(
    runtime: Runtime, store: Store, monitor: Monitor, body: bytes, max_elements: int, max_segments: int
) -> dict[str, Any]:
    """``POST /monitors/{name}/labels``: the join, the samples' records and the deletion of
    their predictions in one transaction, committed before this returns."""
    spec = loss_spec(monitor.loss)
    prediction_inputs(monitor, spec)
    data = read(body, frozenset((TARGETS, "weights")), max_elements)
    unknown_fields(data, {"ids", TARGETS, "weights"})
    ids = checked_ids(data.get("ids"))
    if TARGETS not in data:
        raise invalid(TARGETS, "is required")
    targets = per_id(TARGETS, data[TARGETS], len(ids), np.float64)
    weights = None if data.get("weights") is None else per_id("weights", data["weights"], len(ids), np.float64)
    within({TARGETS: targets} if weights is None else {TARGETS: targets, "weights": weights}, max_elements)
    first = first_places(ids)
    if len(first) < len(ids):
        for place, id_ in enumerate(ids):
            earlier = first[id_]
            if not np.array_equal(targets[earlier], targets[place]) or (
                weights is not None and weights[earlier] != weights[place]
            ):
                raise id_conflict(id_, "is given twice in this request with different targets or weights")
    now = time.time()
    places = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    try:
        with store.transaction() as connection:
            claimed, gone = claim(store, connection, monitor, list(first), now)
            kept = [c for c in claimed if not monitor.expired(c.batch.window_start, now)]
            losses = matched_losses(runtime, spec, monitor, kept, places, targets, weights, max_elements)
            for (tags, start), aggregate in sorted(losses.items()):  # one order of row locks for every writer
                if not store.add_batch(connection, monitor, start, aggregate, tags, max_segments, now):
                    raise not_found("Unknown monitor", f"monitor {monitor.name!r} was deleted")
    except TooManySegments:
        raise invalid(
            "ids",
            f"monitor {monitor.name!r} has {max_segments} segments, the most it may have (LOSSD_MAX_SEGMENTS); "
            "these labels' predictions would open another",
        ) from None
    except store.integrity_errors:
        raise not_found("Unknown monitor", f"monitor {monitor.name!r} was deleted") from None
    forget(store, monitor, gone)
    total = merge(losses.values())
    loss = total.mean
    return {
        "matched": total.count,
        "unmatched": len(first) - total.count,
        "duplicates": len(ids) - len(first),
        "loss": None if loss is None or not math.isfinite(loss) else loss,
    }


def matched_losses(
    runtime: Runtime,
    spec: LossSpec,
    monitor: Monitor,
    claimed: list[Claimed],
    places: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None,
    max_elements: int,
) -> dict[tuple[str, int], Aggregate]:
    """The matched samples' losses, aggregated by (segment, window): one kernel call per
    layout of their predictions (one, unless their shapes differ between prediction
    requests). ``places``: where in the request each claimed id's targets are."""
    by_layout: dict[str, list[Claimed]] = defaultdict(list)
    for found in claimed:
        by_layout[found.batch.layout].append(found)
    result: dict[tuple[str, int], Aggregate] = {}
    for layout, group in by_layout.items():
        parts = [decode(layout, found.batch.matrix[found.positions]) for found in group]
        values: dict[str, Any] = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        index = places[np.concatenate([found.requests for found in group])]
        values[TARGETS] = targets[index]
        if weights is not None:
            values["weights"] = weights[index]
        computed = compute_batch(runtime, spec, monitor.params, values, max_elements)
        offset = 0
        for found in group:  # a row's samples share its window and segment
            chosen = slice(offset, offset + found.positions.size)
            offset = chosen.stop
            part = Aggregate.of(computed.losses[chosen], None if computed.weights is None else computed.weights[chosen])
            place = (found.batch.tags, found.batch.window_start)
            result[place] = result[place].merged(part) if place in result else part
    return result
