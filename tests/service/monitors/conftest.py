"""A PostgreSQL server per test session, for the tests that need one."""

import sys
from collections.abc import Iterator

import pytest

from tests.service.monitors.postgres import binaries, postgres_server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    bin_dir = binaries()
    if bin_dir is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql): the PostgreSQL monitor tests did NOT run"
        print(f"\n*** SKIPPED: {reason}", file=sys.stderr)
        pytest.skip(reason)
    with postgres_server(bin_dir) as url:
        yield url
