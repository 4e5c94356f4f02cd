"""``GET /losses/{name}/curve`` and ``/curve.svg``: a loss and its gradient along one variable."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from kernels.runtime import Runtime
from kernels.spec import LossSpec, NotConfigured, UnknownChoice
from service.errors import invalid, not_configured, not_found
from service.lookup import loss_named as lookup
from service.plot import curve_svg
from service.routes.registry import INVALID_QUERY, NOT_CONFIGURED, NOT_FOUND
from service.schemas import CurveResponse

router = APIRouter(tags=["registry"])
Points = Annotated[int, Query(ge=2, le=2001, description="Number of points along the variable.")]


def evaluate_curve(runtime: Runtime, spec: LossSpec, points: int) -> CurveResponse:
    curve = spec.curve
    if curve is None:
        raise not_found("No curve", f"{spec.name} declares no curve")
    x = curve.sample(points)
    params = spec.params(**curve.params)
    inputs, direction = curve.inputs(x), curve.direction(x)
    try:
        if spec.is_batch_level(params):  # each point of the curve is a batch of its own
            rows = [
                runtime.evaluate(spec, {k: v[i] for k, v in inputs.items()}, params, dtype="float64")
                for i in range(points)
            ]
            loss = np.array([float(r.loss) for r in rows])
            gradients = {name: np.stack([r.gradients[name] for r in rows]) for name in direction if rows[0].gradients}
        else:
            result = runtime.evaluate(spec, inputs, params, reduction="none", dtype="float64")
            loss, gradients = result.per_sample, result.gradients
    except NotConfigured as exc:
        raise not_configured(exc) from None
    except UnknownChoice as exc:
        raise invalid(f"params.{exc.param}", str(exc)) from None
    slope = None
    if spec.differentiable and direction and all(name in gradients for name in direction):  # a variant may have none
        slope = sum((gradients[name] * d).reshape(points, -1).sum(axis=1) for name, d in direction.items())
    return CurveResponse(
        name=spec.name,
        variable=curve.variable,
        params=params.model_dump(mode="json"),
        x=x.tolist(),
        loss=np.asarray(loss).tolist(),
        gradient=None if slope is None else np.asarray(slope).tolist(),
    )


CURVE_ERRORS = {**NOT_FOUND, **NOT_CONFIGURED, **INVALID_QUERY}


@router.get("/losses/{name}/curve", response_model=CurveResponse, responses=CURVE_ERRORS)
async def get_curve(request: Request, name: str, points: Points = 101) -> CurveResponse:
    """The loss of one sample and its derivative along a meaningful variable: the residual
    for regression, the predicted probability of the true class for classification."""
    return evaluate_curve(request.app.state.runtime, lookup(name), points)


@router.get(
    "/losses/{name}/curve.svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}, "description": "An SVG drawing."}, **CURVE_ERRORS},
)
async def get_curve_svg(request: Request, name: str, points: Points = 201) -> Response:
    """The curve drawn as SVG: the loss on top, its derivative below."""
    spec = lookup(name)
    curve = evaluate_curve(request.app.state.runtime, spec, points)
    return Response(curve_svg(curve, spec.card.title), media_type="image/svg+xml")
