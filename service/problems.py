"""The REST edge of service.errors: RFC 9457 problem details, and the FastAPI handlers that
render every error (ours, FastAPI's validation, Starlette's HTTP errors) that way. Under
/v2 the same errors take the Open Inference Protocol's shape, ``{"error": ...}``."""

from __future__ import annotations

import logging
import sqlite3
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope, Send

from service.errors import Kind, ServiceError, from_validation_error
from service.monitors.faults import storage_error

log = logging.getLogger("lossd")

PROBLEM_JSON = "application/problem+json"
STATUS = {
    Kind.MALFORMED: 400,
    Kind.INVALID: 422,
    Kind.UNSUPPORTED: 415,
    Kind.NOT_FOUND: 404,
    Kind.CONFLICT: 409,
    Kind.NOT_CONFIGURED: 409,
    Kind.TOO_LARGE: 413,
    Kind.STORAGE_FULL: 507,
    Kind.HEADERS_TOO_LARGE: 431,
    Kind.TIMEOUT: 408,
    Kind.UNAVAILABLE: 503,
    Kind.NOT_IMPLEMENTED: 501,
    Kind.UNAUTHENTICATED: 401,
    Kind.INTERNAL: 500,
}
V2_STATUS = {**STATUS, Kind.INVALID: 400}
"""The Open Inference Protocol answers a bad request with 400, as Triton does."""


class Problem(BaseModel):
    """RFC 9457 problem details, plus the offending ``field`` where there is one."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


def is_v2(path: str) -> bool:
    return path.startswith("/v2/") or path == "/v2"


def problem_body(error: ServiceError) -> bytes:
    problem: dict[str, Any] = {
        "type": "about:blank",
        "title": error.title,
        "status": STATUS[error.kind],
        "detail": error.detail,
    }
    if error.field is not None:
        problem["field"] = error.field
    problem.update(error.extra)
    return orjson.dumps(problem)


def v2_body(error: ServiceError) -> bytes:
    return orjson.dumps({"error": error.detail})


def render(path: str, error: ServiceError) -> tuple[int, bytes, str]:
    """Status, body and media type of ``error`` for a request to ``path``."""
    if is_v2(path):
        return V2_STATUS[error.kind], v2_body(error), "application/json"
    return STATUS[error.kind], problem_body(error), PROBLEM_JSON


def response(path: str, error: ServiceError) -> Response:
    status, body, media_type = render(path, error)
    return Response(body, status_code=status, media_type=media_type, headers=error.headers or None)


def routing_error(path: str, exc: HTTPException) -> Response:
    """Starlette's own HTTP errors (404 for no route, 405), with their status, in our shape."""
    detail = str(exc.detail)
    if is_v2(path):
        body, media_type = orjson.dumps({"error": detail}), "application/json"
    else:
        problem = {"type": "about:blank", "title": status_title(exc.status_code), "status": exc.status_code}
        body, media_type = orjson.dumps({**problem, "detail": detail}), PROBLEM_JSON
    return Response(body, status_code=exc.status_code, media_type=media_type, headers=exc.headers)


def install(app: FastAPI, too_large: ServiceError, database_errors: tuple[type[Exception], ...]) -> None:
    """Render every error raised behind FastAPI's router; ``too_large`` replaces FastAPI's
    own 413, which names no limit; ``database_errors`` are the monitor store's."""

    async def service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        return response(request.url.path, exc)

    async def request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError | ValidationError)
        return response(request.url.path, from_validation_error(list(exc.errors())))

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 413:
            return response(request.url.path, too_large)
        return routing_error(request.url.path, exc)

    async def storage(request: Request, exc: Exception) -> Response:
        error = storage_error(exc)
        if error is None:  # a bug: still problem+json, and the connection stays usable
            log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
            error = ServiceError(Kind.INTERNAL, "Internal Server Error", "the server failed to answer this request")
        else:
            log.warning("%s %s: %s (%s)", request.method, request.url.path, error.detail, exc)
        return response(request.url.path, error)

    app.add_exception_handler(ServiceError, service_error)
    # Handled here, not by the Exception handler below: that one re-raises, for the server to log a traceback.
    failures: tuple[type[Exception], ...] = (sqlite3.Error, *database_errors, OSError)
    for failure in failures:
        app.add_exception_handler(failure, storage)
    app.add_exception_handler(Exception, storage)  # any other bug: a problem+json 500 too
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(HTTPException, http)


async def refuse(scope: Scope, send: Send, error: ServiceError) -> None:
    """Answer ``error`` directly, below FastAPI."""
    status, body, media_type = render(scope["path"], error)
    headers = [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media_type.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def status_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
