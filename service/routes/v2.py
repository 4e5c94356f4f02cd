"""The Open Inference Protocol (KServe V2 / Triton) endpoints; errors are ``{"error": ...}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from kernels import REGISTRY
from kernels.spec import LossSpec
from service import v2
from service.fastpath import v2_infer
from service.responses import v2_errors

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
RESPONSES = v2_errors({404: "No model of that name."})
INFER_ERRORS = v2_errors(
    {
        400: "An invalid request; the error says what is wrong.",
        404: "No model of that name.",
        409: "The loss needs something the operator has not configured.",
        413: "Too many elements.",
        415: "An unsupported Content-Encoding.",
    }
)
EMPTY = {"description": "Yes (an empty body)."}


def model(name: str) -> LossSpec:
    spec = REGISTRY.get(name)
    if spec is None or spec.name != name:
        canonical = {s.name for s in REGISTRY}
        matches = [m for m in REGISTRY.close_matches(name) if m in canonical]
        hint = f"; did you mean {', '.join(matches)}?" if matches else ""
        raise v2.V2Error(404, f"unknown model {name!r}{hint}")
    return spec


@router.get("")
async def server_metadata() -> dict[str, Any]:
    return v2.server_metadata()


@router.get("/health/live", response_class=Response, responses={200: EMPTY})
async def live() -> Response:
    return Response(status_code=200)


@router.get(
    "/health/ready",
    response_class=Response,
    responses={200: EMPTY, 503: {"description": "Not ready yet (an empty body)."}},
)
async def ready(request: Request) -> Response:
    return Response(status_code=200 if getattr(request.app.state, "runtime", None) else 503)


@router.post("/repository/index")
async def repository_index() -> list[dict[str, str]]:
    return [{"name": spec.name, "version": "1", "state": "READY"} for spec in REGISTRY]


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


# The route reads the raw body (JSON, or a JSON header plus binary tensors), so the request
# model is documented by reference; service.app.openapi adds it to the components.
INFER_REQUEST = {"$ref": "#/components/schemas/InferRequest"}


@router.post(
    "/models/{name}/infer",
    responses={
        200: {
            "model": v2.InferResponse,
            "description": "JSON, or with binary outputs a JSON header of Inference-Header-Content-Length "
            "bytes followed by the tensors.",
        },
        **INFER_ERRORS,
    },
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": INFER_REQUEST}}}},
)
async def infer(request: Request, name: str) -> Response:
    """Inputs are the loss's inputs (plus optional ``weights``); params and ``reduction``
    go in the request ``parameters``; outputs are ``loss``, ``per_sample`` and
    ``gradient_<input>``. The binary tensor data extension is supported both ways."""
    spec = model(name)
    status, body, headers = v2_infer(request.app.state, spec, request.scope, await request.body())
    return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers})
