"""``POST /loss/composite``, documented here and answered by the fast path (service.fastpath)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from service.composite import compute_composite
from service.responses import problems
from service.schemas import LossResponse

router = APIRouter(tags=["compute"])


class TermValue(BaseModel):
    loss: str = Field(description="The term's loss (canonical name).")
    weight: float
    value: float | list[float] = Field(description="The term's own reduced loss (per-sample list for 'none').")


class CompositeResponse(LossResponse):
    terms: list[TermValue] = Field(description="Each term's own value, in request order.")


ERRORS = problems(
    {
        400: "Malformed JSON.",
        413: "Too many elements.",
        415: "The body is not sent as JSON.",
        422: "Invalid composition or input; `field` names it (e.g. terms[1].loss).",
    }
)


@router.post(
    "/loss/composite",
    response_model=CompositeResponse,
    responses=ERRORS,
    summary="Weighted sum of catalog losses",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CompositeRequest"}}},
        }
    },
)
async def composite_loss(request: Request) -> Response:
    """A weighted sum of catalog losses over shared inputs, computed as one graph (cached by the
    terms' structure). The response adds each term's own reduced value under ``terms``."""
    state = request.app.state
    body = compute_composite(state.runtime, await request.body(), state.settings.max_elements)
    return Response(body, media_type="application/json")
