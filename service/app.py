"""The FastAPI application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from kernels import REGISTRY, memory
from kernels.cache import GraphCache
from kernels.features import FEATURE_MODELS, load_feature_models
from kernels.runtime import Runtime
from kernels.spec import Resources
from service import __version__, docs, limits, problems, routing, tracing
from service.auth import BearerAuth
from service.composite import CompositeRequest, CompositeResponse, register_configured
from service.errors import ServiceError
from service.lifecycle import Drain
from service.monitors.schemas import Accepted, LabelsMatched, LabelsRequest, PredictionsAccepted, PredictionsRequest
from service.monitors.store import database_errors, open_store
from service.routes import curves, health, metrics, monitors, registry, v2
from service.schemas import LossResponse, request_model
from service.settings import Settings
from service.v2 import InferRequest, InferResponse

DESCRIPTION = (
    "Loss functions as a service: send batched predictions and targets, get back the loss, per-sample "
    "losses and gradients, computed by ONNX graphs on onnxruntime. Errors are RFC 9457 problem details."
)


class LossdApp(FastAPI):
    """FastAPI, except that the data plane's routes (service.routing) are answered first,
    without its routing and middleware. The limits of service.limits apply to every
    request, resolved once here."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.routes_table = routing.build(REGISTRY)
        self.max_body = settings.max_body_bytes
        self.max_concurrency = settings.max_concurrency
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await super().__call__(scope, receive, send)
            return
        route = self.routes_table.match(scope["path"])
        if route is not None:
            await routing.answer(self.state, route, scope, receive, send, self.max_body, slots=self)
            return
        exempt = scope["path"] in limits.EXEMPT
        try:  # FastAPI's max_body_size counts what streams in; an announced length is refused here
            limits.check_declared(scope, self.max_body)
            if not exempt and scope["method"] in limits.BODY_METHODS:
                # The body first, then a slot: a slow upload holds none (service.protocol bounds it).
                body = await limits.read_body(receive, scope, self.max_body)
                if body is None:  # the client went away
                    return
                receive = limits.replay(body, receive)
        except ServiceError as error:
            await problems.refuse(scope, send, error)
            return
        if exempt:  # probes take no slot: a readiness probe must not count itself
            await super().__call__(scope, receive, send)
            return
        if self.saturated():
            await problems.refuse(scope, send, limits.busy(self.max_concurrency))
            return
        self.in_flight += 1
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.in_flight -= 1

    def saturated(self) -> bool:
        """Every slot is taken (HTTP and gRPC requests together): readiness answers 503."""
        return self.in_flight >= self.max_concurrency


class GuardedApp(LossdApp):
    """LossdApp behind what the operator configured around all of it, the fast path
    included: API keys (LOSSD_API_KEYS) and CORS (LOSSD_CORS_ORIGINS). A class of its own
    so that a server without them pays nothing for them per request."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        outer: ASGIApp = super().__call__
        if settings.api_keys:
            outer = BearerAuth(outer, settings.api_keys)
        if settings.cors_origins:  # outermost: preflights carry no credentials, refusals need the headers too
            outer = CORSMiddleware(
                outer,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "Content-Encoding", "Inference-Header-Content-Length"],
                expose_headers=["Inference-Header-Content-Length", "Retry-After", "WWW-Authenticate"],
            )
        self.outer = outer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.outer(scope, receive, send)


def configured_resources(settings: Settings) -> Resources:
    """What the operator configured for losses that need it: the feature extractors of
    LOSSD_FEATURE_MODELS, loaded from their local files and checked."""
    return {FEATURE_MODELS: load_feature_models(settings.feature_models)}


def create_app(settings: Settings | None = None) -> LossdApp:
    settings = settings or Settings()
    register_configured(settings.composites)  # before the route table is derived from the registry

    @asynccontextmanager
    async def lifespan(app: LossdApp) -> AsyncIterator[None]:
        app.state.runtime = Runtime(
            REGISTRY,
            settings.provider,
            settings.intra_op_threads,
            settings.model_repository,
            resources=configured_resources(settings),
            cache=GraphCache(settings.graph_cache) if settings.graph_cache else None,
        )
        app.state.monitors = open_store(settings.database_url, settings.data_dir)
        app.state.drain.install()
        if tracing.wanted(settings):
            tracing.start(settings)
        app.state.compute_threads = routing.compute_threads()
        # Start-up leaves a large heap of long-lived objects (sessions, specs, schemas). A JSON
        # body of a million numbers allocates ~100k lists, which triggers full collections;
        # frozen, the heap is not walked by them (1M-element JSON: ~1.3x -> see bench).
        gc.collect()
        gc.freeze()
        memory.release()  # what start-up freed, which the trim threshold (service.cli) would keep
        grpc_server = None
        if settings.grpc_port:  # imported only then: an app without gRPC loads none of it
            from service.grpc import server as grpc_edge

            grpc_server = await grpc_edge.start(app)
        try:
            yield
        finally:
            if grpc_server is not None:  # uvicorn has stopped HTTP: the drain is over
                await grpc_server.stop()
            app.state.monitors.close()
            tracing.stop()

    # FastAPI's OpenTelemetry hooks cost microseconds per request; /metrics is ours.
    telemetry: Any = {"tracing": False, "metrics": False, "logs": False}
    app_class = GuardedApp if settings.api_keys or settings.cors_origins else LossdApp
    app = app_class(
        settings,
        title="lossd",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry=telemetry,
        docs_url=None,
        redoc_url=None,
        max_body_size=settings.max_body_bytes,
    )
    app.state.settings = settings
    app.state.drain = Drain(settings.drain_seconds)
    app.state.saturated = app.saturated
    problems.install(app, limits.too_large(settings.max_body_bytes), database_errors(settings.database_url))
    if settings.docs:
        docs.install(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(curves.router)
    app.include_router(registry.router)
    app.include_router(v2.router)
    app.include_router(monitors.router)
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]
    return app


def openapi(app: LossdApp) -> dict[str, Any]:
    """FastAPI's document of its routes, plus the data plane's routes from the route table,
    the models they reference (they read the raw body once, with orjson) and the problem
    details the error responses reference (service.responses)."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        document["paths"] = dict(sorted({**document["paths"], **app.routes_table.paths}.items()))
        _, defs = models_json_schema(
            [
                *((request_model(spec), "validation") for spec in REGISTRY),
                (InferRequest, "validation"),
                (CompositeRequest, "validation"),
                (LossResponse, "serialization"),
                (CompositeResponse, "serialization"),
                (InferResponse, "serialization"),
                (Accepted, "serialization"),
                (PredictionsRequest, "validation"),
                (LabelsRequest, "validation"),
                (PredictionsAccepted, "serialization"),
                (LabelsMatched, "serialization"),
                (problems.Problem, "serialization"),
            ],
            ref_template="#/components/schemas/{model}",
        )
        document.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
        app.openapi_schema = document
    return app.openapi_schema
