"""Shared fixtures: one app (with its sessions) per test session."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.app import create_app


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=True) as test_client:
        yield test_client
