"""POST /loss/{name}: what comes back, checked against independent numpy formulas."""

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from kernels import REGISTRY
from tests.kernels import catalog

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
    declared = catalog.info(spec.name)
    inputs = declared.gradients.inputs(np.random.default_rng(0), dict(declared.property_params))
    body = {key: value.tolist() for key, value in inputs.items()}
    params = dict(declared.property_params)
    assert post(client, name, **body, params=params) == post(client, spec.name, **body, params=params)


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


def test_poisson_log_rates_may_be_negative(client: TestClient) -> None:
    """Predictions must be non-negative rates only when log_input is false."""
    x, y = np.array([[-1.5, 0.3], [2.0, -0.2]]), np.array([[0.0, 2.0], [5.0, 1.0]])
    result = post(client, "poisson", predictions=x.tolist(), targets=y.tolist(), dtype="float64")
    np.testing.assert_allclose(result["loss"], (np.exp(x) - y * x).mean(), rtol=1e-12)


def test_gaussian_nll_gradients_for_mean_and_variance(client: TestClient) -> None:
    x, y = RNG.normal(size=(2, 3, 2)), RNG.normal(size=(2, 3, 2))
    var = RNG.uniform(0.1, 2.0, (2, 3, 2))
    var[0, 0, 0] = 0.0  # clamped to eps; its gradient passes through the clamp (torch)
    result = post(
        client,
        "gaussian_nll",
        predictions=x.tolist(),
        targets=y.tolist(),
        variance=var.tolist(),
        reduction="sum",
        outputs=["loss", "gradients"],
        dtype="float64",
    )
    v, d = np.maximum(var, 1e-6), x - y
    per_element = 6  # elements per sample
    np.testing.assert_allclose(result["loss"], (0.5 * (np.log(v) + d * d / v)).sum() / per_element, rtol=1e-12)
    gradients = result["gradients"]
    assert set(gradients) == {"predictions", "variance"}
    np.testing.assert_allclose(gradients["predictions"], d / v / per_element, rtol=1e-12)
    np.testing.assert_allclose(gradients["variance"], 0.5 * (1 / v - d * d / v**2) / per_element, rtol=1e-12)


def test_label_targets_equal_one_hot_targets(client: TestClient) -> None:
    """Losses whose targets accept labels (Input.accepts_labels) expand them to one-hot rows."""
    scores = RNG.normal(size=(2, 3, 4))
    labels = np.array([[0, 3, 1], [2, 2, 0]])
    for name, params in (("categorical_focal", {"from_logits": True}), ("categorical_hinge", {})):
        common = {"predictions": scores.tolist(), "params": params, "dtype": "float64"}
        outputs = ["loss", "per_sample", "gradients"]
        from_labels = post(client, name, targets=labels.tolist(), outputs=outputs, **common)
        from_one_hot = post(client, name, targets=np.eye(4)[labels].tolist(), outputs=outputs, **common)
        assert from_labels == from_one_hot
        assert np.asarray(from_labels["gradients"]["predictions"]).shape == (2, 3, 4)


def test_channel_first_label_maps_equal_one_hot_masks(client: TestClient) -> None:
    """Overlap losses take an integer label map, (N, ...) or (N, 1, ...), as one-hot masks over axis 1
    (MONAI's to_onehot_y=True)."""
    logits = RNG.normal(size=(2, 3, 2, 2))
    labels = np.array([[[0, 2], [1, 1]], [[2, 2], [0, 1]]])
    masks = np.moveaxis(np.eye(3)[labels], -1, 1)
    outputs = ["loss", "per_sample", "gradients"]
    for name in ("dice", "iou", "tversky"):
        common = {"predictions": logits.tolist(), "params": {"activation": "softmax"}, "dtype": "float64"}
        from_masks = post(client, name, targets=masks.tolist(), outputs=outputs, **common)
        assert from_masks["loss"] > 0
        for sent in (labels, labels[:, None]):
            assert post(client, name, targets=sent.tolist(), outputs=outputs, **common) == from_masks


def test_quantiles_score_one_column_each_against_one_target_per_sample(client: TestClient) -> None:
    """quantile with a quantiles list: column q at quantiles[q] (numpy pinball), and (N,) targets mean each
    target for every column (Input.repeats_along_last), the same as sending them repeated."""
    x = RNG.normal(size=(5, 3))
    y = RNG.normal(size=5)
    taus = np.array([0.0, 0.5, 1.0])
    d = y[:, None] - x
    expected = np.maximum(taus * d, (taus - 1) * d).mean(axis=1)
    body = {"predictions": x.tolist(), "params": {"quantiles": taus.tolist()}, "dtype": "float64"}
    outputs = ["per_sample", "gradients"]
    short = post(client, "quantile", targets=y.tolist(), outputs=outputs, **body)
    repeated = post(client, "quantile", targets=np.repeat(y[:, None], 3, 1).tolist(), outputs=outputs, **body)
    np.testing.assert_allclose(short["per_sample"], expected, rtol=1e-15)
    assert short == repeated
    both = client.post(
        "/loss/quantile", json={**body, "targets": y.tolist(), "params": {"quantile": 0.2, "quantiles": [0.5] * 3}}
    )
    assert both.status_code == 422, both.text
    assert "params" in both.json()["field"]
    wrong = client.post("/loss/quantile", json={**body, "targets": y.tolist(), "params": {"quantiles": [0.5, 0.5]}})
    assert wrong.status_code == 422 and wrong.json()["field"] == "params.quantiles", wrong.text


def test_hinge_converts_binary_labels_only_when_all_are_binary(client: TestClient) -> None:
    """Keras's rule, per request: 0/1 labels become -1/1 only if no label is -1."""
    x = np.array([[0.5, -2.0], [1.5, 0.3]])

    def per_sample(targets: list[list[int]]) -> list[float]:
        body = {"predictions": x.tolist(), "targets": targets, "reduction": "none", "dtype": "float64"}
        return list(post(client, "hinge", **body)["loss"])

    converted = np.maximum(1 - (2 * np.array([[1, 0], [0, 1]]) - 1) * x, 0).mean(axis=1)
    np.testing.assert_allclose(per_sample([[1, 0], [0, 1]]), converted, rtol=1e-15)
    np.testing.assert_allclose(per_sample([[1, -1], [-1, 1]]), converted, rtol=1e-15)
    # one -1 anywhere: the 0 labels stay 0 and score max(1 - 0 x, 0) = 1
    mixed = per_sample([[1, 0], [-1, 1]])
    np.testing.assert_allclose(mixed, [(0.5 + 1.0) / 2, (2.5 + 0.7) / 2], rtol=1e-15)


def test_sparse_family_shares_the_sparse_kernels(client: TestClient) -> None:
    logits = RNG.normal(size=(4, 3))
    common = {"predictions": logits.tolist(), "targets": [0, 2, -100, 1], "dtype": "float64"}
    weights = [0.2, 1.0, 3.0]
    outputs = ["loss", "gradients"]
    sparse = post(client, "sparse_cross_entropy", params={"from_logits": True, "label_smoothing": 0.1}, **common)
    assert post(client, "label_smoothing_cross_entropy", params={"from_logits": True}, **common) == sparse
    weighted = {"from_logits": True, "class_weights": weights}
    assert post(client, "weighted_cross_entropy", params=weighted, outputs=outputs, **common) == post(
        client, "sparse_cross_entropy", params=weighted, outputs=outputs, **common
    )


def test_multi_margin_mean_is_over_samples_with_class_weights(client: TestClient) -> None:
    """torch.nn.MultiMarginLoss(weight): the weight of the label scales a sample; the mean divides by N."""
    x = RNG.normal(size=(5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    w = np.array([0.5, 2.0, 1.0, 3.0])
    result = post(
        client,
        "multi_margin",
        predictions=x.tolist(),
        targets=labels.tolist(),
        params={"p": 2, "margin": 0.5, "class_weights": w.tolist()},
        dtype="float64",
    )
    terms = np.maximum(0.0, 0.5 - x[np.arange(5), labels][:, None] + x) ** 2
    terms[np.arange(5), labels] = 0.0
    expected = (w[labels] * terms.sum(axis=1) / 4).mean()
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-12)


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
    assert "the loss of sample [2] is inf" in response.json()["detail"]
