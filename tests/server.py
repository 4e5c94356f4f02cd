"""A real ``lossd serve`` process on 127.0.0.1, for tests that need a real server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    pid: int = 0
    """The server's process, leader of its own process group (workers included)."""
    returncode: int | None = None
    """Set when the server has stopped."""
    process: subprocess.Popen[str] | None = None

    def wait(self, timeout: float) -> int:
        """Wait for the server to stop by itself (e.g. after a drain); its exit status."""
        assert self.process is not None
        self.returncode = self.process.wait(timeout=timeout)
        return self.returncode


@contextmanager
def running_server(
    env: dict[str, str] | None = None, timeout: float = 240.0, log: Path | None = None
) -> Iterator[Server]:
    """Start ``lossd serve``, wait for /health, yield it, stop it with SIGTERM. With ``log``,
    the server's output goes to that file (readable while it runs)."""
    port = free_port()
    # No drain unless a test asks for one: every test server stops at once on SIGTERM.
    defaults = {"LOSSD_PORT": str(port), "LOSSD_HOST": "127.0.0.1", "LOSSD_DRAIN_SECONDS": "0"}
    environment = {**os.environ, **defaults, **(env or {})}
    output = log.open("w") if log is not None else subprocess.PIPE
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve"],
        env=environment,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a test may kill -9 the whole group: the server and its workers
    )
    server = Server(f"http://127.0.0.1:{port}", process.pid, process=process)
    url = server.url
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                printed = log.read_text() if log is not None else process.stdout.read()  # type: ignore[union-attr]
                raise RuntimeError(f"lossd serve exited with {process.returncode}:\n{printed}")
            try:
                if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"lossd serve did not answer /health within {timeout} s")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:  # not after it stopped: a late SIGTERM could meet its interpreter's exit
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if log is not None:
            output.close()  # type: ignore[union-attr]
        server.returncode = process.returncode
