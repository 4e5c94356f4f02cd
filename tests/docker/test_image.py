"""The Docker image, built and run for real: built with a plain `docker build` (whichever
builder the CLI has: the legacy one here, which builds every stage of the Dockerfile), run
with a read-only root filesystem (`--read-only`, a tmpfs on /tmp, a volume on the data
directory, as Kubernetes runs it), it answers on the port it is given, computes the right
loss, runs as a non-root user, turns healthy, and stops gracefully on `docker stop`.

The engine and the image come from tests/docker/engine.py (one build per session); no
engine: the module is skipped, saying why."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from tests.docker.engine import docker, inspect, logs
from tests.docker.readme_commands import read_only_run
from tests.server import free_port

pytestmark = pytest.mark.docker

START_TIMEOUT = 300  # start-up builds ~400 ONNX sessions, on a machine shared with others
DATA_DIR = "/var/lib/lossd"  # LOSSD_DATA_DIR in the image


@dataclass
class Container:
    id: str
    url: str


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[Container]:
    """The README's read-only `docker run` (tests/docker/readme_commands.py) on a free loopback
    port (`-e LOSSD_PORT`), once /health answers: a tmpfs on /tmp and a volume of its own on
    the data directory."""
    port = free_port()
    name = f"lossd-test-{uuid.uuid4().hex[:12]}"
    volume = docker("volume", "create", f"{name}-data").strip()
    started = time.monotonic()
    try:
        docker(*read_only_run(name, port, free_port(), volume, image)[1:])
        url = f"http://127.0.0.1:{port}"
        deadline = started + START_TIMEOUT
        while True:
            if not inspect(name)["State"]["Running"]:
                pytest.fail(f"the container exited during start-up:\n{logs(name)[-4000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /health within {START_TIMEOUT} s:\n{logs(name)[-4000:]}")
            time.sleep(0.5)
        print(f"docker run to /health: {time.monotonic() - started:.1f} s")
        yield Container(name, url)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120, check=False)
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, timeout=120, check=False)


def running(container: Container) -> None:
    """The tests below share one container; the last one stops it."""
    assert inspect(container.id)["State"]["Running"], "the container is not running (tests run in file order)"


def test_health_on_the_given_port(container: Container) -> None:
    running(container)
    health = httpx.get(f"{container.url}/health", timeout=10.0).json()
    assert health["status"] == "ok"
    assert "CPUExecutionProvider" in health["providers"]
    assert health["losses"] > 0


def sigmoid_focal(x: np.ndarray, t: np.ndarray, alpha: float, gamma: float) -> np.ndarray:
    """torchvision's sigmoid_focal_loss per element, in float64."""
    p = 1.0 / (1.0 + np.exp(-x))
    ce = np.maximum(x, 0.0) - x * t + np.log1p(np.exp(-np.abs(x)))
    p_t = p * t + (1.0 - p) * (1.0 - t)
    alpha_t = alpha * t + (1.0 - alpha) * (1.0 - t)
    result: np.ndarray = alpha_t * ce * (1.0 - p_t) ** gamma
    return result


def test_focal_matches_numpy(container: Container) -> None:
    running(container)
    x = np.array([[0.2, -1.3, 0.7], [2.0, 0.1, -0.4]])
    t = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    w = np.array([1.0, 0.5])
    alpha, gamma = 0.25, 2.0
    body = {
        "predictions": x.tolist(),
        "targets": t.tolist(),
        "weights": w.tolist(),
        "params": {"alpha": alpha, "gamma": gamma, "from_logits": True},
        "outputs": ["loss", "per_sample", "gradients"],
    }
    response = httpx.post(f"{container.url}/loss/focal", json=body, timeout=30.0)
    assert response.status_code == 200, response.text
    result = response.json()

    def weighted_mean(logits: np.ndarray) -> float:
        return float(np.sum(w * sigmoid_focal(logits, t, alpha, gamma).mean(axis=1)) / np.sum(w))

    per_sample = sigmoid_focal(x, t, alpha, gamma).mean(axis=1)
    # Central differences of the float64 formula: an independent check of the gradients.
    step = 1e-6
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        offset = np.zeros_like(x)
        offset[index] = step
        gradient[index] = (weighted_mean(x + offset) - weighted_mean(x - offset)) / (2 * step)
    np.testing.assert_allclose(result["loss"], weighted_mean(x), rtol=1e-5)
    np.testing.assert_allclose(result["per_sample"], per_sample, rtol=1e-5)
    np.testing.assert_allclose(result["gradients"]["predictions"], gradient, rtol=1e-4, atol=1e-7)


def test_monitors_store_in_the_data_directory(container: Container) -> None:
    """The non-root server can write its SQLite database (LOSSD_DATA_DIR in the image)."""
    running(container)
    created = httpx.post(f"{container.url}/monitors", json={"name": "docker", "loss": "mse"}, timeout=30.0)
    assert created.status_code == 201, created.text
    body = {"predictions": [[1.0], [3.0]], "targets": [[0.0], [0.0]]}
    observed = httpx.post(f"{container.url}/monitors/docker/observations", json=body, timeout=30.0)
    assert observed.status_code == 200, observed.text
    assert observed.json()["accepted"] == 2 and observed.json()["loss"] == 5.0
    files = docker("exec", container.id, "ls", DATA_DIR)
    assert "monitors.sqlite3" in files.split(), f"no database file under {DATA_DIR} (the volume): {files}"


def test_root_filesystem_is_read_only(container: Container) -> None:
    """The server ran its start-up and requests above on a read-only root filesystem: it
    writes only to /tmp (the metric files of its workers) and the data directory."""
    running(container)
    assert inspect(container.id)["HostConfig"]["ReadonlyRootfs"] is True
    result = subprocess.run(
        ["docker", "exec", container.id, "touch", "/opt/lossd/written"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "Read-only file system" in result.stderr, result
    assert docker("exec", container.id, "ls", "/tmp").split(), "no metric files under /tmp"


def test_graphs_are_prebuilt_in_the_image(container: Container) -> None:
    """The image holds every graph its sources declare: nothing is left to build (a
    container with a read-only root could not keep one it built)."""
    running(container)
    out = docker("exec", container.id, "lossd", "prebuild")
    assert out.startswith("built 0 graphs into /opt/lossd/graphs/"), out


def test_server_is_pid_1_and_not_root(container: Container) -> None:
    running(container)
    status = docker("exec", container.id, "cat", "/proc/1/status")
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids and all(uid != "0" for uid in uids), status
    command = docker("exec", container.id, "cat", "/proc/1/cmdline").replace("\0", " ")
    assert "lossd serve" in command, command  # exec-form CMD: the server itself gets the signals
    assert docker("exec", container.id, "id", "-u").strip() != "0"


def test_healthcheck_turns_healthy(container: Container) -> None:
    """The HEALTHCHECK probes LOSSD_PORT (not the default 8000) and so turns healthy."""
    running(container)
    status = ""
    for _ in range(60):  # the check runs every 10 s
        status = inspect(container.id)["State"]["Health"]["Status"]
        if status != "starting":
            break
        time.sleep(1)
    log = inspect(container.id)["State"]["Health"]["Log"]
    assert status == "healthy", json.dumps(log, indent=1)[-3000:]


def test_docker_stop_is_graceful(container: Container) -> None:
    """Last: stopping is the end of the shared container."""
    running(container)
    started = time.monotonic()
    docker("stop", "-t", "10", container.id, timeout=60)
    print(f"docker stop: {time.monotonic() - started:.1f} s")
    state = inspect(container.id)["State"]
    output = logs(container.id)
    assert not state["Running"]
    # Docker sends SIGKILL once the 10 s are up, which would be exit code 137: 0 means the
    # server shut itself down on SIGTERM within them.
    assert state["ExitCode"] == 0, f"exit code {state['ExitCode']}:\n{output[-4000:]}"
    assert not state["OOMKilled"]
    assert "Finished server process" in output, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
