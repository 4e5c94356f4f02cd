"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from starlette.types import Receive, Scope, Send

from kernels import REGISTRY
from kernels.features import FEATURE_MODELS, load_feature_models
from kernels.runtime import Runtime
from kernels.spec import Resources
from service import __version__, errors, fastpath
from service.routes import compute, curves, health, metrics, registry, v2
from service.schemas import request_model
from service.settings import Settings

DESCRIPTION = (
    "Loss functions as a service: send batched predictions and targets, get back the loss, per-sample "
    "losses and gradients, computed by ONNX graphs on onnxruntime. Errors are RFC 9457 problem details."
)


class LossdApp(FastAPI):
    """FastAPI, except that the compute endpoints are answered first, without its
    routing and middleware (see service.fastpath); their FastAPI routes document them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_routes = fastpath.routes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self.fast_routes.get(scope["path"])
            if route is not None:
                await fastpath.answer(self.state, route, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def configured_resources(settings: Settings) -> Resources:
    """What the operator configured for losses that need it: the feature extractors of
    LOSSD_FEATURE_MODELS, loaded from their local files and checked."""
    return {FEATURE_MODELS: load_feature_models(settings.feature_models)}


def create_app(settings: Settings | None = None) -> LossdApp:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = Runtime(
            REGISTRY,
            settings.provider,
            settings.intra_op_threads,
            settings.model_repository,
            resources=configured_resources(settings),
        )
        yield

    # FastAPI's OpenTelemetry hooks cost microseconds per request; /metrics is ours.
    telemetry: Any = {"tracing": False, "metrics": False, "logs": False}
    app = LossdApp(title="lossd", version=__version__, description=DESCRIPTION, lifespan=lifespan, telemetry=telemetry)
    app.state.settings = settings
    errors.install(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(curves.router)
    app.include_router(registry.router)
    app.include_router(compute.router)
    app.include_router(v2.router)
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]
    return app


def openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the per-loss request models, which the compute routes
    reference but do not parse (they read the raw body once, with orjson), and the
    problem details the error responses reference (service.responses)."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, defs = models_json_schema(
            [*((request_model(spec), "validation") for spec in REGISTRY), (errors.Problem, "serialization")],
            ref_template="#/components/schemas/{model}",
        )
        document.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
        app.openapi_schema = document
    return app.openapi_schema
