"""GET /ui/monitors against a real server with data: the HTML is self-contained, and headless
Chromium renders its chart (the line, the baseline band and the flagged window are drawn)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.monitors.page import ALERT_COLOUR, BAND_COLOUR, MEAN_COLOUR
from tests.server import Server, running_server

pytestmark = pytest.mark.server
WINDOW = 60
T0 = 1_790_000_040


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])


def pixels_of(image: np.ndarray, colour: str, tolerance: int = 12) -> int:
    return int((np.abs(image.astype(int) - rgb(colour)).max(axis=-1) <= tolerance).sum())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database = tmp_path_factory.mktemp("page") / "monitors.db"
    with (
        running_server({"LOSSD_DATABASE_URL": f"sqlite:///{database}"}, timeout=300.0) as running,
        httpx.Client(base_url=running.url, timeout=60.0) as http,
    ):
        created = http.post("/monitors", json={"name": "fraud-model", "loss": "mse", "window_seconds": WINDOW})
        assert created.status_code == 201
        rng = np.random.default_rng(8)
        for i in range(12):
            scale = 1.0 if i < 9 else 1.6  # the last windows degrade
            losses = rng.uniform(0.5, 1.5, 200) * scale
            body = {
                "predictions": np.sqrt(losses)[:, None].tolist(),
                "targets": [[0.0]] * 200,
                "timestamp": T0 + i * WINDOW,
            }
            assert http.post("/monitors/fraud-model/observations", json=body).status_code == 200
        assert http.get("/monitors/fraud-model").json()["alert"]["state"] == "alert"
        yield running


def test_the_page_is_self_contained_html(server: Server) -> None:
    response = httpx.get(f"{server.url}/ui/monitors", timeout=60.0)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "fraud-model" in html and "<polyline id='mean'" in html and "<polygon id='band'" in html
    assert "src=" not in html and "href=" not in html  # nothing loaded from elsewhere
    assert html.count(f"fill='{ALERT_COLOUR}'") == 3


def test_chromium_renders_the_chart(server: Server, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        reason = "chromium is not installed (apt-get install chromium): the page was NOT rendered"
        print(f"\n*** SKIPPED: {reason}", file=sys.stderr)
        pytest.skip(reason)
    screenshot = tmp_path / "monitors.png"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}",
        "--window-size=900,700",
    ]  # fmt: skip
    result = subprocess.run(
        [chromium, *flags, f"{server.url}/ui/monitors"], capture_output=True, text=True, timeout=180
    )
    assert screenshot.is_file(), result.stderr[-2000:]
    image = np.asarray(Image.open(screenshot).convert("RGB"))
    assert image.shape[:2] == (700, 900)
    assert pixels_of(image, MEAN_COLOUR) > 1000  # the mean line, 3 px wide across the chart
    assert pixels_of(image, BAND_COLOUR, tolerance=6) > 300  # the baseline band (3 standard errors: thin)
    assert pixels_of(image, ALERT_COLOUR) > 100  # the flagged windows' markers


def test_the_page_shows_twenty_monitors_a_page(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.monitors.page import PAGE_SIZE
    from service.settings import Settings

    with TestClient(create_app(Settings(data_dir=tmp_path, graph_cache=None, grpc_port=0))) as client:
        for index in range(2 * PAGE_SIZE + 5):
            assert client.post("/monitors", json={"name": f"m{index:03d}", "loss": "mse"}).status_code == 201
        first, last = client.get("/ui/monitors"), client.get("/ui/monitors?page=3")
        assert first.status_code == last.status_code == 200
        assert first.text.count("<section>") == PAGE_SIZE and last.text.count("<section>") == 5
        assert "m000" in first.text and "m020" not in first.text and "m044" in last.text
        assert "page 1 of 3" in first.text and "href='?page=2'" in first.text
        assert "href='?page=2'" in last.text and "?page=4" not in last.text
        for beyond in ("4", "0"):
            refused = client.get(f"/ui/monitors?page={beyond}")
            assert refused.status_code == 422 and refused.json()["field"] == "page", refused.text
