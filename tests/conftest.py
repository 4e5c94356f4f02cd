"""Shared fixtures: one app (with its sessions) per test session."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.feature_models import write_extractors

# gRPC (default port 8001) only where a test asks for it with a port of its own: in-process
# apps and the real servers of tests/server.py would otherwise all take 8001 (and with
# SO_REUSEPORT share it with whatever else listens there).
os.environ.setdefault("LOSSD_GRPC_PORT", "0")


@pytest.fixture(scope="session")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))  # the monitors' database
    with TestClient(create_app(settings), raise_server_exceptions=True) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def extractor_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small test feature extractors of tests/feature_models.py, written to files."""
    return write_extractors(tmp_path_factory.mktemp("extractors"))


@pytest.fixture(scope="session")
def configured_client(extractor_files: dict[str, Path]) -> Iterator[TestClient]:
    """An app with every loss usable: the test extractors configured for `perceptual`."""
    settings = Settings(provider="cpu", feature_models={k: str(v) for k, v in extractor_files.items()})
    with TestClient(create_app(settings), raise_server_exceptions=True) as test_client:
        yield test_client
