"""``GET /metrics``: Prometheus text exposition. Concurrent scrapes share one read: the
monitors' figures come from the database, and fifty scrapers must not cost fifty reads."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service.metrics import exposition
from service.monitors.collector import MonitorCollector

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Request counts by loss, protocol and status; request and kernel duration
    histograms; request and response sizes; requests in flight; per monitor, observation
    and loss-sum counters, the latest window's mean and p90, and its alert."""
    state = request.app.state
    pending: asyncio.Future[tuple[bytes, str]] | None = getattr(state, "scrape", None)
    if pending is None or pending.done() or pending.get_loop() is not asyncio.get_running_loop():
        # A blocking read of the database: off the event loop.
        pending = state.scrape = asyncio.ensure_future(run_in_threadpool(exposition, MonitorCollector(state.monitors)))
    body, content_type = await asyncio.shield(pending)
    return Response(body, media_type=content_type)
