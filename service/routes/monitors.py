"""Model monitoring: ``/monitors`` (create, list, inspect, delete) and windows. Observations
are a data-plane route (service.routing)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from service.errors import ServiceError, conflict
from service.monitors.aggregate import Aggregate
from service.monitors.baseline import sketch_text
from service.monitors.ingest import checked_params, compute_batch, find, loss_spec
from service.monitors.page import page
from service.monitors.schemas import MonitorCreate, MonitorList, MonitorView, SegmentList, WindowList
from service.monitors.store import Conflict, Store
from service.monitors.timestamps import parse_time
from service.monitors.views import monitor_view, parse_tags, segments_view, windows_view
from service.responses import problems

router = APIRouter(tags=["monitors"])
NOT_FOUND = problems({404: "No monitor of that name."})
INVALID = problems({422: "Invalid input; `field` names it."})
MALFORMED = problems({400: "Malformed JSON."})


def answer(content: dict[str, Any]) -> Response:
    """A view as JSON, as its route's response model documents it: the views build every
    field of it, and validating hundreds of windows against the model would cost more than
    reading them from the database."""
    return Response(orjson.dumps(content), media_type="application/json")


def store_of(request: Request) -> Store:
    store: Store = request.app.state.monitors
    return store


def reference_stats(request: Request, body: MonitorCreate, loss: str) -> dict[str, Any] | None:
    """The baseline of an explicit reference batch: its count, mean, std and sketch."""
    reference = body.baseline.reference
    if reference is None:
        return None
    state = request.app.state
    try:
        batch = compute_batch(state.runtime, loss_spec(loss), body.params, reference, state.settings.max_elements)
    except ServiceError as error:
        where = "baseline.reference" + (f".{error.field}" if error.field else "")
        raise ServiceError(error.kind, error.title, f"baseline.reference.{error.detail}", field=where) from None
    aggregate = Aggregate.of(batch.losses, batch.weights)
    summary = aggregate.summary()
    return {
        "count": summary["count"],
        "mean": summary["mean"],
        "std": summary["std"],
        "sketch": sketch_text(aggregate.sketch),
    }


@router.post(
    "/monitors",
    status_code=201,
    response_model=MonitorView,
    responses={**MALFORMED, **problems({409: "A monitor of that name exists."}), **INVALID},
)
def create_monitor(request: Request, body: MonitorCreate) -> dict[str, Any]:
    """Create a monitor: a loss with fixed params, a window length and a baseline."""
    state = request.app.state
    spec = loss_spec(body.loss)
    checked_params(state.runtime, spec, body.params)
    config: dict[str, Any] = {
        "windows": body.baseline.windows,
        "threshold": body.baseline.threshold,
        "drift_threshold": body.baseline.drift_threshold,
    }
    reference = reference_stats(request, body, spec.name)
    if reference is not None:
        config["reference"] = reference
    store = store_of(request)
    try:
        monitor = store.create(
            body.name,
            spec.name,
            body.params,
            body.window_seconds,
            config,
            body.segments,
            body.retention_seconds,
            body.label_ttl_seconds,
        )
    except Conflict:
        raise conflict("Monitor exists", f"a monitor named {body.name!r} exists", field="name") from None
    return monitor_view(store, monitor, detail=True)


@router.get("/monitors", response_model=MonitorList)
def list_monitors(request: Request) -> dict[str, Any]:
    """Every monitor with its baseline and alert state."""
    store = store_of(request)
    return {"monitors": [monitor_view(store, m, detail=False) for m in store.monitors()]}


@router.get("/monitors/{name}", response_model=MonitorView, responses=NOT_FOUND)
def get_monitor(request: Request, name: str) -> Response:
    """A monitor: definition, totals, baseline, alert state and its recent windows."""
    store = store_of(request)
    return answer(monitor_view(store, find(store, name), detail=True))


@router.delete("/monitors/{name}", status_code=204, response_class=Response, responses=NOT_FOUND)
def delete_monitor(request: Request, name: str) -> Response:
    """Remove a monitor and everything it recorded."""
    if not store_of(request).delete(name):
        find(store_of(request), name)  # the 404
    return Response(status_code=204)


@router.get("/monitors/{name}/windows", response_model=WindowList, responses={**NOT_FOUND, **INVALID})
def get_windows(
    request: Request,
    name: str,
    since: str | None = None,
    until: str | None = None,
    step: int | None = None,
    tags: str | None = None,
) -> Response:
    """Windows with data in ``[since, until)`` (RFC 3339 or epoch seconds), merged into
    windows of ``step`` seconds, a multiple of the monitor's window; ``tags``
    (``model_version:v3,region:eu``) picks the segments, keys not named merged over."""
    store = store_of(request)
    monitor = find(store, name)
    low = None if since is None else parse_time(since, "since")
    high = None if until is None else parse_time(until, "until")
    chosen = None if tags is None else parse_tags(monitor, tags)
    return answer(windows_view(store, monitor, low, high, step, chosen))


@router.get("/monitors/{name}/segments", response_model=SegmentList, responses=NOT_FOUND)
def get_segments(request: Request, name: str) -> dict[str, Any]:
    """One entry per segment (combination of tag values): its tags, count, mean and alert state."""
    store = store_of(request)
    return segments_view(store, find(store, name))


@router.get(
    "/ui/monitors", response_class=HTMLResponse, tags=["ui"], responses=problems({422: "No such page of monitors."})
)
def monitors_page(request: Request, page_number: Annotated[int, Query(alias="page", ge=1)] = 1) -> HTMLResponse:
    """The monitors' loss over time, baseline bands and flagged windows (an HTML page, 20
    monitors a page, by name)."""
    return HTMLResponse(page(store_of(request), page_number))
