"""The registry: ``GET /losses``, ``GET /losses/{name}``, ``GET /losses/{name}/onnx``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from kernels import REGISTRY
from kernels.graph import GraphKey
from kernels.spec import LossSpec, structural_key
from service.errors import Problem, ProblemError, from_validation_error
from service.schemas import DtypeName, LossFilter, LossList, card

router = APIRouter(tags=["registry"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No loss of that name; close matches are listed."}
}


def lookup(name: str) -> LossSpec:
    spec = REGISTRY.get(name)
    if spec is None:
        matches = REGISTRY.close_matches(name)
        hint = f"; did you mean {', '.join(matches)}?" if matches else "; GET /losses lists them all"
        raise ProblemError(404, "Unknown loss", f"no loss named {name!r}{hint}", field="name", matches=matches)
    return spec


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


@router.get("/losses", response_model=LossList)
async def list_losses(query: Annotated[LossFilter, Query()]) -> dict[str, Any]:  # type: ignore[valid-type]
    """Every loss's card, optionally filtered by task and boolean properties."""
    wanted = query.model_dump(exclude_none=True)  # type: ignore[attr-defined]
    cards = []
    for spec in REGISTRY:
        entry = card(spec)
        task = wanted.get("task")
        if task is not None and entry["task"] != task:
            continue
        if all(entry["properties"][k] == v for k, v in wanted.items() if k != "task"):
            cards.append(entry)
    return {"losses": cards}


@router.get("/losses/{name}", responses=NOT_FOUND)
async def get_loss(name: str) -> dict[str, Any]:
    """One loss's card; aliases resolve to the canonical loss."""
    return card(lookup(name))


@router.get(
    "/losses/{name}/onnx",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "An ONNX model."}, **NOT_FOUND},
)
async def get_onnx(request: Request, name: str, dtype: DtypeName = "float32", gradients: bool = True) -> Response:
    """The ONNX graph that computes the loss. Structural params (e.g. ``from_logits``)
    select a variant and may be given as query parameters."""
    spec = lookup(name)
    chosen = dict(spec.variants[0])
    for key, value in request.query_params.items():
        if key in ("dtype", "gradients"):
            continue
        if key not in chosen:
            detail = f"unknown query parameter {key!r}; this loss's graph variants are chosen by {list(chosen)}"
            raise ProblemError(422, "Invalid query", detail, field=key)
        parsed = parse_query_value(spec.params.model_fields[key].annotation, key, value)
        chosen[key] = structural_key(spec.params, key, parsed)
    graph = GraphKey(spec.name, tuple(chosen.items()), dtype, gradients)
    return Response(
        request.app.state.runtime.model_bytes(graph),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{graph.stem}.onnx"'},
    )
