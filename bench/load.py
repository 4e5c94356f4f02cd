"""Load generators for one HTTP endpoint: ``wrk`` when it is on PATH, else a built-in one.

Every run is bounded: a fixed duration, a timeout on top, and nothing but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import functools
import re
import shutil
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Protocol, cast


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    body: bytes
    content_type: str = "application/json"
    connections: int | None = None
    """Overrides the generator's connection count (e.g. more for several server workers)."""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    errors: int
    """Non-2xx responses plus socket errors and timeouts."""
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


class Generator(Protocol):
    @property
    def name(self) -> str: ...

    def run(self, target: Target, seconds: float) -> LoadResult: ...


LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = [==[{content_type}]==]
local f = assert(io.open([==[{body}]==], "rb"))
wrk.body = f:read("*a")
f:close()
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


class Wrk:
    """``wrk -t1``: one load thread, the other core serves."""

    def __init__(self, executable: str, connections: int, workdir: Path) -> None:
        self.executable, self.connections, self.workdir = executable, connections, workdir
        banner = subprocess.run([executable, "-v"], capture_output=True, text=True, timeout=10)
        found = re.search(r"wrk (\S+)", banner.stdout + banner.stderr)
        self.version = found.group(1) if found else "?"

    @property
    def name(self) -> str:
        return f"wrk {self.version} -t1 -c{self.connections}"

    def run(self, target: Target, seconds: float) -> LoadResult:
        body = self.workdir / "body.bin"
        body.write_bytes(target.body)
        script = self.workdir / "post.lua"
        script.write_text(LUA.format(content_type=target.content_type, body=body))
        url = f"http://{target.host}:{target.port}{target.path}"
        duration = f"{max(1, round(seconds))}s"  # wrk takes whole seconds
        connections = target.connections or self.connections
        argv = [self.executable, "-t1", f"-c{connections}", f"-d{duration}", "--timeout", "5s", "--latency"]
        done = subprocess.run([*argv, "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 60)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        return parse_wrk(done.stdout)


def _milliseconds(value: str, unit: str) -> float:
    return float(value) * UNITS[unit]


def parse_wrk(text: str) -> LoadResult:
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
    if total is None:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    requests, seconds = int(total.group(1)), _milliseconds(total.group(2), total.group(3)) / 1e3
    found = re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    percentiles = {p: _milliseconds(v, u) for p, v, u in found}
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if socket:
        errors += sum(int(g) for g in socket.groups())
    nan = float("nan")
    return LoadResult(requests, seconds, errors, percentiles.get("50", nan), percentiles.get("99", nan))


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending the same request again as each response completes."""

    def __init__(self, request: bytes, deadline: float, tally: _Tally, done: asyncio.Future[None]) -> None:
        self.request, self.deadline, self.tally, self.done = request, deadline, tally, done
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_at = perf_counter()
        self.transport.write(self.request)

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            found = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
            if found is None:  # the servers measured here always send a length
                self.tally.errors += 1
                self._finish()
                return
            size = end + 4 + int(found.group(1))
            if len(self.buffer) < size:
                return
            del self.buffer[:size]
            now = perf_counter()
            if not head.startswith((b"http/1.1 2", b"http/1.0 2")):
                self.tally.errors += 1
            self.tally.latencies.append(now - self.sent_at)
            if now >= self.deadline:
                self._finish()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.tally.errors += 1
            self.done.set_result(None)


class Builtin:
    """asyncio (uvloop when installed) connections speaking HTTP/1.1 keep-alive."""

    def __init__(self, connections: int) -> None:
        self.connections = connections

    @property
    def name(self) -> str:
        return f"built-in asyncio generator, {self.connections} connections"

    def run(self, target: Target, seconds: float) -> LoadResult:
        factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            pass
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(self._run(target, seconds))

    async def _run(self, target: Target, seconds: float) -> LoadResult:
        head = (
            f"POST {target.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
            f"Content-Type: {target.content_type}\r\nContent-Length: {len(target.body)}\r\n\r\n"
        )
        request = head.encode() + target.body
        loop = asyncio.get_running_loop()
        tally = _Tally()
        start = perf_counter()
        deadline = start + seconds
        futures: list[asyncio.Future[None]] = []
        transports: list[asyncio.BaseTransport] = []
        for _ in range(target.connections or self.connections):
            done: asyncio.Future[None] = loop.create_future()
            connection = functools.partial(_Connection, request, deadline, tally, done)
            transport, _ = await loop.create_connection(connection, target.host, target.port)
            futures.append(done)
            transports.append(transport)
        try:
            await asyncio.wait_for(asyncio.gather(*futures), timeout=seconds + 30)
        finally:
            for opened in transports:
                opened.close()
        elapsed = perf_counter() - start
        latencies = sorted(tally.latencies)
        if len(latencies) < 2:
            return LoadResult(len(latencies), elapsed, tally.errors, float("nan"), float("nan"))
        cuts = statistics.quantiles(latencies, n=100)
        return LoadResult(len(latencies), elapsed, tally.errors, cuts[49] * 1e3, cuts[98] * 1e3)


def generator(kind: str, connections: int, workdir: Path) -> Generator:
    """``kind``: auto (wrk if on PATH), wrk or builtin."""
    executable = shutil.which("wrk")
    if kind == "wrk" and executable is None:
        raise SystemExit("--generator wrk: wrk is not on PATH")
    if kind != "builtin" and executable is not None:
        return Wrk(executable, connections, workdir)
    return Builtin(connections)
