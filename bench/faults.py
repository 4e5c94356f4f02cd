"""Faults against a running ``lossd serve``: SIGTERM during a large request, kill -9 of a worker.

Both are bounded in time and talk to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import numpy as np
import orjson

from bench.load import Target
from bench.process import HOST, ServerProcess
from bench.procfs import workers
from bench.rate import Outcome, Summary, run_fixed_rate, summarize

LARGE_ROWS, LARGE_COLUMNS = 10_000, 1_000
"""The large request: a 10M-element focal loss (predictions and targets, 80 MB as FP32)."""


def large_v2_request(port: int) -> tuple[bytes, bytes]:
    """The head (with ``Expect: 100-continue``) and body of a 10M-element V2 binary request."""
    rng = np.random.default_rng(0)
    shape = [LARGE_ROWS, LARGE_COLUMNS]
    predictions = rng.uniform(0.01, 0.99, shape).astype(np.float32).tobytes()
    targets = rng.integers(0, 2, shape).astype(np.float32).tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {"name": name, "shape": shape, "datatype": "FP32", "parameters": {"binary_data_size": len(blob)}}
                for name, blob in (("predictions", predictions), ("targets", targets))
            ],
            "outputs": [{"name": "loss"}],
        }
    )
    body = header + predictions + targets
    head = (
        f"POST /v2/models/focal/infer HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(header)}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    return head.encode(), body


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of the response on a ``Connection: close`` socket (read to EOF);
    status 0 when the server closed it without answering."""
    data = bytearray()
    while chunk := sock.recv(1 << 16):
        data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        return 0, body  # closed without an answer
    return int(head.split(b" ", 2)[1]), body


@dataclass(frozen=True)
class SigtermResult:
    status: int
    loss: float | None
    answered_after_signal_s: float
    exit_code: int | None
    exited_after_answer_s: float | None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.loss is not None and self.exit_code == 0


def sigterm_during_large_request(server: ServerProcess, timeout: float = 120.0) -> SigtermResult:
    """Send the head of a 10M-element request; once the app asks for the body (the server's
    ``100 Continue``), SIGTERM the server, then send the body: the request is in flight when
    the signal arrives. It must still be answered 200, then the process must exit."""
    assert server.process is not None
    head, body = large_v2_request(server.port)
    with socket.create_connection((HOST, server.port), timeout=timeout) as sock:
        sock.sendall(head)
        interim = sock.recv(64)
        if not interim.startswith(b"HTTP/1.1 100"):
            raise RuntimeError(f"expected 100 Continue, got {interim!r}")
        signalled = perf_counter()
        server.process.send_signal(signal.SIGTERM)
        try:
            sock.sendall(body)
            status, answer = read_response(sock)
        except OSError:  # the server dropped the request: reported as status 0
            status, answer = 0, b""
    answered = perf_counter()
    loss = None
    if status == 200:
        outputs = orjson.loads(answer)["outputs"]
        loss = float(next(o for o in outputs if o["name"] == "loss")["data"][0])
    try:
        exit_code: int | None = server.process.wait(timeout=60)
        exited: float | None = perf_counter() - answered
    except subprocess.TimeoutExpired:
        exit_code = exited = None
    return SigtermResult(status, loss, answered - signalled, exit_code, exited)


@dataclass(frozen=True)
class KillResult:
    before: Summary
    during: Summary
    after: Summary
    killed: int
    restarted: int | None
    """The new worker's pid, when uvicorn started one."""
    ready_after_s: float | None
    """Seconds from the kill until the new worker logged its startup complete."""
    exit_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.after.requests > 0 and self.after.errors == 0 and self.after.timeouts == 0


@dataclass
class RestartWatch:
    """Polls the server's workers and log after a kill until a replacement has started."""

    server: ServerProcess
    original: list[int]
    startups_before: int
    killed_at: float
    restarted: int | None = None
    ready_at: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, limit: float) -> None:
        deadline = self.killed_at + limit
        while not self.stop.is_set() and perf_counter() < deadline:
            current = workers(self.server.pid)
            new = [pid for pid in current if pid not in self.original]
            if new and self.restarted is None:
                self.restarted = new[0]
            if self.restarted is not None and startups(self.server.log) > self.startups_before:
                self.ready_at = perf_counter()
                return
            time.sleep(0.2)


def startups(log: Path) -> int:
    return log.read_text(errors="replace").count("Application startup complete")


def window(outcomes: list[Outcome], start: float, end: float) -> Summary:
    """The requests that finished in [start, end): a request in flight on the killed worker
    fails right after the kill, whenever it was due."""
    chosen = [o for o in outcomes if start <= o.finished < end]
    return summarize(chosen, end - start)


def kill_one_worker(
    server: ServerProcess, target: Target, rate: float, before: float, after: float, restart_limit: float = 120.0
) -> KillResult:
    """Load at ``rate`` for ``before + after`` seconds; kill -9 one of the workers at ``before``.
    Requests that finish within 1 s of the kill count as "during", later ones as "after"."""
    original = workers(server.pid)
    if len(original) < 2:
        raise RuntimeError(f"expected two uvicorn workers, found {original}")
    deadline = perf_counter() + restart_limit
    while startups(server.log) < len(original):  # every worker serving before the load starts
        if perf_counter() > deadline:
            raise RuntimeError(f"the workers did not all start within {restart_limit:.0f} s:\n{server.log_tail()}")
        time.sleep(0.2)
    outcomes: list[Outcome] = []
    loader = threading.Thread(
        target=lambda: outcomes.extend(run_fixed_rate(target, rate, before + after)), name="load", daemon=True
    )
    started = perf_counter()
    loader.start()
    time.sleep(before)
    killed_at = perf_counter()
    os.kill(original[0], signal.SIGKILL)
    watch = RestartWatch(server, original, startups(server.log), killed_at)
    watcher = threading.Thread(target=watch.run, args=(restart_limit,), name="restart-watch", daemon=True)
    watcher.start()
    loader.join(timeout=before + after + 120)
    watcher.join(timeout=restart_limit + 5)
    end = max((o.finished for o in outcomes), default=killed_at) + 1e-9
    return KillResult(
        before=window(outcomes, started, killed_at),
        during=window(outcomes, killed_at, killed_at + 1.0),
        after=window(outcomes, killed_at + 1.0, end),
        killed=original[0],
        restarted=watch.restarted,
        ready_after_s=None if watch.ready_at is None else watch.ready_at - killed_at,
    )
