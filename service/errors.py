"""One error shape for the REST endpoints: RFC 9457 problem details."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope, Send

from kernels.spec import NotConfigured
from service.limits import too_large

PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details, plus the offending ``field`` where there is one."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


class ProblemError(Exception):
    def __init__(self, status: int, title: str, detail: str, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.field, self.extra = status, title, detail, field, extra

    def body(self) -> bytes:
        problem: dict[str, Any] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.field is not None:
            problem["field"] = self.field
        problem.update(self.extra)
        return orjson.dumps(problem)

    def response(self) -> Response:
        return Response(self.body(), status_code=self.status, media_type=PROBLEM_JSON)


def invalid(field: str, detail: str) -> ProblemError:
    return ProblemError(422, "Invalid input", f"{field}: {detail}", field=field)


def not_configured(exc: NotConfigured) -> ProblemError:
    """409: the loss needs something the operator has not configured (no request can fix it)."""
    return ProblemError(409, "Loss not configured", str(exc), field=f"params.{exc.param}")


UNION_TAGS = frozenset({"float", "int", "str", "bool", "none"})
"""Bare type names pydantic uses as the tag of a union member in a location."""


def location(loc: tuple[int | str, ...], union_tags: bool = True) -> str:
    """A pydantic error location as a dotted path, e.g. ``params.gamma``. Field names are Python
    identifiers, so the tags pydantic adds for the member of a union that failed
    (``params.alpha.constrained-float``, ``params.pos_weight.list[float].1``) are dropped: the
    field is ``params.alpha``. Not for an unknown key (``union_tags=False``): that part is the
    client's own text."""
    parts = [
        str(part)
        for part in loc
        if part not in ("body", "query", "path")
        and not (union_tags and isinstance(part, str) and (part in UNION_TAGS or not part.isidentifier()))
    ]
    return ".".join(parts)


def from_validation_error(errors: list[Any]) -> ProblemError:
    fields = [location(tuple(e["loc"]), e.get("type") != "extra_forbidden") for e in errors]
    # A union reports one error per member, all at the same field: a constraint the value broke
    # (alpha >= 0) says more than "not a list" for the member whose type it does not have.
    alternatives = [i for i, f in enumerate(fields) if f == fields[0] or f.startswith(f"{fields[0]}.")]
    specific = [i for i in alternatives if not str(errors[i].get("type", "")).endswith(("_type", "_parsing"))]
    primary = specific[0] if specific else 0
    first, field = errors[primary], fields[primary]
    detail = f"{field}: {first['msg']}" if field else first["msg"]
    listed = [{"field": f, "message": e["msg"]} for f, e in zip(fields, errors, strict=True)]
    return ProblemError(422, "Invalid request", detail, field=field or None, errors=listed)


def install(app: FastAPI) -> None:
    async def problem(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return exc.response()

    async def request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError | ValidationError)
        return protocol_error(request, from_validation_error(list(exc.errors())))

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 413:  # Starlette's body limit (FastAPI's max_body_size) names no limit
            exc = too_large(request.app.max_body_size)
        problem = ProblemError(exc.status_code, status_title(exc.status_code), str(exc.detail))
        response = protocol_error(request, problem)
        response.headers.update(exc.headers or {})
        return response

    from service.v2 import V2Error  # imported here: the V2 codec imports this module

    async def protocol(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, V2Error)
        return Response(exc.body(), status_code=exc.status, media_type="application/json")

    app.add_exception_handler(V2Error, protocol)
    app.add_exception_handler(ProblemError, problem)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(HTTPException, http)


def protocol_error(request: Request, problem: ProblemError) -> Response:
    """Problem details, except under /v2, where the protocol's shape is ``{"error": ...}``."""
    body, media_type = render(request.url.path, problem)
    return Response(body, status_code=problem.status, media_type=media_type)


def render(path: str, problem: ProblemError) -> tuple[bytes, str]:
    """The body and media type of ``problem`` for a request to ``path`` (see protocol_error)."""
    if path.startswith("/v2/") or path == "/v2":
        return orjson.dumps({"error": problem.detail}), "application/json"
    return problem.body(), PROBLEM_JSON


async def refuse(scope: Scope, send: Send, error: HTTPException) -> None:
    """Answer ``error`` directly (problem details; ``{"error"}`` under /v2)."""
    problem = ProblemError(error.status_code, status_title(error.status_code), error.detail)
    body, media_type = render(scope["path"], problem)
    headers = [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", media_type.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def status_title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
