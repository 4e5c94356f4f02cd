"""The TypeScript client (clients/typescript): its bindings are generated from the committed
OpenAPI document, it type-checks, and the README's TypeScript example, run with node against
a real server, agrees with POST /loss/focal from Python, over REST and over V2."""

from __future__ import annotations

import difflib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.readme import DOC_ADDRESS, Example, examples
from tests.server import Server, running_server

ROOT = Path(__file__).parents[2]
CLIENT = ROOT / "clients" / "typescript"
BINDINGS = CLIENT / "src" / "schema.d.ts"
MISSING = [tool for tool in ("node", "npm") if shutil.which(tool) is None]

pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"SKIPPED LOUDLY: {' and '.join(MISSING)} not on PATH, so the TypeScript client is NOT tested; "
    "install Node.js 20+ with npm to run it",
)


def run(argv: list[str], cwd: Path, timeout: float) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed() -> None:
    """The pinned npm packages of package-lock.json (npm's cache makes a re-run quick)."""
    run(["npm", "ci", "--no-audit", "--no-fund"], CLIENT, timeout=300)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(timeout=180) as running:  # start-up builds ~400 graphs; the machine is shared
        yield running


def typescript_example() -> Example:
    [example] = [e for e in examples() if e.command.startswith("cd clients/typescript")]
    return example


def test_committed_bindings_are_current(installed: None) -> None:
    generated = run(["npm", "run", "--silent", "bindings"], CLIENT, timeout=120)
    committed = BINDINGS.read_text()
    if generated != committed:
        diff = difflib.unified_diff(
            committed.splitlines(), generated.splitlines(), "committed", "generated", lineterm=""
        )
        pytest.fail("clients/typescript/src/schema.d.ts is stale: run `make clients`\n" + "\n".join(list(diff)[:40]))


def test_example_agrees_with_python_over_rest_and_v2(installed: None, server: Server) -> None:
    example = typescript_example()
    # The README's command: npm ci, tsc (type-checks and compiles to build/), node build/example.js.
    command = example.command.replace(DOC_ADDRESS, server.url.removeprefix("http://"))
    stdout = run(["bash", "-c", command], ROOT, timeout=300)
    output: dict[str, Any] = json.loads(stdout)

    body = {**output["input"], "outputs": ["loss", "per_sample"]}
    response = httpx.post(f"{server.url}/loss/focal", json=body, timeout=30)
    assert response.status_code == 200, response.text
    python = response.json()
    assert output["rest"] == {"loss": python["loss"], "per_sample": python["per_sample"]}
    assert output["v2"] == output["rest"]

    card = httpx.get(f"{server.url}/losses/focal", timeout=30).json()
    assert output["card"] == {key: card[key] for key in ("name", "title", "task", "aliases", "gradients")}
    try:
        example.check(stdout)
    except AssertionError as exc:
        pytest.fail(f"README's TypeScript example drifted: {exc}\ngot: {stdout}")
