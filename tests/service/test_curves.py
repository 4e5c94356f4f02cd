"""GET /losses/{name}/curve and /curve.svg."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from fastapi.testclient import TestClient

from kernels import REGISTRY


@pytest.mark.parametrize("name", [spec.name for spec in REGISTRY])
def test_every_loss_has_a_finite_curve(configured_client: TestClient, name: str) -> None:
    response = configured_client.get(f"/losses/{name}/curve?points=41")
    assert response.status_code == 200, response.text
    curve = response.json()
    assert curve["name"] == name and curve["variable"]
    assert len(curve["x"]) == len(curve["loss"]) == 41
    assert np.isfinite(curve["loss"]).all()
    if curve["gradient"] is not None:
        assert np.isfinite(curve["gradient"]).all()
        # The reported derivative is the slope of the reported loss (away from kinks, where
        # a finite difference over the grid step cannot follow: hence the median).
        x, loss, gradient = (np.asarray(curve[k]) for k in ("x", "loss", "gradient"))
        slope = np.gradient(loss, x)
        inner = slice(2, -2)
        error = np.median(np.abs(slope[inner] - gradient[inner]))
        assert error <= 0.05 * np.max(np.abs(gradient)) + 1e-9


def test_regression_curve_is_the_residual(client: TestClient) -> None:
    curve = client.get("/losses/huber/curve?points=7").json()
    x = np.asarray(curve["x"])
    np.testing.assert_allclose(curve["loss"], np.where(abs(x) < 1, 0.5 * x**2, abs(x) - 0.5))
    np.testing.assert_allclose(curve["gradient"], np.clip(x, -1, 1))


def test_svg_draws_both_curves(client: TestClient) -> None:
    response = client.get("/losses/focal/curve.svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    root = ET.fromstring(response.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    ids = {element.get("id") for element in root.iter()}
    assert {"loss", "gradient"} <= ids
    lines = {element.get("id"): element for element in root.iter() if element.get("id") in ("loss", "gradient")}
    for line in lines.values():
        path = next(line.iter("{http://www.w3.org/2000/svg}path"))
        assert path.get("d", "").count("L") > 20  # a polyline through the sampled points
    assert response.content == client.get("/losses/focal/curve.svg").content


def test_curve_of_unknown_loss_is_404(client: TestClient) -> None:
    assert client.get("/losses/nope/curve").status_code == 404
    assert client.get("/losses/mse/curve?points=1").status_code == 422


def test_curve_of_an_unconfigured_loss_is_409(client: TestClient) -> None:
    response = client.get("/losses/perceptual/curve")
    assert response.status_code == 409
    assert "LOSSD_FEATURE_MODELS" in response.json()["detail"]
