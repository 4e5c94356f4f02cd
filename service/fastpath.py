"""The compute endpoints as bare ASGI handlers, answered before FastAPI's stack.

FastAPI's routing, request and response machinery costs about as much as the whole
computation of a small request (../shared/perf-notes.md), so ``POST /loss/{name}`` and
``POST /v2/models/{name}/infer`` are answered here: a dict lookup on the path, the raw
body, then ``service.compute`` or ``service.v2``. The FastAPI routes of the same paths
call the same functions; they document the requests in OpenAPI and serve any request
that reaches the router. Everything else passes through to FastAPI untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from kernels import REGISTRY
from kernels.spec import LossSpec
from service import limits, metrics, v2
from service.composite import compute_composite
from service.compute import compute
from service.errors import PROBLEM_JSON, ProblemError, refuse

log = logging.getLogger("lossd.fastpath")
JSON_TYPES = (b"application/json", b"application/problem+json")
Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, bytes, Headers]
Handler = Callable[[Any, Any, Scope, bytes], Reply]
"""(app state, the route's loss spec or None, scope, body) -> (status, body, headers)."""


JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
PROBLEM_HEADERS: Headers = [(b"content-type", PROBLEM_JSON.encode())]


def problem_reply(problem: ProblemError) -> Reply:
    return problem.status, problem.body(), PROBLEM_HEADERS


def internal_error(scope: Scope, detail: str) -> Reply:
    """A bug or a failed dependency, not a client error: logged with its traceback (call it in
    an ``except`` block), answered as a bare 500."""
    log.exception("%s %s failed", scope["method"], scope["path"])
    return problem_reply(ProblemError(500, "Internal Server Error", detail))


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


def rest_compute(state: Any, spec: LossSpec, scope: Scope, body: bytes) -> Reply:
    try:
        check_content_type(scope["headers"])
        return 200, compute(state.runtime, spec, body, state.settings.max_elements), JSON_HEADERS
    except ProblemError as problem:
        return problem_reply(problem)


def composite_compute(state: Any, _: None, scope: Scope, body: bytes) -> Reply:
    try:
        check_content_type(scope["headers"])
        return 200, compute_composite(state.runtime, body, state.settings.max_elements), JSON_HEADERS
    except ProblemError as problem:
        return problem_reply(problem)


def v2_infer(state: Any, spec: LossSpec, scope: Scope, body: bytes) -> Reply:
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    try:
        payload, response_headers = v2.infer(
            state.runtime, spec, body, headers, state.settings.max_elements, state.settings.max_body_bytes
        )
        return 200, payload, response_headers
    except v2.V2Error as error:
        return error.status, error.body(), JSON_HEADERS


Route = tuple[Handler, LossSpec | None, metrics.RouteMetrics]


def routes() -> dict[str, Route]:
    table: dict[str, Route] = {"/loss/composite": (composite_compute, None, metrics.RouteMetrics("composite", "rest"))}
    for spec in REGISTRY:
        rest, v2_metrics = metrics.RouteMetrics(spec.name, "rest"), metrics.RouteMetrics(spec.name, "v2")
        for name in (spec.name, *spec.aliases):
            table[f"/loss/{name}"] = (rest_compute, spec, rest)
        table[f"/v2/models/{spec.name}/infer"] = (v2_infer, spec, v2_metrics)
        table[f"/v2/models/{spec.name}/versions/1/infer"] = (v2_infer, spec, v2_metrics)
    return table


async def read_body(receive: Receive, scope: Scope, limit: int) -> bytes | None:
    """The whole body, or None when the client went away. Past ``limit`` bytes it raises
    ``limits.too_large``: on a Content-Length above it once the body comes in more than
    one chunk (a small body is one), and as chunks arrive."""
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise limits.too_large(limit)
        return body
    limits.check_declared(scope, limit)
    chunks, size = [body], len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise limits.too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def receive_body(scope: Scope, receive: Receive, send: Send, limit: int) -> bytes | None:
    """The body, or None when the request is over without one: the client went away, or the
    body passed ``limit`` and was refused (413)."""
    try:
        return await read_body(receive, scope, limit)
    except HTTPException as error:
        await refuse(scope, send, error)
        return None


async def respond(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def answer(state: Any, route: Route, scope: Scope, receive: Receive, send: Send, max_body: int) -> None:
    """Answer one compute request: read the body, run the handler, record metrics."""
    handler, spec, recorded = route
    body = await receive_body(scope, receive, send, max_body)
    if body is None:
        return
    start = time.perf_counter()
    metrics.IN_FLIGHT.inc()
    try:
        status, payload, headers = handler(state, spec, scope, body)
    except Exception:
        status, payload, headers = internal_error(scope, "the server failed to compute this request")
    finally:
        metrics.IN_FLIGHT.dec()
    recorded.record(status, time.perf_counter() - start, len(body))
    await respond(send, status, payload, headers)
