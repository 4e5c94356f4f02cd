"""The README's examples: each command block that talks to the service, followed by a
block with its documented output, and the comparison of that output with what it gives."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

README = Path(__file__).parents[1] / "README.md"
DOC_ADDRESS = "127.0.0.1:8000"
"""Where the examples say the server is; tests substitute the real server's address."""
DOC_GRPC_ADDRESS = "127.0.0.1:8001"
"""Where the examples say the server's gRPC port is (LOSSD_GRPC_PORT's default)."""
# A command block (no backticks inside, so one block never runs into the next) and the
# output block right after it.
EXAMPLE = re.compile(r"```(bash|python)\n([^`]*?)```\s*\n```(json|text)\n(.*?)```", re.S)
FENCED = re.compile(r"```(\w*)\n(.*?)```", re.S)
COMMENT = re.compile(r"(^|\s)#.*$", re.M)


@dataclass(frozen=True)
class Example:
    language: str
    command: str
    kind: str
    documented: str

    def check(self, stdout: str) -> None:
        """Raise AssertionError when ``stdout`` is not the documented output."""
        if self.kind == "text":
            assert stdout.strip() == self.documented.strip(), f"documented {self.documented!r}, got {stdout!r}"
        else:
            matches(json.loads(self.documented, parse_float=Decimal, parse_int=Decimal), json.loads(stdout))


def examples() -> list[Example]:
    return [Example(*m.groups()) for m in EXAMPLE.finditer(README.read_text())]


def blocks_that_talk_to_the_service() -> list[str]:
    """Blocks that use one of the server's addresses in code (``make serve  # serves on ...`` does not)."""
    blocks = (m.group(2) for m in FENCED.finditer(README.read_text()))
    return [block for block in blocks if any(a in COMMENT.sub("", block) for a in (DOC_ADDRESS, DOC_GRPC_ADDRESS))]


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
