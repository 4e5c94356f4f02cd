"""What can go wrong with a request, independent of the protocol that carried it.

Decoding, evaluation and monitors raise these; each protocol edge maps them once: REST to
problem details (service.problems), the Open Inference Protocol to ``{"error": ...}``
(service.v2). Nothing here knows an HTTP status.
"""

from __future__ import annotations

import enum
from collections.abc import Container, Iterable
from typing import Any

from kernels.spec import InvalidInput, NotConfigured


class Kind(enum.Enum):
    MALFORMED = "malformed"
    """The body cannot be parsed at all (not JSON, not valid gzip)."""
    INVALID = "invalid"
    """Well-formed, but a field's value is wrong."""
    UNSUPPORTED = "unsupported"
    """A media type or content encoding the server does not speak."""
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    NOT_CONFIGURED = "not_configured"
    """The request needs something only the operator can configure."""
    TOO_LARGE = "too_large"
    STORAGE_FULL = "storage_full"
    """The server's storage is full: nothing of the request was recorded."""
    HEADERS_TOO_LARGE = "headers_too_large"
    TIMEOUT = "timeout"
    """The client took too long to send its request."""
    UNAVAILABLE = "unavailable"
    NOT_IMPLEMENTED = "not_implemented"
    """An optional part of the server is not installed."""
    UNAUTHENTICATED = "unauthenticated"
    INTERNAL = "internal"


class ServiceError(Exception):
    """One error: its kind, a short title, a detail that says what to change, and the
    request ``field`` it is about where there is one. ``extra`` members are added to the
    problem details (e.g. ``matches`` for an unknown name); ``headers`` go on the response."""

    def __init__(
        self,
        kind: Kind,
        title: str,
        detail: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.kind, self.title, self.detail, self.field = kind, title, detail, field
        self.headers = headers or {}
        self.extra = extra

    def renamed(self, field: str) -> ServiceError:
        """The same error about another field (a term's input seen as its request field)."""
        detail = self.detail.removeprefix(f"{self.field}: ") if self.field else self.detail
        return ServiceError(self.kind, self.title, f"{field}: {detail}", field)


def invalid(field: str, detail: str, title: str = "Invalid input") -> ServiceError:
    return ServiceError(Kind.INVALID, title, f"{field}: {detail}", field=field)


def from_kernel(exc: InvalidInput) -> ServiceError:
    """A loss's own check (kernels.spec.InvalidInput) as the service's error."""
    return invalid(exc.field, exc.detail)


def invalid_request(detail: str, field: str | None = None, **extra: Any) -> ServiceError:
    """The request as a whole is wrong (its envelope, an unknown field)."""
    return ServiceError(Kind.INVALID, "Invalid request", detail, field=field, **extra)


def malformed(detail: str, title: str = "Malformed JSON") -> ServiceError:
    return ServiceError(Kind.MALFORMED, title, detail)


def unsupported(detail: str, field: str | None = None) -> ServiceError:
    return ServiceError(Kind.UNSUPPORTED, "Unsupported media type", detail, field=field)


def too_large(detail: str, field: str | None = None, headers: dict[str, str] | None = None) -> ServiceError:
    return ServiceError(Kind.TOO_LARGE, "Payload too large", detail, field=field, headers=headers)


def too_many_elements(limit: int, field: str) -> ServiceError:
    return too_large(f"the request carries more than LOSSD_MAX_ELEMENTS = {limit} array elements", field)


def not_configured(exc: NotConfigured) -> ServiceError:
    """The loss needs something the operator has not configured (no request can fix it)."""
    return ServiceError(Kind.NOT_CONFIGURED, "Loss not configured", str(exc), field=f"params.{exc.param}")


def not_found(title: str, detail: str, field: str = "name", **extra: Any) -> ServiceError:
    return ServiceError(Kind.NOT_FOUND, title, detail, field=field, **extra)


def conflict(title: str, detail: str, field: str | None = None) -> ServiceError:
    return ServiceError(Kind.CONFLICT, title, detail, field=field)


def close_match_hint(matches: list[str], otherwise: str = "") -> str:
    """ "; did you mean a, b?" for an unknown name, else ``otherwise``."""
    return f"; did you mean {', '.join(matches)}?" if matches else otherwise


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


LISTED = 20
"""An error lists at most this many problems (``error_count`` then says how many there were):
its answer stays small whatever the request (3M unknown params made a 212 MB 422)."""
EXTRA = "Extra inputs are not permitted"
"""pydantic's message for an unknown key, which extra_keys gives without pydantic."""


def extra_keys(given: Iterable[str], known: Container[str], prefix: str = "") -> ServiceError | None:
    """Keys of ``given`` not in ``known``, as pydantic's validation error would give them (an
    unknown key is the request's own text), but found in one pass and listed up to LISTED:
    pydantic makes an error object per key (10 us each, 30 s for 3M)."""
    unknown = [key for key in given if key not in known]
    if not unknown:
        return None
    fields = [f"{prefix}{key}" for key in unknown]
    listed = [{"field": field, "message": EXTRA} for field in fields[:LISTED]]
    counted = {"error_count": len(fields)} if len(fields) > LISTED else {}
    return invalid_request(f"{fields[0]}: {EXTRA}", field=fields[0], errors=listed, **counted)


def from_validation_error(errors: list[Any]) -> ServiceError:
    """pydantic's errors as one: the most specific error of the first field, and the first
    LISTED of them listed (with ``error_count`` when there are more)."""
    fields = [location(tuple(e["loc"]), e.get("type") != "extra_forbidden") for e in errors]
    # A union reports one error per member, all at the same field: a constraint the value broke
    # (alpha >= 0) says more than "not a list" for the member whose type it does not have.
    alternatives = [i for i, f in enumerate(fields) if f == fields[0] or f.startswith(f"{fields[0]}.")]
    specific = [i for i in alternatives if not str(errors[i].get("type", "")).endswith(("_type", "_parsing"))]
    primary = specific[0] if specific else 0
    first, field = errors[primary], fields[primary]
    detail = f"{field}: {first['msg']}" if field else first["msg"]
    listed = [{"field": f, "message": e["msg"]} for f, e in zip(fields[:LISTED], errors, strict=False)]
    counted = {"error_count": len(errors)} if len(errors) > LISTED else {}
    return invalid_request(detail, field=field or None, errors=listed, **counted)
