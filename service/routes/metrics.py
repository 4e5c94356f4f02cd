"""``GET /metrics``: Prometheus text exposition."""

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
    # The monitors' figures come from the database: a blocking read, off the event loop.
    body, content_type = await run_in_threadpool(exposition, MonitorCollector(request.app.state.monitors))
    return Response(body, media_type=content_type)
