"""Weights per position and weights with reduction 'none' (issue 17's sample-weight gaps):
Keras' own values for `(N, T)` weights on `(N, T, D)` inputs (tests/service/golden, written
by tests/service/element_weights_reference.py), finite-difference gradients, and the losses
that keep one weight per sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

GOLDEN = json.loads((Path(__file__).parent / "golden" / "element_weights.json").read_text())
WEIGHTS = np.array(GOLDEN["weights"])
T = WEIGHTS.shape[1]
OUTPUTS = ["loss", "per_sample", "gradients"]


def post(client: TestClient, loss: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/loss/{loss}", json={"dtype": "float64", "outputs": OUTPUTS, **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.parametrize("loss", sorted(GOLDEN["cases"]))
def test_weights_per_timestep_match_keras(client: TestClient, loss: str) -> None:
    case = GOLDEN["cases"][loss]
    keras = case["keras"]
    body = {**case["inputs"], "weights": GOLDEN["weights"]}
    mean = post(client, loss, {**body, "reduction": "mean"})["loss"]
    total = post(client, loss, {**body, "reduction": "sum"})["loss"]
    none = post(client, loss, {**body, "reduction": "none"})["loss"]
    np.testing.assert_allclose(mean, keras["mean_with_sample_weight"], rtol=1e-6)
    np.testing.assert_allclose(total * T, keras["sum"], rtol=1e-6)
    np.testing.assert_allclose(none, np.mean(keras["None"], axis=1), rtol=1e-6, atol=1e-12)


def test_uniform_weights_per_position_are_weights_per_sample(client: TestClient) -> None:
    case = GOLDEN["cases"]["mse"]["inputs"]
    per_sample = np.array([0.5, 2.0, 1.0])
    spread = np.repeat(per_sample[:, None], T, axis=1)
    for reduction in ("mean", "sum", "none"):
        by_position = post(client, "mse", {**case, "weights": spread.tolist(), "reduction": reduction})
        by_sample = post(client, "mse", {**case, "weights": per_sample.tolist(), "reduction": reduction})
        np.testing.assert_allclose(by_position["loss"], by_sample["loss"], rtol=1e-12)
        np.testing.assert_allclose(by_position["per_sample"], by_sample["per_sample"], rtol=1e-12)
        np.testing.assert_allclose(
            by_position["gradients"]["predictions"], by_sample["gradients"]["predictions"], rtol=1e-12
        )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss", ["huber", "sparse_cross_entropy"])
def test_gradients_with_weights_per_position_are_the_finite_differences(
    client: TestClient, loss: str, reduction: str
) -> None:
    case = GOLDEN["cases"][loss]["inputs"]
    predictions = np.array(case["predictions"])
    if loss == "sparse_cross_entropy":  # logits: any value is valid, so the differences can step freely
        predictions = np.log(predictions)
    params = {"from_logits": True} if loss == "sparse_cross_entropy" else {}
    body = {**case, "weights": GOLDEN["weights"], "reduction": reduction, "params": params}

    def total(values: np.ndarray) -> float:
        loss_value = post(client, loss, {**body, "predictions": values.tolist(), "outputs": ["loss"]})["loss"]
        return float(np.sum(loss_value))

    answer = post(client, loss, {**body, "predictions": predictions.tolist()})
    gradient = np.array(answer["gradients"]["predictions"])
    step = 1e-6
    for index in [(0, 0, 0), (1, 2, 3), (2, 3, 4), (1, 1, 1)]:  # (1, 2, ...) has weight 0
        up, down = predictions.copy(), predictions.copy()
        up[index] += step
        down[index] -= step
        expected = (total(up) - total(down)) / (2 * step)
        assert gradient[index] == pytest.approx(expected, rel=1e-5, abs=1e-9), index


def test_weights_with_reduction_none_are_the_weighted_sample_losses(client: TestClient) -> None:
    case = GOLDEN["cases"]["mae"]["inputs"]
    weights = [0.0, 1.0, 2.5]
    weighted = post(client, "mae", {**case, "weights": weights, "reduction": "none"})
    plain = post(client, "mae", {**case, "reduction": "none"})
    np.testing.assert_allclose(weighted["loss"], np.multiply(plain["loss"], weights), rtol=1e-12)
    np.testing.assert_allclose(weighted["per_sample"], plain["per_sample"], rtol=1e-12)  # per_sample: unweighted
    scaled = np.array(plain["gradients"]["predictions"]) * np.array(weights)[:, None, None]
    np.testing.assert_allclose(weighted["gradients"]["predictions"], scaled, rtol=1e-12)


@pytest.mark.parametrize(
    ("loss", "inputs", "weights", "message"),
    [
        ("dice", {"predictions": [[[0.5, 0.5]]], "targets": [[[1.0, 0.0]]]}, [[1.0]], "one weight per sample"),
        ("mse", {"predictions": [[1.0, 2.0]], "targets": [[1.0, 0.0]]}, [[1.0, 2.0, 3.0]], "leading axes"),
        (
            "cross_entropy",
            {"predictions": [[0.5, 0.5]], "targets": [[1.0, 0.0]]},
            [[1.0, 2.0]],
            "before any class axis",
        ),
        ("mse", {"predictions": [[1.0, 2.0]], "targets": [[1.0, 0.0]]}, [[1.0, -2.0]], "weights"),
    ],
)
def test_weights_that_fit_no_position_are_a_422_naming_them(
    client: TestClient, loss: str, inputs: dict[str, Any], weights: Any, message: str
) -> None:
    response = client.post(f"/loss/{loss}", json={**inputs, "weights": weights})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "weights"
    assert message in response.json()["detail"]
