"""The server's own limits: request body size (LOSSD_MAX_BODY_BYTES) and requests in flight
(LOSSD_MAX_CONCURRENCY), and the one place a body is read under the size limit. Behind
FastAPI, its own ``max_body_size`` counts the body as it streams in (service.problems
renders its 413 as ``too_large``)."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope

from service.errors import Kind, ServiceError
from service.errors import too_large as too_large_error

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXEMPT = frozenset({"/health", "/metrics", "/v2/health/live", "/v2/health/ready"})
"""Never refused for being busy: an orchestrator's probes must see a loaded server as alive."""
RETRY_AFTER = "1"
# The client is still sending a body nobody will read: closing the connection stops it.
CLOSE = {"Connection": "close"}


def too_large(limit: int) -> ServiceError:
    detail = f"the request body is larger than the limit of {limit} bytes (LOSSD_MAX_BODY_BYTES)"
    return ServiceError(Kind.TOO_LARGE, "Request Entity Too Large", detail, headers=CLOSE)


def busy(limit: int) -> ServiceError:
    detail = f"the server is at its limit of {limit} requests in flight (LOSSD_MAX_CONCURRENCY); retry shortly"
    return ServiceError(Kind.UNAVAILABLE, "Service Unavailable", detail, headers={"Retry-After": RETRY_AFTER})


def headers_too_large(limit: int) -> ServiceError:
    detail = f"the request line and headers are larger than the limit of {limit} bytes (LOSSD_MAX_HEADER_BYTES)"
    return ServiceError(Kind.HEADERS_TOO_LARGE, "Request Header Fields Too Large", detail)


def headers_timeout(seconds: float) -> ServiceError:
    detail = f"the request's headers did not arrive within {seconds:g} s (LOSSD_HEADER_TIMEOUT_SECONDS)"
    return ServiceError(Kind.TIMEOUT, "Request Timeout", detail)


def body_timeout(seconds: float) -> ServiceError:
    detail = f"the request body did not arrive within {seconds:g} s of its headers (LOSSD_BODY_TIMEOUT_SECONDS)"
    return ServiceError(Kind.TIMEOUT, "Request Timeout", detail)


def receiving_busy(budget: int) -> ServiceError:
    detail = (
        f"the request bodies being received would pass this server's limit of {budget} bytes "
        "(LOSSD_RECEIVE_BUDGET_BYTES); retry shortly"
    )
    return ServiceError(Kind.UNAVAILABLE, "Service Unavailable", detail, headers={"Retry-After": RETRY_AFTER})


def too_many_connections(limit: int) -> ServiceError:
    detail = f"the server has its limit of {limit} connections open (LOSSD_MAX_CONNECTIONS); retry shortly"
    return ServiceError(Kind.UNAVAILABLE, "Service Unavailable", detail, headers={"Retry-After": RETRY_AFTER})


def inflated_too_large(limit: int) -> ServiceError:
    """A compressed body that inflates past the limit (counted as it inflates)."""
    return too_large_error(f"the body inflates to more than the limit of {limit} bytes (LOSSD_MAX_BODY_BYTES)")


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, when it gives a valid one."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def check_declared(scope: Scope, limit: int) -> None:
    """Refuse a body announced as too large before reading any more of it."""
    length = declared_length(scope)
    if length is not None and length > limit:
        raise too_large(limit)


async def read_body(receive: Receive, scope: Scope, limit: int) -> bytes | None:
    """The whole body, or None when the client went away. Past ``limit`` bytes it raises
    ``too_large``: on a Content-Length above it before anything is read (so a client that
    sent ``Expect: 100-continue`` gets no "100 Continue"), and as chunks arrive."""
    check_declared(scope, limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise too_large(limit)
        return body
    chunks, size = [body], len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body``, read already, then waits on the client's as before
    (for its disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
