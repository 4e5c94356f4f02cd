"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from kernels import REGISTRY
from kernels.features import FEATURE_MODELS, load_feature_models
from kernels.runtime import Runtime
from kernels.spec import Resources
from service import __version__, errors
from service.fastpath import ComputeFastPath
from service.routes import compute, health, registry
from service.schemas import request_model
from service.settings import Settings

DESCRIPTION = (
    "Loss functions as a service: send batched predictions and targets, get back the loss, per-sample "
    "losses and gradients, computed by ONNX graphs on onnxruntime. Errors are RFC 9457 problem details."
)


def configured_resources(settings: Settings) -> Resources:
    """What the operator configured for losses that need it: the feature extractors of
    LOSSD_FEATURE_MODELS, loaded from their local files and checked."""
    return {FEATURE_MODELS: load_feature_models(settings.feature_models)}


def create_app(settings: Settings | None = None) -> FastAPI:
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

    app = FastAPI(title="lossd", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    errors.install(app)
    app.include_router(health.router)
    app.include_router(registry.router)
    app.include_router(compute.router)
    app.add_middleware(ComputeFastPath)
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]
    return app


def openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the per-loss request models, which the compute routes
    reference but do not parse (they read the raw body once, with orjson)."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, defs = models_json_schema(
            [(request_model(spec), "validation") for spec in REGISTRY],
            ref_template="#/components/schemas/{model}",
        )
        document.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
        app.openapi_schema = document
    return app.openapi_schema
