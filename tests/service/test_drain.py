"""SIGTERM as Kubernetes sends it: readiness turns 503 at once, requests (in flight and new)
are served for LOSSD_DRAIN_SECONDS, then the server exits with status 0; with one worker and
with two."""

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.server import running_server

DRAIN = 4.0
BATCH = {"predictions": [0.5, 1.5], "targets": [1.0, 1.0]}


@pytest.mark.server
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_fails_readiness_and_keeps_serving_for_the_drain(workers: int, tmp_path: Path) -> None:
    env = {"LOSSD_PROVIDER": "cpu", "LOSSD_WORKERS": str(workers), "LOSSD_DRAIN_SECONDS": str(DRAIN)}
    log = tmp_path / "server.log"
    with running_server(env, log=log) as server:
        assert httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200
        assert httpx.post(f"{server.url}/loss/mse", json=BATCH, timeout=10).json()["loss"] == 0.25
        os.kill(server.pid, signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.5)
        readiness, served = [], []
        while time.monotonic() - signalled < DRAIN - 1.0:
            # a fresh connection each time: the draining server still accepts new ones
            with httpx.Client(timeout=5) as client:
                readiness.append(client.get(f"{server.url}/v2/health/ready").status_code)
                served.append(client.post(f"{server.url}/loss/mse", json=BATCH).status_code)
            time.sleep(0.2)
        assert readiness and set(readiness) == {503}, readiness
        assert set(served) == {200}, served
        assert httpx.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200
        returncode = server.wait(timeout=DRAIN + 60)
        stopped = time.monotonic() - signalled
    assert returncode == 0, log.read_text()
    assert stopped >= DRAIN - 0.5, f"stopped {stopped:.1f} s after SIGTERM, before the {DRAIN} s drain"
