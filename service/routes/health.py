"""``GET /health``."""

from fastapi import APIRouter, Request

from service import __version__
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health(request: Request) -> Health:
    runtime = request.app.state.runtime
    return Health(status="ok", version=__version__, providers=runtime.providers, losses=len(runtime.specs))
