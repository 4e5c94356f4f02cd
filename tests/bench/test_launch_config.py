"""The bench's floors are launched as the service is: a floor that gained from a setting the
service lacks (no access log, another event loop, more ORT threads) would flatter the
service's ratios without anyone noticing in the figures.

Each server's command line, as the bench builds it, is followed in this process up to the
point where it would serve: ``os.execv`` (the allocator re-exec) and ``uvicorn.run`` are
captured instead of run, and the sessions each app would open are recorded. Configuration
only: nothing here is timed.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import onnxruntime as ort
import pytest
import uvicorn
from fastapi.testclient import TestClient

from bench import large_requests, small_requests
from bench.machine import MALLOC_ENV
from bench.payload import PATH, small_request
from service import cli

THREADS = 3
"""Not a default anywhere, so a server that ignored the setting would show."""
SERVICE_ARGV = [sys.executable, "-m", "service.cli", "serve"]


class Reexec(Exception):
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv


class Served(Exception):
    def __init__(self, app: str, options: dict[str, Any]) -> None:
        self.app, self.options = app, options


@dataclass(frozen=True)
class Launch:
    app: str
    options: dict[str, Any]
    environ: dict[str, str]
    """The process environment when uvicorn would have started."""
    execs: list[list[str]]


def raise_reexec(executable: str, argv: list[str]) -> None:
    raise Reexec(argv)


def raise_served(app: str, **options: Any) -> None:
    raise Served(app, options)


def launch(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Launch:
    """What ``argv`` (``python -m MODULE ARGS``) would do under ``env``, its re-exec followed."""
    monkeypatch.setattr(os, "execv", raise_reexec)
    monkeypatch.setattr(uvicorn, "run", raise_served)
    monkeypatch.setattr(signal, "signal", lambda signum, handler: None)  # serve's SIGTERM handler
    execs: list[list[str]] = []
    with mock.patch.dict(os.environ, env, clear=True):
        for _ in range(3):
            assert argv[:2] == [sys.executable, "-m"], argv
            entry: Callable[[list[str]], None] = importlib.import_module(argv[2]).main
            try:
                entry(argv[3:])
            except Reexec as exc:
                execs.append(exc.argv)
                argv = exc.argv
            except Served as served:
                return Launch(served.app, served.options, dict(os.environ), execs)
        raise AssertionError(f"{argv} re-executed itself {len(execs)} times")
    raise AssertionError("unreachable")


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """What the bench gives every server, with this test's directories for what a server writes."""
    env = small_requests.server_env(THREADS)
    env.update(
        LOSSD_DATA_DIR=str(tmp_path / "data"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
        LOSSD_HOST="127.0.0.1",
        LOSSD_PORT="8123",
    )
    return env


def bench_servers() -> Iterator[tuple[str, list[str], dict[str, str]]]:
    for server in small_requests.servers():
        yield f"small:{server.key}", server.argv, server.env
    for name, argv in large_requests.servers().items():
        yield f"large:{name}", argv, {}


SERVERS = list(bench_servers())


def test_the_service_is_lossd_serve() -> None:
    services = [argv for name, argv, _ in SERVERS if name.split(":")[1].startswith("service")]
    assert services and all(argv == SERVICE_ARGV for argv in services)
    assert {"small:floor", "small:minimal", "large:floor"} <= {name for name, _, _ in SERVERS}


@pytest.mark.parametrize(("name", "argv", "extra"), SERVERS, ids=[s[0] for s in SERVERS])
def test_uvicorn_options_are_the_services(
    name: str, argv: list[str], extra: dict[str, str], base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**base_env, **extra}
    server = launch(argv, env, monkeypatch)
    service = launch(SERVICE_ARGV, env, monkeypatch)
    assert server.options == service.options
    assert server.options["access_log"] is False  # the service's default, which the floors must not undercut
    for name, value in MALLOC_ENV.items():
        assert server.environ[name] == service.environ[name] == value


def test_the_bench_sets_the_services_allocator() -> None:
    assert cli.MALLOC_ENV == MALLOC_ENV
    assert small_requests.server_env(1).items() >= MALLOC_ENV.items()


@pytest.mark.parametrize("argv", [SERVICE_ARGV, *(argv for _, argv, _ in SERVERS)], ids=lambda a: a[-1])
def test_the_allocator_is_applied_without_the_bench(
    argv: list[str], base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started bare (no allocator setting), each entry point re-executes itself with it,
    with its own command line."""
    env = {k: v for k, v in base_env.items() if k not in (*MALLOC_ENV, "LOSSD_NO_REEXEC")}
    started = launch(argv, env, monkeypatch)
    assert len(started.execs) == 1
    assert started.execs[0][2:] == argv[2:]
    assert all(started.environ[k] == v for k, v in cli.MALLOC_ENV.items())


SessionConfig = tuple[int, int, str, str, tuple[str, ...]]


def recording_sessions(monkeypatch: pytest.MonkeyPatch) -> list[SessionConfig]:
    """Every onnxruntime session opened from now on, as the configuration it was given."""
    real = ort.InferenceSession
    opened: list[SessionConfig] = []

    def record(model: bytes, options: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
        spinning = options.get_session_config_entry("session.intra_op.allow_spinning")
        level = str(options.graph_optimization_level)
        opened.append((options.intra_op_num_threads, options.inter_op_num_threads, level, spinning, tuple(providers)))
        return real(model, options, providers=providers)

    monkeypatch.setattr(ort, "InferenceSession", record)
    return opened


def service_sessions(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[SessionConfig]:
    """The sessions ``lossd serve``'s app opens under ``env`` to answer the bench's request."""
    opened = recording_sessions(monkeypatch)
    with mock.patch.dict(os.environ, env, clear=True):
        module, factory = launch(SERVICE_ARGV, env, monkeypatch).app.split(":")
        with TestClient(getattr(importlib.import_module(module), factory)()) as client:
            assert client.post(PATH, content=small_request()).status_code == 200
    return opened


@pytest.mark.parametrize(
    ("name", "argv"),
    [(n, a) for n, a, _ in SERVERS if a != SERVICE_ARGV],
    ids=[n for n, a, _ in SERVERS if a != SERVICE_ARGV],
)
def test_ort_threads_and_provider_are_the_services(
    name: str, argv: list[str], base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served = launch(argv, base_env, monkeypatch)
    service = service_sessions(base_env, monkeypatch)
    opened = recording_sessions(monkeypatch)
    module, factory = served.app.split(":")
    with mock.patch.dict(os.environ, base_env, clear=True):
        getattr(importlib.import_module(module), factory)()
    assert opened, f"{served.app} opened no onnxruntime session"
    assert service and set(opened) == set(service), (opened, service)
    assert opened[0][0] == THREADS


def test_every_server_gets_the_same_threads_and_provider() -> None:
    env = small_requests.server_env(THREADS)
    for _, _, extra in SERVERS:
        merged = {**env, **extra}
        assert merged["LOSSD_INTRA_OP_THREADS"] == str(THREADS)
        assert merged["LOSSD_PROVIDER"] == "cpu"
