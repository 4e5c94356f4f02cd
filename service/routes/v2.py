"""The Open Inference Protocol (KServe V2 / Triton) endpoints but infer (a data-plane route,
service.routing); errors are ``{"error": ...}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from kernels import REGISTRY
from service import lifecycle, stats, v2
from service.lookup import model_named as model
from service.responses import v2_errors

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
RESPONSES = v2_errors({404: "No model of that name."})
EMPTY = {"description": "Yes (an empty body)."}


@router.get("")
async def server_metadata() -> dict[str, Any]:
    return v2.server_metadata()


@router.get("/health/live", response_class=Response, responses={200: EMPTY})
async def live() -> Response:
    return Response(status_code=200)


@router.get(
    "/health/ready",
    response_class=Response,
    responses={
        200: EMPTY,
        503: {
            "description": "Not ready yet, draining after SIGTERM, or the monitor database cannot be reached "
            "(an empty body)."
        },
    },
)
async def ready(request: Request) -> Response:
    return Response(status_code=200 if await lifecycle.ready(request.app.state) else 503)


@router.post("/repository/index")
async def repository_index() -> list[dict[str, str]]:
    return [{"name": spec.name, "version": "1", "state": "READY"} for spec in REGISTRY]


STATS_DESCRIPTION = (
    "Triton's statistics extension: counts and cumulative nanoseconds of the requests the data plane "
    "answered for the model, REST (`POST /loss/{name}`) and V2 infer alike. Per worker process: with "
    "LOSSD_WORKERS > 1 each worker reports what it answered itself."
)


@router.get("/models/stats", response_model=v2.ModelStatisticsResponse, description=STATS_DESCRIPTION)
async def all_model_statistics() -> Response:
    return JSONResponse(stats.model_stats([spec.name for spec in REGISTRY]))


@router.get(
    "/models/{name}/stats",
    response_model=v2.ModelStatisticsResponse,
    responses=RESPONSES,
    description=STATS_DESCRIPTION,
)
@router.get("/models/{name}/versions/1/stats", responses=RESPONSES, include_in_schema=False)
async def model_statistics(name: str) -> Response:
    return JSONResponse(stats.model_stats([model(name).name]))


@router.get("/models/{name}", responses=RESPONSES)
@router.get("/models/{name}/versions/1", responses=RESPONSES, include_in_schema=False)
async def model_metadata(name: str) -> Response:
    return JSONResponse(v2.model_metadata(model(name)))


@router.get("/models/{name}/ready", response_class=Response, responses={200: EMPTY, **RESPONSES})
@router.get("/models/{name}/versions/1/ready", responses=RESPONSES, include_in_schema=False)
async def model_ready(name: str) -> Response:
    model(name)
    return Response(status_code=200)


@router.get("/models/{name}/config", responses=RESPONSES)
@router.get("/models/{name}/versions/1/config", responses=RESPONSES, include_in_schema=False)
async def model_config(name: str) -> Response:
    return JSONResponse(v2.model_config(model(name)))
