"""The Docker engine and the lossd image, for tests/docker: on these machines
../shared/docker (next to the repository) starts the engine and builds a local base image,
since no registry can be reached; elsewhere a running engine and the Dockerfile's default
base are used. No engine: the tests that need one are skipped, saying why."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker import readme_commands

REPO = Path(__file__).resolve().parents[2]
ENGINE_TIMEOUT = 900  # engine.sh may first install the engine
BUILD_TIMEOUT = 1500  # a cold build downloads and installs every dependency
NOT_RUN = "DOCKER TEST NOT RUN"


def _git(*args: str) -> str:
    try:
        result = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):  # no git: the repository's own parent only
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def shared_docker() -> Path:
    """../shared/docker next to the repository; for a git worktree (elsewhere), next to the
    main checkout, the one whose .git the worktree shares; for a clone of a local checkout
    (a CI's fresh clone), next to that checkout."""
    roots = [REPO]
    common = _git("rev-parse", "--path-format=absolute", "--git-common-dir")
    if common:
        roots.append(Path(common).parent)
    origin = _git("config", "--get", "remote.origin.url").removeprefix("file://")
    if origin.startswith("/"):
        roots.append(Path(origin))
    candidates = [root.parent / "shared" / "docker" for root in roots]
    return next((path for path in candidates if path.is_dir()), candidates[0])


SHARED = shared_docker()


def docker(*args: str, timeout: float = 60) -> str:
    """Run the docker CLI; its stdout, or a failure that shows its stderr."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} exited with {result.returncode}:\n{result.stderr[-4000:]}")
    return result.stdout


def inspect(container: str) -> Any:
    return json.loads(docker("inspect", container))[0]


def logs(container: str) -> str:
    """Everything the container wrote (uvicorn logs to stderr)."""
    result = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=60, check=False)
    return result.stdout + result.stderr


def remove(*containers: str) -> None:
    """``docker rm -f``, whatever state they are in (cleanup: failures are not the test's)."""
    if containers:
        subprocess.run(["docker", "rm", "-f", *containers], capture_output=True, timeout=120, check=False)


def start_engine() -> None:
    """A Docker engine that answers, or a loud skip with the reason it cannot be had."""
    script = SHARED / "engine.sh"
    command = [str(script)] if script.is_file() else ["docker", "info"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=ENGINE_TIMEOUT, check=False)
    except FileNotFoundError:
        pytest.skip(f"{NOT_RUN}: no docker command and no {script} to install one")
    except subprocess.TimeoutExpired:
        pytest.skip(f"{NOT_RUN}: {' '.join(command)} did not get an engine running within {ENGINE_TIMEOUT} s")
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip()[-2000:]
        pytest.skip(f"{NOT_RUN}: no Docker engine could be started ({' '.join(command)}): {reason}")


def local_base_image() -> str | None:
    """The local base image where base-image.sh exists; otherwise the Dockerfile's default."""
    script = SHARED / "base-image.sh"
    if not script.is_file():
        return None
    result = subprocess.run([str(script)], capture_output=True, text=True, timeout=ENGINE_TIMEOUT, check=False)
    assert result.returncode == 0, f"{script} failed:\n{result.stderr[-4000:]}"
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def engine() -> None:
    start_engine()


@pytest.fixture(scope="session")
def base_image(engine: None) -> str | None:
    return local_base_image()


@pytest.fixture(scope="session")
def image(base_image: str | None) -> Iterator[str]:
    """The CPU image, built once per session under a tag of its own and removed afterwards."""
    tag = f"lossd-test:{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    try:
        result = subprocess.run(
            readme_commands.build(tag, base_image, str(REPO)),
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, f"docker build failed:\n{(result.stdout + result.stderr)[-6000:]}"
        size = int(docker("image", "inspect", "--format", "{{.Size}}", tag))
        print(f"docker build: {time.monotonic() - started:.0f} s, image {size / 1e6:.0f} MB")
        yield tag
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=120, check=False)
