"""Readiness follows the monitor database: a real server on a real PostgreSQL that the test
stops and starts again; and a SQLite file whose directory becomes unusable."""

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.monitors.store import SQLiteStore
from tests.server import Server, running_server
from tests.service.monitors.postgres import PostgresServer, binaries, postgres_control

READY = "/v2/health/ready"


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A server of this test's own (the session's is shared by other tests)."""
    bin_dir = binaries()
    if bin_dir is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql): the readiness test did NOT run"
        print(f"\n*** SKIPPED: {reason}", file=sys.stderr)
        pytest.skip(reason)
    with postgres_control(bin_dir) as server:
        yield server


def readiness_becomes(server: Server, status: int, within: float) -> float:
    """Seconds until the readiness probe answers ``status`` (fails after ``within``)."""
    start = time.monotonic()
    while True:
        answered = httpx.get(f"{server.url}{READY}", timeout=10).status_code
        if answered == status:
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"{READY} still {answered} after {within} s, not {status}"
        time.sleep(0.1)


def test_ready_follows_postgresql(postgres: PostgresServer) -> None:
    env = {"LOSSD_DATABASE_URL": postgres.url, "LOSSD_INTRA_OP_THREADS": "1"}
    with running_server(env) as server:
        readiness_becomes(server, 200, within=5)
        monitor = {"name": "ready", "loss": "mse", "window_seconds": 60}
        assert httpx.post(f"{server.url}/monitors", json=monitor).status_code == 201
        postgres.stop()
        readiness_becomes(server, 503, within=5)
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200  # alive, just not ready
        # During the outage, monitor requests are a 503 to retry, not a 500.
        observation = {"predictions": [1.0, 2.0], "targets": [1.0, 1.0]}
        for path in ("/monitors/ready/observations", "/monitors"):
            body = observation if path.endswith("observations") else {"name": "other", "loss": "mae"}
            refused = httpx.post(f"{server.url}{path}", json=body)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] and refused.headers["content-type"] == "application/problem+json"
        assert httpx.get(f"{server.url}/monitors/ready").status_code == 503
        postgres.start()
        readiness_becomes(server, 200, within=5)
        # The store's own connections, broken by the restart, are made anew before they are used.
        for _ in range(5):
            response = httpx.post(f"{server.url}/monitors/ready/observations", json=observation)
            assert response.status_code == 200, response.text
        assert httpx.get(f"{server.url}/monitors/ready").json()["totals"]["count"] == 10


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: permissions cannot make it unusable")
def test_sqlite_reachable_follows_its_directory(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db" / "monitors.sqlite3")
    store.initialise()
    try:
        assert store.reachable()
        (tmp_path / "db").chmod(0o500)
        time.sleep(1.1)  # past the cached answer
        assert not store.reachable()
    finally:
        (tmp_path / "db").chmod(0o700)
        store.close()


def test_sqlite_reachable_when_the_directory_is_gone(tmp_path: Path) -> None:
    directory = tmp_path / "db"
    store = SQLiteStore(directory / "monitors.sqlite3")
    store.initialise()
    try:
        assert store.reachable()
        store.close()
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
        time.sleep(1.1)
        assert not store.reachable()
    finally:
        store.close()
