"""A real server with every limit and guard configured, shared by the tests of those."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server import Server, running_server

KEYS = ("first-key-0123456789", "second-key-abcdefghij")
ORIGIN = "http://app.example"
MAX_BODY = 256 * 1024
MAX_ELEMENTS = 1000


@dataclass
class Guarded:
    server: Server
    log: Path

    @property
    def url(self) -> str:
        return self.server.url

    def authorized(self, key: str = KEYS[0]) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    """``lossd serve`` with API keys, CORS, a 256 KiB body limit, 1000 elements and one
    request in flight at a time; its output goes to a file the tests read."""
    log = tmp_path_factory.mktemp("guarded") / "server.log"
    env = {
        "LOSSD_PROVIDER": "cpu",
        "LOSSD_API_KEYS": ",".join(KEYS),
        "LOSSD_CORS_ORIGINS": ORIGIN,
        "LOSSD_MAX_BODY_BYTES": str(MAX_BODY),
        "LOSSD_MAX_ELEMENTS": str(MAX_ELEMENTS),
        "LOSSD_MAX_CONCURRENCY": "1",
    }
    with running_server(env, timeout=240, log=log) as server:
        yield Guarded(server, log)
