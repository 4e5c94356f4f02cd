"""The Node.js gRPC client (clients/grpc-node: @grpc/grpc-js with stubs that
@grpc/proto-loader loads from the committed proto): the README's command, run with node
against a real server, agrees with POST /loss/focal from Python, reads readiness and
metadata, and gets NOT_FOUND with the close matches for an unknown model."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.readme import DOC_GRPC_ADDRESS, Example, examples
from tests.server import Server, free_port, running_server

ROOT = Path(__file__).parents[2]
CLIENT = ROOT / "clients" / "grpc-node"
MISSING = [tool for tool in ("node", "npm") if shutil.which(tool) is None]

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"SKIPPED LOUDLY: {' and '.join(MISSING)} not on PATH, so the Node.js gRPC client is NOT tested; "
        "install Node.js 20+ with npm to run it",
    ),
]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Server, int]]:
    port = free_port()
    with running_server({"LOSSD_GRPC_PORT": str(port)}, timeout=180) as running:
        yield running, port


def node_example() -> Example:
    [example] = [e for e in examples() if e.command.startswith("cd clients/grpc-node")]
    return example


def test_example_agrees_with_python_over_rest(served: tuple[Server, int]) -> None:
    server, port = served
    example = node_example()
    # The README's command: npm ci (the pinned packages of package-lock.json), node example.js.
    command = example.command.replace(DOC_GRPC_ADDRESS, f"127.0.0.1:{port}")
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    output: dict[str, Any] = json.loads(result.stdout)

    body = {**output["input"], "outputs": ["loss", "per_sample"]}
    response = httpx.post(f"{server.url}/loss/focal", json=body, timeout=30)
    assert response.status_code == 200, response.text
    python = response.json()
    assert output["grpc"]["loss"] == pytest.approx(python["loss"], rel=1e-6)
    assert output["grpc"]["per_sample"] == pytest.approx(python["per_sample"], rel=1e-6)
    assert output["ready"] is True and output["inputs"] == ["predictions", "targets", "weights"]
    assert output["unknown"]["code"] == "NOT_FOUND" and "did you mean focal" in output["unknown"]["details"]
    try:
        example.check(result.stdout)
    except AssertionError as exc:
        pytest.fail(f"README's Node.js gRPC example drifted: {exc}\ngot: {result.stdout}")
