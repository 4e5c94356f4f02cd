"""Schemathesis against the OpenAPI document: no 5xx, and every response documented.

The document is the committed openapi/openapi.json, which tests/service/test_openapi.py
keeps equal to what the app serves. Requests go to one real ``lossd serve`` on 127.0.0.1
(one app start for the module: schemathesis's in-process ASGI transport would restart the
app's lifespan, ~400 sessions, for every operation). Each operation gets its documented
examples, the coverage phase's boundary and invalid values, then a few generated requests,
valid and invalid, all from a fixed seed: the same requests every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.server import Server, running_server

DOCUMENT = Path(__file__).parents[2] / "openapi" / "openapi.json"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 8
"""Generated requests per operation in the fuzzing phase. The whole module takes about 40 s
plus the server's start on a busy 2-core machine."""
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 0,
        "phases": {"examples": {"enabled": True}, "fuzzing": {"enabled": True}, "coverage": {"enabled": True}},
        "generation": {"max-examples": MAX_EXAMPLES},
    }
)
schema = schemathesis.openapi.from_path(DOCUMENT, config=CONFIG)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server({"LOSSD_PROVIDER": "cpu"}, timeout=180) as running:
        yield running


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One keep-alive session for every request of the module."""
    with requests.Session() as opened:
        yield opened


@schema.parametrize()
@settings(
    derandomize=True,
    database=None,
    deadline=None,
    # No shrinking: a failure is reported as found, which keeps a failing run short too.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api(case: schemathesis.Case[Any], server: Server, session: requests.Session) -> None:
    case.call_and_validate(base_url=server.url, session=session, checks=CHECKS)
