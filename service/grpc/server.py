"""The gRPC server: grpcio's asyncio server on the app's own event loop (uvicorn's), started
and stopped by the app's lifespan, so every uvicorn worker serves gRPC as it serves HTTP.
Workers share the port through SO_REUSEPORT (the kernel spreads connections over them, as
it does uvicorn's). Limits as over HTTP: LOSSD_MAX_BODY_BYTES is the largest message
(larger: RESOURCE_EXHAUSTED), LOSSD_MAX_CONCURRENCY the calls in flight with HTTP's."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc

from service.grpc.health import Health
from service.grpc.inference import Host, InferenceService, handlers

log = logging.getLogger("lossd.grpc")
GRACE_SECONDS = 30.0
"""Calls in flight when the server stops get this long to finish (uvicorn's own graceful
shutdown timeout, service.cli)."""


@dataclass
class Running:
    server: Any
    health: Health
    port: int

    async def stop(self, grace: float = GRACE_SECONDS) -> None:
        """New calls are refused (UNAVAILABLE) at once; those in flight finish within ``grace``."""
        self.health.stopping.set()
        await self.server.stop(grace)


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start(host: Host) -> Running | None:
    """Serve on LOSSD_HOST:LOSSD_GRPC_PORT; None when the port is 0 (gRPC off). Called on
    the running event loop, after the app's state is set up."""
    settings = host.state.settings
    if settings.grpc_port == 0:
        return None
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.max_send_message_length", -1),
        ]
    )
    server.add_generic_rpc_handlers((handlers(InferenceService(host)),))
    health = Health(host.state)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port(address(settings.host, settings.grpc_port))
    await server.start()
    log.info("Open Inference Protocol over gRPC on %s", address(settings.host, port))
    return Running(server, health, port)
