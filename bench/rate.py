"""A fixed-rate (open-loop) load generator: request ``k`` is due at ``start + k / rate``.

Requests wait for a free keep-alive connection when all are busy; latency is counted from
when a request was due, so a server that falls behind shows it (no coordinated omission).
Each outcome is kept with its times, so a run can be cut into windows afterwards (before
and after a fault). Loopback only, bounded: a fixed number of requests, a timeout each.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import cast

from bench.load import Target

ERROR, TIMEOUT = 0, -1
"""Statuses recorded for a request that got no HTTP response."""


@dataclass(frozen=True)
class Outcome:
    due: float
    """perf_counter() when the request was due."""
    finished: float
    status: int
    """The HTTP status, ERROR (connection failed or closed) or TIMEOUT."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Summary:
    requests: int
    errors: int
    """Non-2xx responses and connection errors."""
    timeouts: int
    seconds: float
    p50_ms: float
    p99_ms: float

    answered_in: float
    """From the first request due to the last answer: longer than ``seconds`` when the
    server (or this generator) fell behind the rate."""

    @property
    def rps(self) -> float:
        """Requests answered per second."""
        return self.requests / self.answered_in if self.answered_in > 0 else 0.0


def summarize(outcomes: list[Outcome], seconds: float) -> Summary:
    """``seconds``: the window the requests were due in."""
    latencies = sorted(o.finished - o.due for o in outcomes if o.ok)
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    return Summary(
        requests=len(outcomes),
        errors=sum(1 for o in outcomes if not o.ok and o.status != TIMEOUT),
        timeouts=sum(1 for o in outcomes if o.status == TIMEOUT),
        seconds=seconds,
        p50_ms=cuts[49] * 1e3,
        p99_ms=cuts[98] * 1e3,
        answered_in=max((o.finished for o in outcomes), default=0.0) - min((o.due for o in outcomes), default=0.0),
    )


HEAD_END = b"\r\n\r\n"
LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class _Client(asyncio.Protocol):
    """One keep-alive connection at the protocol level (cheaper than streams: the generator
    must keep up with the server on the same cores). One request at a time: ``answer`` is
    resolved with the next response's status, or ERROR when the connection fails."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answer: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(HEAD_END)
        if end < 0:
            return
        found = LENGTH.search(self.buffer, 0, end)
        if found is None:  # lossd always sends a length
            self._resolve(ERROR)
            return
        size = end + len(HEAD_END) + int(found.group(1))
        if len(self.buffer) < size:
            return
        status = int(self.buffer[9:12])  # b"HTTP/1.1 200 ..."
        del self.buffer[:size]
        self._resolve(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._resolve(ERROR)

    def _resolve(self, status: int) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(status)


class Connection:
    """One keep-alive connection to ``target``; reopened after a failure or a timeout."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.client: _Client | None = None

    async def request(self, payload: bytes, timeout: float) -> int:
        loop = asyncio.get_running_loop()
        client = self.client
        if client is None or client.transport is None:
            try:
                _, client = await asyncio.wait_for(
                    loop.create_connection(_Client, self.target.host, self.target.port), timeout
                )
            except TimeoutError:
                return TIMEOUT
            except OSError:
                return ERROR
            self.client = client
        assert client is not None and client.transport is not None
        answer: asyncio.Future[int] = loop.create_future()

        def expire() -> None:
            if not answer.done():
                answer.set_result(TIMEOUT)

        client.answer = answer
        client.buffer.clear()
        client.transport.write(payload)
        timer = loop.call_later(timeout, expire)
        status = await answer
        timer.cancel()
        if status in (ERROR, TIMEOUT):
            self.close()
        return status

    def close(self) -> None:
        if self.client is not None and self.client.transport is not None:
            self.client.transport.close()
        self.client = None


def request_bytes(target: Target) -> bytes:
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Content-Type: {target.content_type}\r\nContent-Length: {len(target.body)}\r\n\r\n"
    )
    return head.encode() + target.body


async def fixed_rate(
    target: Target, rate: float, seconds: float, connections: int = 32, timeout: float = 10.0
) -> list[Outcome]:
    """Send ``rate * seconds`` requests at ``rate`` per second; every outcome, in finishing order."""
    payload = request_bytes(target)
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    outcomes: list[Outcome] = []

    in_flight: set[float] = set()

    async def worker() -> None:
        connection = Connection(target)
        try:
            while (due := await queue.get()) is not None:
                in_flight.add(due)
                status = await connection.request(payload, timeout)
                in_flight.discard(due)
                outcomes.append(Outcome(due, perf_counter(), status))
        finally:
            connection.close()

    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    start = perf_counter()
    for k in range(round(rate * seconds)):
        due = start + k / rate
        delay = due - perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(due)
    for _ in tasks:
        queue.put_nowait(None)
    # Bounded: whatever is queued drains within the per-request timeout times the backlog per
    # connection; beyond that the server is not answering at all and the rest are timeouts.
    drain = timeout * (queue.qsize() / connections + 2)
    _, pending = await asyncio.wait(tasks, timeout=drain)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    now = perf_counter()
    unanswered = list(in_flight)
    while not queue.empty():
        if (queued := queue.get_nowait()) is not None:
            unanswered.append(queued)
    outcomes.extend(Outcome(due, now, TIMEOUT) for due in unanswered)
    return outcomes


def run_fixed_rate(
    target: Target, rate: float, seconds: float, connections: int = 32, timeout: float = 10.0
) -> list[Outcome]:
    """``fixed_rate`` on its own event loop (uvloop when installed)."""
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(fixed_rate(target, rate, seconds, connections, timeout))
