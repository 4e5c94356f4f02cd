"""The README's examples are tests: each curl and Python block runs against a real server (its
HTTP and gRPC ports) and its documented output is checked (numbers to the documented
precision). The TypeScript and Node.js gRPC examples' blocks run in tests/clients."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.readme import DOC_ADDRESS, DOC_GRPC_ADDRESS, Example, blocks_that_talk_to_the_service, examples
from tests.server import free_port, running_server

NODE_CLIENTS = ("cd clients/typescript", "cd clients/grpc-node")


def run_here(example: Example) -> bool:
    return not example.command.startswith(NODE_CLIENTS)


def test_readme_has_examples() -> None:
    found = examples()
    assert sum(e.language == "bash" and run_here(e) for e in found) >= 8
    assert sum(e.language == "python" for e in found) >= 2
    assert sum(not run_here(e) for e in found) == 2, "a TypeScript and a Node.js gRPC example, run by tests/clients"
    assert sum(DOC_GRPC_ADDRESS in e.command for e in found if run_here(e)) >= 2, "tritonclient.grpc and stubs"


def test_every_block_that_talks_to_the_service_is_an_example() -> None:
    """A block that calls the service but documents no output would escape the checks."""
    commands = {e.command for e in examples()}
    unchecked = [block for block in blocks_that_talk_to_the_service() if block not in commands]
    assert not unchecked, f"README blocks that call the service without a documented output: {unchecked}"


def test_readme_examples_give_the_documented_output(tmp_path: Path) -> None:
    # A fresh monitors database; graphs are built on first use on a machine that may be shared.
    grpc_port = free_port()
    env = {"LOSSD_DATA_DIR": str(tmp_path / "data"), "LOSSD_GRPC_PORT": str(grpc_port)}
    with running_server(env, timeout=180) as server:
        address = server.url.removeprefix("http://")
        for example in filter(run_here, examples()):
            command = example.command.replace(DOC_ADDRESS, address).replace(DOC_GRPC_ADDRESS, f"127.0.0.1:{grpc_port}")
            argv = ["bash", "-c", command] if example.language == "bash" else [sys.executable, "-c", command]
            result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
            assert result.returncode == 0, f"{example.command}\n{result.stderr}"
            try:
                example.check(result.stdout)
            except AssertionError as exc:
                pytest.fail(f"README example drifted: {exc}\n{example.command}\ngot: {result.stdout}")


def test_the_settings_table_lists_every_setting() -> None:
    """Each row of the README's settings table names real settings, and every setting has a row."""
    import re

    from service.settings import Settings

    text = (Path(__file__).parents[2] / "README.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `LOSSD_")]
    documented = {name for row in rows for name in re.findall(r"`(LOSSD_[A-Z_]+)`", row.split("|")[1])}
    assert documented == {f"LOSSD_{name.upper()}" for name in Settings.model_fields}
