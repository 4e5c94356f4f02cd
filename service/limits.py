"""The server's own limits: request body size (LOSSD_MAX_BODY_BYTES) and requests in flight
(LOSSD_MAX_CONCURRENCY). Both are Starlette HTTPExceptions: FastAPI's handler renders them,
and below FastAPI ``errors.refuse`` does. Behind FastAPI, its own ``max_body_size`` counts the
body as it streams in; the compute fast path, which bypasses it, counts in ``fastpath.read_body``."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import Scope

EXEMPT = frozenset({"/health", "/metrics", "/v2/health/live", "/v2/health/ready"})
"""Never refused for being busy: an orchestrator's probes must see a loaded server as alive."""
RETRY_AFTER = "1"
# The client is still sending a body nobody will read: closing the connection stops it.
CLOSE = {"Connection": "close"}


def too_large(limit: int) -> HTTPException:
    """A Starlette HTTPException, so that FastAPI's body parsing re-raises it as it is."""
    detail = f"the request body is larger than the limit of {limit} bytes (LOSSD_MAX_BODY_BYTES)"
    return HTTPException(413, detail, headers=CLOSE)


def busy(limit: int) -> HTTPException:
    detail = f"the server is at its limit of {limit} requests in flight (LOSSD_MAX_CONCURRENCY); retry shortly"
    return HTTPException(503, detail, headers={"Retry-After": RETRY_AFTER})


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
