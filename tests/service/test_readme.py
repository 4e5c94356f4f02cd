"""The README's examples are tests: each curl block runs against a real server and its
documented output is checked (numbers to the documented precision)."""

import json
import re
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.server import running_server

README = Path(__file__).parents[2] / "README.md"
EXAMPLE = re.compile(r"```bash\n(curl [^`]*?)```\s*\n```(json|text)\n(.*?)```", re.S)
DOC_URL = "http://127.0.0.1:8000"


def examples() -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in EXAMPLE.finditer(README.read_text())]


def matches(documented: Any, actual: Any, path: str = "$") -> None:
    """Equal, except that numbers only need to agree to the digits documented."""
    if isinstance(documented, Decimal):
        assert isinstance(actual, int | float), f"{path}: {actual!r} is not a number"
        exponent = documented.as_tuple().exponent
        assert isinstance(exponent, int)
        assert abs(Decimal(str(actual)) - documented) <= Decimal(5) * Decimal(10) ** (exponent - 1), path
    elif isinstance(documented, dict):
        assert isinstance(actual, dict) and documented.keys() == actual.keys(), f"{path}: keys differ"
        for key, value in documented.items():
            matches(value, actual[key], f"{path}.{key}")
    elif isinstance(documented, list):
        assert isinstance(actual, list) and len(documented) == len(actual), f"{path}: lengths differ"
        for index, (doc, act) in enumerate(zip(documented, actual, strict=True)):
            matches(doc, act, f"{path}[{index}]")
    else:
        assert documented == actual, f"{path}: documented {documented!r}, got {actual!r}"


def test_readme_has_examples() -> None:
    assert len(examples()) >= 6


def test_readme_examples_give_the_documented_output(tmp_path: Path) -> None:
    with running_server() as server:
        for command, kind, documented in examples():
            result = subprocess.run(
                ["bash", "-c", command.replace(DOC_URL, server.url)],
                capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
            )  # fmt: skip
            assert result.returncode == 0, f"{command}\n{result.stderr}"
            if kind == "text":
                assert result.stdout.strip() == documented.strip(), command
            else:
                try:
                    expected = json.loads(documented, parse_float=Decimal, parse_int=Decimal)
                    matches(expected, json.loads(result.stdout), "$")
                except AssertionError as exc:
                    pytest.fail(f"README example drifted: {exc}\n{command}\ngot: {result.stdout}")
