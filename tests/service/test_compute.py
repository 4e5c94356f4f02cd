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
    if spec.name == "earth_movers":  # rows need a positive sum
        body["targets"] = P[::-1].tolist()
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


REAL, FAKE = [2.0, 1.0, 0.5], [0.25, -1.0]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_batch_level_loss_is_one_value_for_the_batch(client: TestClient, reduction: str) -> None:
    """Real and fake batches of different lengths; per_sample is [loss], count 1, for every reduction."""
    result = post(
        client,
        "wasserstein",
        real_scores=REAL,
        fake_scores=FAKE,
        reduction=reduction,
        outputs=["loss", "per_sample", "gradients"],
        dtype="float64",
    )
    expected = np.mean(FAKE) - np.mean(REAL)
    assert result["loss"] == ([expected] if reduction == "none" else expected)
    assert result["per_sample"] == [expected]
    assert result["count"] == 1 and result["reduction"] == reduction
    np.testing.assert_allclose(result["gradients"]["real_scores"], [-1 / 3] * 3, rtol=1e-15)
    np.testing.assert_allclose(result["gradients"]["fake_scores"], [0.5, 0.5], rtol=1e-15)


def test_batch_level_loss_refuses_weights(client: TestClient) -> None:
    for reduction in ("mean", "sum", "none"):
        body = {"real_scores": REAL, "fake_scores": FAKE, "weights": [1.0], "reduction": reduction}
        response = client.post("/loss/wasserstein", json=body)
        assert response.status_code == 422
        assert response.json()["field"] == "weights"
        assert "one value for the whole batch" in response.json()["detail"]


def softplus(x: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.logaddexp(0.0, x)
    return result


def test_adversarial_generator_in_float32(client: TestClient) -> None:
    real, fake = np.array([3.0, -1.0]), np.array([0.5, -30.0, 40.0, 2.0])
    result = post(
        client,
        "adversarial",
        real_logits=real.tolist(),
        fake_logits=fake.tolist(),
        params={"formulation": "non_saturating", "mode": "generator"},
        outputs=["loss", "gradients"],
    )
    assert result["dtype"] == "float32" and result["count"] == 1
    assert result["loss"] == pytest.approx(softplus(-fake).mean(), rel=1e-6)
    assert result["gradients"]["real_logits"] == [0.0, 0.0]
    np.testing.assert_allclose(result["gradients"]["fake_logits"], -1 / (1 + np.exp(fake)) / 4, rtol=1e-6)


def test_pair_losses_take_embeddings_and_labels(client: TestClient) -> None:
    x1 = np.array([[0.0, 0.0], [1.0, 2.0], [0.5, 0.5]])
    x2 = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5]])
    result = post(
        client,
        "contrastive",
        x1=x1.tolist(),
        x2=x2.tolist(),
        targets=[0, 1, 0],
        reduction="none",
        outputs=["loss", "gradients"],
        dtype="float64",
    )
    # identical dissimilar pair: loss margin^2 = 1 and the zero subgradient; similar pair: D^2 = 4
    np.testing.assert_allclose(result["loss"], [1.0, 4.0, 0.25], rtol=1e-15)
    np.testing.assert_allclose(result["gradients"]["x1"], [[0, 0], [0, 4], [-1, 0]], atol=1e-15)
    np.testing.assert_allclose(result["gradients"]["x2"], [[0, 0], [0, -4], [1, 0]], atol=1e-15)


def test_margin_ranking_takes_one_score_per_item(client: TestClient) -> None:
    result = post(
        client,
        "margin_ranking",
        x1=[1.0, 0.0, 2.0],
        x2=[0.0, 1.0, 2.5],
        targets=[1, 1, -1],
        params={"margin": 0.5},
        outputs=["loss", "per_sample", "gradients"],
        dtype="float64",
    )
    assert result["per_sample"] == [0.0, 1.5, 0.0]
    assert result["loss"] == pytest.approx(0.5)
    # the third pair sits at the hinge's edge (loss exactly 0): the gradient passes there, as torch's does
    np.testing.assert_array_equal(result["gradients"]["x1"], [0.0, -1 / 3, 1 / 3])
    np.testing.assert_array_equal(result["gradients"]["x2"], [0.0, 1 / 3, -1 / 3])


def test_earth_movers_normalises_rows_like_scipy(client: TestClient) -> None:
    scaled = post(client, "emd", predictions=[[0.1, 0.1, 0.2]], targets=[[0.0, 0.0, 0.5]], dtype="float64")
    normalised = post(client, "emd", predictions=[[0.25, 0.25, 0.5]], targets=[[0.0, 0.0, 1.0]], dtype="float64")
    assert scaled["loss"] == normalised["loss"] == pytest.approx(0.25 + 0.5)
