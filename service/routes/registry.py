"""The registry: ``GET /losses``, ``GET /losses/{name}``, ``GET /losses/{name}/onnx``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from kernels import REGISTRY, recommend
from kernels.graph import GraphKey
from kernels.spec import LossSpec, NotConfigured, UnknownChoice, structural_key
from service.errors import Kind, ServiceError, from_validation_error, invalid, not_configured
from service.lookup import loss_named as lookup
from service.responses import problems
from service.schemas import DtypeName, LossCard, LossFilter, LossList, Recommendations, RecommendQuery, card

router = APIRouter(tags=["registry"])
NOT_FOUND = problems({404: "No loss of that name; close matches are listed."})
INVALID_QUERY = problems({422: "An invalid query parameter; `field` names it."})
NOT_CONFIGURED = problems({409: "The loss needs something the operator has not configured."})


def card_here(request: Request, spec: LossSpec) -> dict[str, Any]:
    """The card as this server has it configured (e.g. which feature models it lists)."""
    runtime = request.app.state.runtime
    if not spec.configured:
        return card(spec)
    return card(spec, runtime.choices(spec), runtime.gradients(spec), runtime.no_gradients(spec))


def parse_query_value(annotation: Any, key: str, value: str) -> Any:
    """A structural param from the query string: "true" for a bool, "a" for Literal["a", ...],
    and "2" for a numeric choice Literal[1, 2] (a query value is a string: read it as JSON)."""
    adapter = TypeAdapter[Any](annotation)
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        try:
            return adapter.validate_json(value)
        except ValidationError:
            raise from_validation_error([{**e, "loc": (key,)} for e in exc.errors()]) from None


@router.get("/losses", response_model=LossList, responses=INVALID_QUERY)
async def list_losses(request: Request, query: Annotated[LossFilter, Query()]) -> dict[str, Any]:  # type: ignore[valid-type]
    """Every loss's card, optionally filtered by task and boolean properties."""
    wanted = query.model_dump(exclude_none=True)  # type: ignore[attr-defined]
    cards = []
    for spec in REGISTRY:
        entry = card_here(request, spec)
        task = wanted.get("task")
        if task is not None and entry["task"] != task:
            continue
        if all(entry["properties"][k] == v for k, v in wanted.items() if k != "task"):
            cards.append(entry)
    return {"losses": cards}


@router.get("/losses/recommend", response_model=Recommendations, responses=INVALID_QUERY)
async def recommend_losses(query: Annotated[RecommendQuery, Query()]) -> Recommendations:
    """Losses ranked for a task, with the reason for each choice: outliers lead to MAE or
    Huber, Gaussian noise to MSE, imbalance to focal or weighted cross-entropy,
    embeddings to contrastive or triplet, masks to Dice, IoU or Tversky, unaligned
    sequences to CTC."""
    normalised = recommend.Query(**query.model_dump()).normalised()
    chosen = recommend.recommend(normalised)
    ranked = [
        {"rank": rank, "name": r.name, "title": card(lookup(r.name))["title"], "reason": r.reason, "params": r.params}
        for rank, r in enumerate(chosen, start=1)
    ]
    understood = RecommendQuery(
        task=normalised.task, outliers=normalised.outliers, imbalanced=normalised.imbalanced, output=normalised.output
    )
    return Recommendations.model_validate({"query": understood, "recommendations": ranked})


@router.get("/losses/{name}", response_model=None, responses={200: {"model": LossCard}, **NOT_FOUND})
async def get_loss(request: Request, name: str) -> dict[str, Any]:
    """One loss's card; aliases resolve to the canonical loss."""
    return card_here(request, lookup(name))


@router.get(
    "/losses/{name}/onnx",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "An ONNX model."},
        **NOT_CONFIGURED,
        **NOT_FOUND,
        **INVALID_QUERY,
    },
)
async def get_onnx(request: Request, name: str, dtype: DtypeName = "float32", gradients: bool = True) -> Response:
    """The ONNX graph that computes the loss. Structural params (e.g. ``from_logits``)
    select a variant and may be given as query parameters."""
    spec = lookup(name)
    runtime = request.app.state.runtime
    try:
        chosen = dict(runtime.variants(spec)[0])
    except NotConfigured as exc:
        raise not_configured(exc) from None
    for key, value in request.query_params.items():
        if key in ("dtype", "gradients"):
            continue
        if key not in chosen:
            detail = f"unknown query parameter {key!r}; this loss's graph variants are chosen by {list(chosen)}"
            raise ServiceError(Kind.INVALID, "Invalid query", detail, field=key)
        parsed = parse_query_value(spec.params.model_fields[key].annotation, key, value)
        if key in spec.configured:
            try:
                chosen[key] = spec.resolve(key, parsed, runtime.resources)
            except UnknownChoice as exc:
                raise invalid(key, str(exc)) from None
        else:
            chosen[key] = structural_key(spec.params, key, parsed)
    variant = tuple(chosen.items())
    differentiable = spec.differentiable_for(variant, runtime.resources)
    graph = GraphKey(spec.name, variant, dtype, gradients and bool(differentiable))
    return Response(
        runtime.model_bytes(graph),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{graph.stem}.onnx"'},
    )
