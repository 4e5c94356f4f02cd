"""The metric-learning losses through the service: their own input rules answer 422 naming the field, and the
batch-level ones return one value per batch with a gradient for every embedding (REST and V2)."""

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

COSINE_ROWS = [[0.3, -0.2, 0.9], [0.1, 0.5, -0.4]]
COSINES = {"predictions": COSINE_ROWS, "targets": [2, 0]}
BATCH = {"embeddings": [[0.0, 1.0], [0.1, 0.9], [1.0, 0.0], [0.9, -0.2]], "labels": [0, 0, 1, 1]}
VIEWS = {"x1": [[0.0, 1.0], [1.0, 0.2], [-0.5, 0.5]], "x2": [[0.1, 0.9], [0.8, 0.1], [-0.4, 0.6]]}

# (loss, body, field, words the detail must contain)
BAD: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "arcface",
        {**COSINES, "predictions": [[0.3, 1.2, 0.1], [0.1, 0.5, -0.4]]},
        "predictions",
        "cosine similarities must lie in [-1.0, 1.0]",
    ),
    ("cosface", {**COSINES, "predictions": [[0.3, 0.2, 0.1], [0.1, -1.5, -0.4]]}, "predictions", "at index [1, 1]"),
    ("arcface", {**COSINES, "targets": [3, 0]}, "targets", "label 3"),
    ("arcface", {**COSINES, "params": {"m": -0.1}}, "params.m", ""),
    ("supcon", {"embeddings": [[0.0, 1.0]], "labels": [0]}, "embeddings", "at least two"),
    ("triplet_hard", {**BATCH, "params": {"soft": True, "margin": 0.5}}, "params", "margin applies only"),
    ("triplet_semihard", {**BATCH, "labels": [0, 0, 1.5, 1]}, "labels", "integers"),
    ("circle", {**BATCH, "weights": [1, 1, 1, 1]}, "weights", ""),
    ("nt_xent", {"x1": VIEWS["x1"], "x2": VIEWS["x2"][:2]}, "x2", ""),
]


@pytest.mark.parametrize(("loss", "body", "field", "words"), BAD, ids=[f"{b[0]}-{b[2]}" for b in BAD])
def test_bad_input_names_the_field(client: TestClient, loss: str, body: dict[str, Any], field: str, words: str) -> None:
    response = client.post(f"/loss/{loss}", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem.get("field", "").startswith(field), problem
    assert words in problem["detail"]


@pytest.mark.parametrize(
    ("loss", "body", "differentiable"),
    [
        ("supcon", BATCH, ("embeddings",)),
        ("circle", BATCH, ("embeddings",)),
        ("triplet_hard", {**BATCH, "params": {"margin": 3.0}}, ("embeddings",)),
        ("triplet_semihard", {**BATCH, "params": {"margin": 3.0}}, ("embeddings",)),
        ("nt_xent", VIEWS, ("x1", "x2")),
    ],
)
def test_batch_level_losses_give_one_value(
    client: TestClient, loss: str, body: dict[str, Any], differentiable: tuple[str, ...]
) -> None:
    response = client.post(
        f"/loss/{loss}", json={**body, "outputs": ["loss", "per_sample", "gradients"], "dtype": "float64"}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["count"] == 1
    assert result["per_sample"] == [result["loss"]]
    assert result["loss"] > 0
    for name in differentiable:
        gradient = np.array(result["gradients"][name])
        assert gradient.shape == np.array(body[name]).shape
        assert np.all(np.isfinite(gradient))


def test_arcface_over_v2_matches_rest(client: TestClient) -> None:
    rest = client.post("/loss/arcface", json={**COSINES, "reduction": "none", "dtype": "float64"}).json()
    inputs = [
        {"name": "predictions", "datatype": "FP64", "shape": [2, 3], "data": [v for row in COSINE_ROWS for v in row]},
        {"name": "targets", "datatype": "INT64", "shape": [2], "data": COSINES["targets"]},
    ]
    response = client.post("/v2/models/arcface/infer", json={"inputs": inputs, "parameters": {"reduction": "none"}})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    np.testing.assert_allclose(outputs["per_sample"]["data"], rest["loss"], rtol=1e-12)
    assert outputs["gradient_predictions"]["shape"] == [2, 3]
