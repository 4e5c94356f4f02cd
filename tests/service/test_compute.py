"""POST /loss/{name}: what comes back, checked against independent numpy formulas."""

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from kernels import REGISTRY

RNG = np.random.default_rng(7)
P = RNG.uniform(0.05, 0.95, (4, 3))
Y = (RNG.uniform(size=(4, 3)) > 0.5).astype(float)


def bce(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    result: np.ndarray = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return result


def post(client: TestClient, name: str, **body: object) -> dict[str, Any]:
    response = client.post(f"/loss/{name}", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions_follow_the_contract(client: TestClient, reduction: str) -> None:
    result = post(
        client,
        "bce",
        predictions=P.tolist(),
        targets=Y.tolist(),
        reduction=reduction,
        dtype="float64",
        outputs=["loss", "per_sample"],
    )
    per_sample = bce(P, Y).mean(axis=1)
    expected = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-12)
    np.testing.assert_allclose(result["per_sample"], per_sample, rtol=1e-12)
    assert result["reduction"] == reduction and result["count"] == 4 and result["dtype"] == "float64"


def test_weighted_mean_and_its_gradient(client: TestClient) -> None:
    weights = [1.0, 0.5, 2.0, 0.0]
    result = post(
        client,
        "mse",
        predictions=P.tolist(),
        targets=Y.tolist(),
        weights=weights,
        dtype="float64",
        outputs=["loss", "gradients"],
    )
    w = np.array(weights)
    per_sample = ((P - Y) ** 2).mean(axis=1)
    np.testing.assert_allclose(result["loss"], (w * per_sample).sum() / w.sum(), rtol=1e-12)
    expected_grad = 2 * (P - Y) / P.shape[1] * (w / w.sum())[:, None]
    np.testing.assert_allclose(result["gradients"]["predictions"], expected_grad, rtol=1e-12)


def test_gradients_keep_the_input_shape(client: TestClient) -> None:
    logits = RNG.normal(size=(2, 3, 4))
    result = post(
        client,
        "cross_entropy",
        predictions=logits.tolist(),
        targets=np.eye(4)[[[0, 1, 2], [3, 0, 1]]].tolist(),
        params={"from_logits": True},
        outputs=["gradients"],
    )
    assert np.asarray(result["gradients"]["predictions"]).shape == (2, 3, 4)
    assert "per_sample" not in result


def test_float32_is_float32(client: TestClient) -> None:
    result = post(client, "mae", predictions=[[0.1, 0.2]], targets=[[0.0, 0.0]])
    assert result["dtype"] == "float32"
    assert result["loss"] == pytest.approx(np.float32(0.15), rel=1e-7)


@pytest.mark.parametrize("name", [alias for spec in REGISTRY for alias in spec.aliases])
def test_aliases_compute_the_same_loss(client: TestClient, name: str) -> None:
    spec = REGISTRY.get(name)
    assert spec is not None
    canonical = client.get(f"/losses/{name}").json()["name"]
    assert canonical == spec.name
    body = {"predictions": P.tolist(), "targets": Y.tolist()}
    if spec.name == "sparse_cross_entropy":
        body["targets"] = [0, 1, 2, 1]
    assert post(client, name, **body) == post(client, spec.name, **body)


def test_sparse_cross_entropy_follows_torch_weighted_mean(client: TestClient) -> None:
    logits = RNG.normal(size=(4, 3))
    labels = np.array([0, 2, -100, 1])
    weights = np.array([0.2, 1.0, 3.0])
    result = post(
        client,
        "sparse_cross_entropy",
        predictions=logits.tolist(),
        targets=labels.tolist(),
        params={"from_logits": True, "class_weights": weights.tolist()},
        dtype="float64",
    )
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    keep = labels != -100
    nll = -log_p[keep, labels[keep]] * weights[labels[keep]]
    np.testing.assert_allclose(result["loss"], nll.sum() / weights[labels[keep]].sum(), rtol=1e-12)


def test_focal_logits_match_the_api_example(client: TestClient) -> None:
    x = np.array([[0.2, -1.3], [2.0, 0.1]])
    y = np.array([[0, 1], [1, 0]])
    result = post(
        client,
        "focal",
        predictions=x.tolist(),
        targets=y.tolist(),
        weights=[1.0, 0.5],
        params={"alpha": 0.25, "gamma": 2.0, "from_logits": True},
        dtype="float64",
    )
    p = 1 / (1 + np.exp(-x))
    p_t = p * y + (1 - p) * (1 - y)
    elements = bce(p, y) * (1 - p_t) ** 2 * (0.25 * y + 0.75 * (1 - y))
    per_sample = elements.mean(axis=1)
    np.testing.assert_allclose(result["loss"], (per_sample * [1, 0.5]).sum() / 1.5, rtol=1e-12)


def ctc_body(**extra: object) -> dict[str, Any]:
    logits = np.random.default_rng(11).normal(size=(3, 5, 4))
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return {
        "predictions": log_probs.tolist(),
        "targets": [[1, 2, 0], [3, 3, 1], [2, 0, 0]],
        "input_lengths": [5, 5, 3],
        "target_lengths": [2, 3, 1],
        "dtype": "float64",
        **extra,
    }


def test_ctc_mean_divides_each_loss_by_its_target_length(client: TestClient) -> None:
    weights = np.array([1.0, 0.5, 2.0])
    none = post(client, "ctc", **ctc_body(reduction="none"))["loss"]
    total = post(client, "ctc", **ctc_body(reduction="sum", weights=weights.tolist()))["loss"]
    mean = post(client, "ctc", **ctc_body(weights=weights.tolist(), outputs=["loss", "gradients"]))
    losses, lengths = np.array(none), np.array([2, 3, 1])
    np.testing.assert_allclose(total, (weights * losses).sum(), rtol=1e-12)
    np.testing.assert_allclose(mean["loss"], (weights * losses / lengths).sum() / weights.sum(), rtol=1e-12)
    assert np.asarray(mean["gradients"]["predictions"]).shape == (3, 5, 4)
    assert set(mean["gradients"]) == {"predictions"}  # lengths and labels are not differentiable


def test_ctc_zero_infinity_counts_an_impossible_sample_as_zero(client: TestClient) -> None:
    body = ctc_body(input_lengths=[5, 3, 3], reduction="none", outputs=["loss", "gradients"])  # 3,3,1 needs 4
    assert client.post("/loss/ctc", json=body).status_code == 422
    result = post(client, "ctc", **{**body, "params": {"zero_infinity": True}})
    assert result["loss"][1] == 0.0 and result["loss"][0] > 0
    assert not np.any(np.asarray(result["gradients"]["predictions"])[1])


def test_a_loss_beyond_the_dtype_is_a_422_naming_the_sample(client: TestClient) -> None:
    """Finite inputs whose loss overflows the requested dtype: JSON has no inf."""
    body = ctc_body(dtype="float32", reduction="none")
    body["predictions"][2] = [[-3e38] * 4] * 5  # a path through them has log-probability below -3.4e38
    response = client.post("/loss/ctc", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "predictions"
    assert "sample 2 is not finite" in response.json()["detail"]
