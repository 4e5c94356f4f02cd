"""The gRPC edge of service.errors: each kind's status code, in one table (as
service.problems maps kinds to HTTP statuses). The message is the error's detail, which
names the input or parameter at fault."""

from __future__ import annotations

import grpc

from service.errors import Kind, ServiceError
from service.problems import V2_STATUS

CODES: dict[Kind, grpc.StatusCode] = {
    Kind.MALFORMED: grpc.StatusCode.INVALID_ARGUMENT,
    Kind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Kind.UNSUPPORTED: grpc.StatusCode.INVALID_ARGUMENT,
    Kind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Kind.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    Kind.NOT_CONFIGURED: grpc.StatusCode.FAILED_PRECONDITION,
    Kind.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Kind.STORAGE_FULL: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Kind.HEADERS_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Kind.TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    Kind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Kind.NOT_IMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    Kind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Kind.INTERNAL: grpc.StatusCode.INTERNAL,
}


def code(error: ServiceError) -> grpc.StatusCode:
    return CODES[error.kind]


def http_status(error: ServiceError | None) -> int:
    """The status label of lossd_requests for a gRPC call: the HTTP status the V2 HTTP edge
    answers for the same outcome, so one query (say, 5xx per loss) covers every protocol."""
    return 200 if error is None else V2_STATUS[error.kind]
