"""``POST /loss/{name}``: one route per loss, so each request model is documented."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response

from kernels import REGISTRY
from kernels.spec import LossSpec
from service.compute import compute
from service.responses import problems
from service.routes.registry import lookup
from service.schemas import LossResponse

router = APIRouter(tags=["compute"])
ERRORS = problems(
    {
        400: "Malformed JSON.",
        413: "Too many elements.",
        415: "The body is not sent as JSON.",
        422: "Invalid input; `field` names it.",
    }
)


def endpoint(spec: LossSpec) -> Callable[[Request], Awaitable[Response]]:
    async def compute_loss(request: Request) -> Response:
        state = request.app.state
        body = compute(state.runtime, spec, await request.body(), state.settings.max_elements)
        return Response(body, media_type="application/json")

    compute_loss.__doc__ = f"{spec.card.title}. {spec.card.summary}"
    return compute_loss


def request_body_ref(spec: LossSpec) -> dict[str, object]:
    from service.schemas import camel

    schema = {"$ref": f"#/components/schemas/{camel(spec.name)}Request"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


NOT_CONFIGURED = problems({409: "The loss needs something the operator has not configured."})

for _spec in REGISTRY:
    router.add_api_route(
        f"/loss/{_spec.name}",
        endpoint(_spec),
        methods=["POST"],
        name=f"compute_{_spec.name}",
        summary=_spec.card.title,
        response_model=LossResponse,
        responses={**ERRORS, **NOT_CONFIGURED} if _spec.configured else ERRORS,
        openapi_extra=request_body_ref(_spec),
    )
    for _alias in _spec.aliases:
        router.add_api_route(f"/loss/{_alias}", endpoint(_spec), methods=["POST"], include_in_schema=False)


@router.post("/loss/{name}", include_in_schema=False)
async def unknown_loss(name: str) -> Response:
    lookup(name)  # raises the 404 with close matches
    raise AssertionError("every known loss has its own route")
