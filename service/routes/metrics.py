"""``GET /metrics``: Prometheus text exposition."""

from fastapi import APIRouter
from fastapi.responses import Response

from service.metrics import exposition

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics() -> Response:
    """Request counts by loss, protocol and status; request and kernel duration
    histograms; request and response sizes; requests in flight."""
    body, content_type = exposition()
    return Response(body, media_type=content_type)
