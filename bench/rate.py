"""A fixed-rate (open-loop) load generator: request ``k`` is due at ``start + k / rate``.

Requests wait for a free keep-alive connection when all are busy; latency is counted from
when a request was due, so a server that falls behind shows it (no coordinated omission).
Each outcome is kept with its times, so a run can be cut into windows afterwards (before
and after a fault). Loopback only, bounded: a fixed number of requests, a timeout each.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

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


async def read_status(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 response with a Content-Length; its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next((int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"), None)
    if length is None:
        raise ValueError("a response without Content-Length")
    await reader.readexactly(length)
    return status


class Connection:
    """One keep-alive connection; reopened after a failure."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, payload: bytes, timeout: float) -> int:
        try:
            async with asyncio.timeout(timeout):
                if self.streams is None:
                    self.streams = await asyncio.open_connection(self.target.host, self.target.port)
                reader, writer = self.streams
                writer.write(payload)
                return await read_status(reader)
        except TimeoutError:
            self.close()
            return TIMEOUT
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()
            return ERROR

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


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
