"""``GET /metrics``: Prometheus text exposition. Concurrent scrapes share one read: the
monitors' figures come from the database, and fifty scrapers must not cost fifty reads."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service import lifecycle
from service.metrics import exposition
from service.monitors.collector import exposition_text
from service.monitors.store import Store

router = APIRouter(tags=["health"])
READY = (
    "# HELP lossd_ready 1 when GET /v2/health/ready answers 200 (started, not draining, database reachable).\n"
    "# TYPE lossd_ready gauge\nlossd_ready {}\n"
)


def read(store: Store) -> tuple[bytes, str]:
    """The compute metrics (merged over the workers), then the monitors' from the database."""
    body, content_type = exposition()
    return body + exposition_text(store), content_type


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Request counts by loss, protocol and status; request and kernel duration
    histograms; request and response sizes; requests in flight; readiness; per monitor,
    observation and loss-sum counters, the latest window's mean and p90, its alert and its
    drift from the baseline with the limit it is judged by."""
    state = request.app.state
    pending: asyncio.Future[tuple[bytes, str]] | None = getattr(state, "scrape", None)
    if pending is None or pending.done() or pending.get_loop() is not asyncio.get_running_loop():
        # A blocking read of the database: off the event loop.
        pending = state.scrape = asyncio.ensure_future(run_in_threadpool(read, state.monitors))
    body, content_type = await asyncio.shield(pending)
    ready = READY.format("1.0" if await lifecycle.ready(state) else "0.0").encode()
    return Response(body + ready, media_type=content_type)
