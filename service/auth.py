"""API keys (LOSSD_API_KEYS): every request but health needs ``Authorization: Bearer <key>``."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import Kind, ServiceError
from service.problems import refuse

OPEN = frozenset({"/health"})
OPEN_PREFIX = "/v2/health/"
"""Health stays open: probes carry no credentials."""


def bearer_token(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" and token.strip() else None
    return None


def unauthorized(detail: str, challenge: str) -> ServiceError:
    return ServiceError(Kind.UNAUTHENTICATED, "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


def authorized(keys: Sequence[bytes], token: bytes) -> bool:
    # Every key is compared, each in constant time: neither the time nor the number of
    # comparisons tells which key, or how much of one, matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(token, key)
    return matched


def key_error(keys: Sequence[bytes], headers: Sequence[tuple[bytes, bytes]]) -> ServiceError | None:
    """Why a request with these headers (HTTP, or gRPC metadata) is refused; None: it is not."""
    token = bearer_token(headers)
    if token is None:
        return unauthorized("this server needs an API key: send 'Authorization: Bearer <key>'", "Bearer")
    if not authorized(keys, token):
        return unauthorized("the API key in the Authorization header is not valid", 'Bearer error="invalid_token"')
    return None


class BearerAuth:
    """ASGI middleware around the whole app, the compute fast path included; installed only
    when keys are configured, so a server without them pays nothing for it."""

    def __init__(self, app: ASGIApp, keys: Sequence[SecretStr]) -> None:
        self.app = app
        self.keys = [key.get_secret_value().encode() for key in keys]

    def authorized(self, token: bytes) -> bool:
        return authorized(self.keys, token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN or scope["path"].startswith(OPEN_PREFIX):
            await self.app(scope, receive, send)
            return
        error = key_error(self.keys, scope["headers"])
        if error is not None:
            await refuse(scope, send, error)
        else:
            await self.app(scope, receive, send)
