"""``POST /loss/{name}`` as a bare ASGI handler in front of FastAPI.

FastAPI's routing, request and response machinery costs about as much as the whole
computation of a small request (../shared/perf-notes.md), so compute requests are
answered here: a dict lookup on the path, the raw body, ``service.compute.compute``.
The FastAPI routes of the same paths call the same function; they document the
requests in OpenAPI and serve any request that reaches the router. Everything else
passes through to FastAPI untouched.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from kernels import REGISTRY
from kernels.spec import LossSpec
from service.compute import compute
from service.errors import PROBLEM_JSON, ProblemError

JSON_TYPES = (b"application/json", b"application/problem+json")


def compute_paths() -> dict[str, LossSpec]:
    return {f"/loss/{name}": spec for spec in REGISTRY for name in (spec.name, *spec.aliases)}


def check_content_type(headers: list[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            if media_type not in JSON_TYPES:
                raise ProblemError(
                    415, "Unsupported media type",
                    f"send the request as JSON with 'Content-Type: application/json', not {media_type.decode()!r}",
                    field="content-type",
                )  # fmt: skip
            return


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def respond(send: Send, status: int, body: bytes, media_type: bytes) -> None:
    headers = [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ComputeFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.paths = compute_paths()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        spec = self.paths.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if spec is None:
            await self.app(scope, receive, send)
            return
        state: Any = scope["app"].state
        try:
            check_content_type(scope["headers"])
            body = compute(state.runtime, spec, await read_body(receive), state.settings.max_elements)
        except ProblemError as problem:
            await respond(send, problem.status, problem.body(), PROBLEM_JSON.encode())
        except ConnectionAbortedError:
            return
        else:
            await respond(send, 200, body, b"application/json")
