"""/docs and /redoc work offline: every asset they reference is served by the app itself."""

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

URL = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|url:\s*['"]([^'"]+)['"]""")


@pytest.fixture(scope="module")
def docs_client() -> Iterator[TestClient]:
    """No lifespan: the pages and assets need no ONNX sessions."""
    yield TestClient(create_app(Settings(provider="cpu")))


def referenced(html: str) -> list[str]:
    return [a or b for a, b in URL.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_reference_only_local_assets_that_are_served(docs_client: TestClient, page: str) -> None:
    response = docs_client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = referenced(response.text)
    scripts = [url for url in urls if url.endswith(".js")]
    assert scripts, f"{page} references no script: {urls}"
    assert "http://" not in response.text and "https://" not in response.text  # no CDN, no web fonts
    for url in urls:
        assert url.startswith("/"), url
        asset = docs_client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    for url in scripts:
        assert "javascript" in docs_client.get(url).headers["content-type"]
    assert "/openapi.json" in urls


def test_lossd_docs_false_disables_both_pages() -> None:
    client = TestClient(create_app(Settings(provider="cpu", docs=False)))
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 404
    assert client.get("/openapi.json").status_code == 200  # the document itself stays
