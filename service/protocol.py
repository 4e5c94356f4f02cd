"""The HTTP/1.1 connection under the app: uvicorn's httptools protocol plus the limits only
a connection can enforce, because they apply before the app sees a request or while it
waits on the client.

- Headers: the request line and headers together stay under LOSSD_MAX_HEADER_BYTES (431).
  httptools has no limit, and it joins a header that arrives in pieces anew with every
  piece, which is quadratic: a 128 MiB header cost 14 s on the loop. Counting the bytes
  that arrive while the headers are incomplete stops it after one read past the limit.
- Time: a connection's first request's headers arrive within LOSSD_HEADER_TIMEOUT_SECONDS
  of its connecting, a later request's within as long of its first bytes, a body within
  LOSSD_BODY_TIMEOUT_SECONDS of its headers (408).
- Memory: the body bytes being received by one worker, all connections together, stay
  under a budget (LOSSD_RECEIVE_BUDGET_BYTES; 503 with Retry-After). A body announced
  larger than what is left is refused before it is sent; a connection that goes away
  returns its share at once.
- Connections: at most LOSSD_MAX_CONNECTIONS open per worker; one more is answered 503
  and closed.

Refusals are written here directly, in the app's error shapes (service.problems), with
``Connection: close``; they pass no middleware, so they carry no CORS headers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cache
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from kernels import memory
from service import limits
from service.errors import ServiceError
from service.problems import render


@dataclass
class Limits:
    """One worker's limits, and the bytes of bodies its connections are receiving."""

    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_body: int
    max_connections: int
    budget: int
    receiving: int = 0


@cache
def worker_limits() -> Limits:
    """Read once per worker process, from the environment as the app's settings are (uvicorn
    makes the protocol from a class name: it cannot be handed the app's Settings)."""
    from service.settings import Settings

    settings = Settings()
    return Limits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        max_body=settings.max_body_bytes,
        max_connections=settings.max_connections,
        budget=settings.receive_budget,
    )


TRIM_BYTES = 1 << 20
"""A dropped partial body this large has its memory handed back to the system, shortly
(kernels.memory.release_soon: the app lets go of the body once it has seen the disconnect).
A body arrives in 64 KiB pieces, below glibc's mmap threshold: freed, they stay in the heap
between long-lived objects, and a worker that held 256 MiB of partial uploads kept it."""


class Refused(Exception):
    """Raised in a parser callback to stop parsing; data_received answers ``error``."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(error.detail)
        self.error = error


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = worker_limits()
        self.in_headers = True
        """Between requests, or within a request's line and headers."""
        self.begun = False
        """A request's first byte has been parsed, its headers not yet all."""
        self.pending_bytes = 0
        """Bytes received while the headers were incomplete (whole reads)."""
        self.header_bytes = 0
        """The parsed headers' names and values."""
        self.declared: bytes | None = None
        self.received = 0
        """Body bytes of the request being received, counted in ``limits.receiving``."""
        self.header_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None

    # --- the connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.refuse(limits.too_many_connections(self.limits.max_connections))
            return
        self.header_timer = self.loop.call_later(self.limits.header_timeout, self.headers_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        self.drop()
        self.stop_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        counting = self.in_headers  # a read that began within a previous body is not counted
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            refused = exc.__context__
            if isinstance(refused, Refused):
                self.refuse(refused.error)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self.in_headers:
            if counting and self.begun:
                self.pending_bytes += len(data)
                if self.pending_bytes > self.limits.max_header_bytes:
                    self.refuse(limits.headers_too_large(self.limits.max_header_bytes))
                    return
            if self.begun and self.header_timer is None:
                # Armed by a read that leaves a later request's headers incomplete: a request
                # read at once pays nothing for it (an idle kept-alive connection is closed by
                # uvicorn's keep-alive timeout).
                self.header_timer = self.loop.call_later(self.limits.header_timeout, self.headers_overdue)
        elif self.body_timer is None and self.cycle is not None and self.cycle.more_body:
            # Armed after the first read of a body that did not arrive whole: a request
            # read at once pays nothing for it.
            self.body_timer = self.loop.call_later(self.limits.body_timeout, self.body_overdue)

    # --- parser callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.begun = True
        self.header_bytes = 0
        self.declared = None

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.header_bytes += len(name) + len(value)
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        elif name == b"content-length":
            self.declared = value
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_headers = self.begun = False
        self.pending_bytes = 0
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        lim = self.limits
        if self.header_bytes + len(self.url) > lim.max_header_bytes:
            raise Refused(limits.headers_too_large(lim.max_header_bytes))
        declared = self.declared
        if declared is not None and declared.isdigit():
            length = int(declared)
            # A body over LOSSD_MAX_BODY_BYTES is the app's to refuse (413), not the budget's.
            if lim.max_body >= length > lim.budget - lim.receiving:
                raise Refused(limits.receiving_busy(lim.budget))
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        size = len(body)
        self.received += size
        lim = self.limits
        lim.receiving += size
        if lim.receiving > lim.budget:
            raise Refused(limits.receiving_busy(lim.budget))
        super().on_body(body)

    def on_message_complete(self) -> None:
        self.release()
        self.in_headers = True
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        super().on_message_complete()

    # --- limits ------------------------------------------------------------------------------

    def release(self) -> None:
        """The request's body is complete, or dropped: its bytes leave the budget."""
        self.limits.receiving -= self.received
        self.received = 0

    def drop(self) -> None:
        """The request's partial body is dropped with its connection."""
        if self.received >= TRIM_BYTES:
            memory.release_soon()
        self.release()

    def stop_timers(self) -> None:
        for timer in (self.header_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.header_timer = self.body_timer = None

    def headers_overdue(self) -> None:
        self.header_timer = None
        if self.begun:
            self.refuse(limits.headers_timeout(self.limits.header_timeout))
        elif not self.transport.is_closing():  # idle: nothing to answer
            self.transport.close()

    def body_overdue(self) -> None:
        self.body_timer = None
        if self.cycle is not None and self.cycle.more_body:
            self.refuse(limits.body_timeout(self.limits.body_timeout))

    def refuse(self, error: ServiceError) -> None:
        """Answer ``error`` and close. A request the app is reading sees its client gone (its
        body is dropped with it); a response already begun is cut off instead."""
        self.drop()
        self.stop_timers()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
                return
        status, body, media_type = render(self.request_path(), error)
        headers = [
            *self.server_state.default_headers,
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
        ]
        content = [STATUS_LINE[status]]
        for name, value in headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"\r\n", body])
        self.transport.write(b"".join(content))
        self.transport.close()

    def request_path(self) -> str:
        """The path of the request being refused, when its line has been read: it picks the
        error's shape (``/v2`` or problem details)."""
        url: bytes = getattr(self, "url", b"")
        try:
            return bytes(httptools.parse_url(url).path or b"/").decode("latin-1")
        except httptools.HttpParserInvalidURLError:
            return "/"
