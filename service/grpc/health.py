"""gRPC health checking (``grpc.health.v1.Health``) for orchestrators (Kubernetes' grpc
probes, grpc_health_probe): SERVING exactly when ``GET /v2/health/ready`` is 200, for the
server as a whole ("") and for ``inference.GRPCInferenceService``. Open without an API key,
as HTTP's health is."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service import lifecycle
from service.grpc.inference import SERVICE

SERVICES = frozenset({"", SERVICE})
WATCH_SECONDS = 1.0
"""How often a Watch stream looks at readiness again (it sends only changes)."""


class Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self, state: Any) -> None:
        self.state = state
        self.stopping = asyncio.Event()
        """Set when the server stops: Watch streams end, so the stop waits for no stream."""

    async def status(self, service: str, context: Any) -> Any:
        if service not in SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}; known: '', {SERVICE}")
        serving = await lifecycle.ready(self.state)
        return health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING

    async def Check(self, request: Any, context: Any) -> Any:
        return health_pb2.HealthCheckResponse(status=await self.status(request.service, context))

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        last = None
        while not self.stopping.is_set():
            current = await self.status(request.service, context)
            if current != last:
                yield health_pb2.HealthCheckResponse(status=current)
                last = current
            with contextlib.suppress(TimeoutError):  # a second passed: look again
                await asyncio.wait_for(self.stopping.wait(), WATCH_SECONDS)
