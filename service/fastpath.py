"""The compute endpoints as bare ASGI handlers in front of FastAPI.

FastAPI's routing, request and response machinery costs about as much as the whole
computation of a small request (../shared/perf-notes.md), so ``POST /loss/{name}`` and
``POST /v2/models/{name}/infer`` are answered here: a dict lookup on the path, the raw
body, then ``service.compute`` or ``service.v2``. The FastAPI routes of the same paths
call the same functions; they document the requests in OpenAPI and serve any request
that reaches the router. Everything else passes through to FastAPI untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from kernels import REGISTRY
from kernels.spec import LossSpec
from service import metrics, v2
from service.compute import compute
from service.errors import PROBLEM_JSON, ProblemError

JSON_TYPES = (b"application/json", b"application/problem+json")
Headers = list[tuple[bytes, bytes]]
Handler = Callable[[Any, LossSpec, Scope, bytes], tuple[int, bytes, Headers]]


def check_content_type(headers: Headers) -> None:
    for name, value in headers:
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            if media_type not in JSON_TYPES:
                raise ProblemError(
                    415,
                    "Unsupported media type",
                    f"send the request as JSON with 'Content-Type: application/json', not {media_type.decode()!r}",
                    field="content-type",
                )
            return


def rest_compute(state: Any, spec: LossSpec, scope: Scope, body: bytes) -> tuple[int, bytes, Headers]:
    try:
        check_content_type(scope["headers"])
        return (
            200,
            compute(state.runtime, spec, body, state.settings.max_elements),
            [(b"content-type", b"application/json")],
        )
    except ProblemError as problem:
        return problem.status, problem.body(), [(b"content-type", PROBLEM_JSON.encode())]


def v2_infer(state: Any, spec: LossSpec, scope: Scope, body: bytes) -> tuple[int, bytes, Headers]:
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    try:
        payload, response_headers = v2.infer(state.runtime, spec, body, headers, state.settings.max_elements)
        return 200, payload, response_headers
    except v2.V2Error as error:
        return error.status, error.body(), [(b"content-type", b"application/json")]


Route = tuple[Handler, str, LossSpec]
"""A handler, the protocol it speaks (a metrics label), the loss."""


def routes() -> dict[str, Route]:
    table: dict[str, Route] = {}
    for spec in REGISTRY:
        for name in (spec.name, *spec.aliases):
            table[f"/loss/{name}"] = (rest_compute, "rest", spec)
        table[f"/v2/models/{spec.name}/infer"] = (v2_infer, "v2", spec)
        table[f"/v2/models/{spec.name}/versions/1/infer"] = (v2_infer, "v2", spec)
    return table


async def read_body(receive: Receive) -> bytes | None:
    """The whole body, or None when the client went away."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def respond(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ComputeFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes = routes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        handler, protocol, spec = route
        body = await read_body(receive)
        if body is None:
            return
        start = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        try:
            status, payload, headers = handler(scope["app"].state, spec, scope, body)
        finally:
            metrics.IN_FLIGHT.dec()
        metrics.REQUEST_SECONDS.labels(spec.name, protocol).observe(time.perf_counter() - start)
        metrics.REQUESTS.labels(spec.name, protocol, str(status)).inc()
        metrics.REQUEST_BYTES.labels(protocol).observe(len(body))
        metrics.RESPONSE_BYTES.labels(protocol).observe(len(payload))
        await respond(send, status, payload, headers)
