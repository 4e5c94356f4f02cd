"""Peer conventions over the edges: MONAI's batch=True (a loss batch-level for some params),
MONAI's other_act (any_range) and TF-GAN's per-score weights (optional inputs), by REST and V2."""

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from kernels import REGISTRY

RNG = np.random.default_rng(17)
LOGITS = RNG.normal(0.0, 2.0, (3, 3, 2, 2, 2))  # (N, C, D, H, W)
MASKS = np.moveaxis(np.eye(3)[RNG.integers(0, 3, (3, 2, 2, 2))], -1, 1)
REAL, FAKE = [-5.0, 1.4, 12.5, 2.7], [10.0, 4.4, -5.5, 3.6]
"""TF-GAN's losses_impl_test inputs (init_constants), with its scalar weight 2.3."""
TF_WEIGHT = 2.3


def post(client: TestClient, name: str, status: int = 200, **body: object) -> dict[str, Any]:
    response = client.post(f"/loss/{name}", json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


def batch_dice(p: np.ndarray, y: np.ndarray, smooth: float = 1e-5) -> float:
    """MONAI's DiceLoss(batch=True, reduction='mean') in numpy: per class over the batch and the voxels."""
    axes = (0, *range(2, p.ndim))
    tp = (p * y).sum(axes)
    return float(np.mean(1 - (2 * tp + smooth) / (p.sum(axes) + y.sum(axes) + smooth)))


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    result: np.ndarray = z / z.sum(axis=1, keepdims=True)
    return result


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_batch_dice_is_one_value_for_the_batch(client: TestClient, reduction: str) -> None:
    params = {"activation": "softmax", "batch": True}
    result = post(
        client,
        "dice",
        predictions=LOGITS.tolist(),
        targets=MASKS.tolist(),
        params=params,
        reduction=reduction,
        dtype="float64",
        outputs=["loss", "per_sample", "gradients"],
    )
    expected = batch_dice(softmax(LOGITS), MASKS)
    assert result["count"] == 1
    np.testing.assert_allclose(result["per_sample"], [expected], rtol=1e-12)
    np.testing.assert_allclose(result["loss"], [expected] if reduction == "none" else expected, rtol=1e-12)
    assert np.asarray(result["gradients"]["predictions"]).shape == LOGITS.shape
    per_sample = post(
        client, "dice", predictions=LOGITS.tolist(), targets=MASKS.tolist(), params={"activation": "softmax"}
    )
    assert per_sample["count"] == 3  # batch=false (the default): one loss per sample


@pytest.mark.parametrize("name", ["dice", "iou", "tversky", "generalized_dice", "focal_tversky", "dice_ce"])
def test_batch_forms_refuse_sample_weights(client: TestClient, name: str) -> None:
    body = {"predictions": softmax(LOGITS).tolist(), "targets": MASKS.tolist(), "params": {"batch": True}}
    error = post(client, name, 422, weights=[1.0, 1.0, 1.0], **body)
    assert error["field"] == "weights"
    assert f"{name} with batch=true is one value for the whole batch" in error["detail"]
    post(client, name, weights=[1.0, 2.0, 0.5], **{**body, "params": {}})  # per sample: weights taken


def test_batch_term_and_per_sample_term_are_not_summed(client: TestClient) -> None:
    """An ad-hoc composite still refuses a batch-level dice beside a per-sample cross-entropy (only the named
    dice_ce pools its cross-entropy)."""
    body = {
        "terms": [
            {"loss": "dice", "params": {"batch": True}},
            {"loss": "channel_cross_entropy", "params": {"from_logits": True}},
        ],
        "predictions": softmax(LOGITS).tolist(),
        "targets": MASKS.tolist(),
    }
    error = post(client, "composite", 422, **body)
    assert "dice (with batch=true) is one value for the whole batch" in error["detail"]


def test_any_range_takes_other_act_outputs(client: TestClient) -> None:
    """MONAI's other_act=torch.tanh, applied by the client: the [0, 1] check is lifted by any_range only."""
    predictions = np.tanh(LOGITS).tolist()
    error = post(client, "dice", 422, predictions=predictions, targets=MASKS.tolist())
    assert error["field"] == "predictions"
    result = post(
        client, "dice", predictions=predictions, targets=MASKS.tolist(), params={"any_range": True}, dtype="float64"
    )
    p = np.tanh(LOGITS)
    axes = tuple(range(2, p.ndim))
    tp = (p * MASKS).sum(axes)
    expected = np.mean(1 - (2 * tp + 1e-5) / (p.sum(axes) + MASKS.sum(axes) + 1e-5))
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-12)
    soft = {"any_range": True, "soft_label": True}
    error = post(client, "dice", 422, predictions=predictions, targets=MASKS.tolist(), params=soft)
    assert error["field"] == "params.soft_label"


TF_GAN_CASES = [
    # (loss, params, TF-GAN's expected unweighted value, whether the real scores are weighted)
    ("wasserstein", {}, 0.225, True),
    ("wasserstein", {"mode": "generator"}, -3.125, False),
    ("adversarial", {"formulation": "least_squares"}, 41.73375, True),
    ("adversarial", {"formulation": "least_squares", "mode": "generator"}, 17.69625, False),
    ("adversarial", {"mode": "generator"}, 1.38582, False),  # modified_generator_loss
    # modified_discriminator_loss and minimax_discriminator_loss at their default label_smoothing=0.25
    ("adversarial", {"label_smoothing": 0.25}, 6.19637, True),
    ("adversarial", {"formulation": "minimax", "label_smoothing": 0.25}, 6.19637, True),
    # wasserstein_hinge_discriminator_loss / wasserstein_hinge_generator_loss
    ("adversarial", {"formulation": "hinge"}, 6.75, True),
    ("adversarial", {"formulation": "hinge", "mode": "generator"}, -3.125, False),
]


@pytest.mark.parametrize(("name", "params", "expected", "real_weighted"), TF_GAN_CASES)
def test_tf_gan_values_with_its_scalar_weight(
    client: TestClient, name: str, params: dict[str, str], expected: float, real_weighted: bool
) -> None:
    """TF-GAN's own test values (losses_impl_test: init_constants, *_with_python_scalar_weight): the weighted
    loss is the expected value times 2.3 (SUM_BY_NONZERO_WEIGHTS), the scalar weight sent repeated."""
    suffix = "scores" if name == "wasserstein" else "logits"
    body: dict[str, Any] = {f"real_{suffix}": REAL, f"fake_{suffix}": FAKE, "params": params, "dtype": "float64"}
    assert post(client, name, **body)["loss"] == pytest.approx(expected, abs=1e-5)
    weighted = {**body, "fake_weights": [TF_WEIGHT] * 4}
    if real_weighted:
        weighted["real_weights"] = [TF_WEIGHT] * 4
    assert post(client, name, **weighted)["loss"] == pytest.approx(expected * TF_WEIGHT, abs=1e-4)


def test_label_smoothing_moves_only_the_real_labels(client: TestClient) -> None:
    """TF-GAN's label_smoothing s (tf.compat.v1.losses.sigmoid_cross_entropy) makes the real labels 1 - s/2, the
    fake ones stay 0: at s = 0.25 the real term is 0.875 softplus(-r) + 0.125 softplus(r), its gradient
    (sigmoid(r) - 0.875) w / count(w != 0); the fake term and its gradient are those of s = 0."""
    real_weights = [0.0, 1.0, 3.0, 0.5]
    body: dict[str, Any] = {
        "real_logits": REAL,
        "fake_logits": FAKE,
        "real_weights": real_weights,
        "dtype": "float64",
        "outputs": ["loss", "gradients"],
    }
    plain = post(client, "adversarial", **body)
    smoothed = post(client, "adversarial", **body, params={"label_smoothing": 0.25})
    r, w = np.asarray(REAL), np.asarray(real_weights)
    # 0.875 softplus(-r) + 0.125 softplus(r) - softplus(-r) = 0.125 (softplus(r) - softplus(-r)) = 0.125 r
    shift = (w * 0.125 * r).sum() / 3  # three nonzero weights
    assert smoothed["loss"] == pytest.approx(plain["loss"] + shift, rel=1e-12)
    sigmoid = 1.0 / (1.0 + np.exp(-r))
    np.testing.assert_allclose(smoothed["gradients"]["real_logits"], (sigmoid - 0.875) * w / 3, rtol=1e-12)
    assert smoothed["gradients"]["fake_logits"] == plain["gradients"]["fake_logits"]


@pytest.mark.parametrize(
    "params",
    [
        {"formulation": "hinge"},
        {"formulation": "least_squares"},
        {"mode": "generator"},
        {"formulation": "minimax", "mode": "generator"},
    ],
)
def test_label_smoothing_is_refused_where_it_does_not_apply(client: TestClient, params: dict[str, str]) -> None:
    body: dict[str, Any] = {"real_logits": REAL, "fake_logits": FAKE}
    error = post(client, "adversarial", 422, **body, params={**params, "label_smoothing": 0.25})
    assert error["field"] == "params.label_smoothing"
    assert "label_smoothing applies only to the logistic discriminator" in error["detail"]
    post(client, "adversarial", **body, params={**params, "label_smoothing": 0.0})  # 0 is no smoothing: taken
    error = post(client, "adversarial", 422, **body, params={"label_smoothing": 1.5})
    assert error["field"] == "params.label_smoothing"


def test_score_weights_count_only_the_nonzero_ones(client: TestClient) -> None:
    real_weights, fake_weights = [0.0, 1.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0]
    result = post(
        client,
        "wasserstein",
        real_scores=REAL,
        fake_scores=FAKE,
        real_weights=real_weights,
        fake_weights=fake_weights,
        dtype="float64",
        outputs=["loss", "gradients"],
    )
    real_term = (1.0 * 1.4 + 3.0 * 12.5) / 2  # two nonzero weights
    assert result["loss"] == pytest.approx(0.0 - real_term, rel=1e-12)  # all-zero fake weights: that term is 0
    np.testing.assert_allclose(result["gradients"]["real_scores"], [0.0, -0.5, -1.5, 0.0], rtol=1e-12)
    np.testing.assert_allclose(result["gradients"]["fake_scores"], [0.0] * 4, atol=0)
    assert "real_weights" not in result["gradients"]


def test_score_weights_are_checked(client: TestClient) -> None:
    body = {"real_scores": REAL, "fake_scores": FAKE}
    error = post(client, "wasserstein", 422, real_weights=[1.0, 2.0], **body)
    assert error["field"] == "real_weights"
    error = post(client, "wasserstein", 422, fake_weights=[1.0, -2.0, 1.0, 1.0], **body)
    assert error["field"] == "fake_weights"


def test_the_weights_field_names_the_score_weights(client: TestClient) -> None:
    error = post(client, "adversarial", 422, real_logits=REAL, fake_logits=FAKE, weights=[1.0])
    assert error["field"] == "weights"
    assert "real_weights and fake_weights" in error["detail"]


def test_v2_takes_the_optional_inputs_by_name(client: TestClient) -> None:
    def infer(*extra: dict[str, Any]) -> float:
        inputs = [
            {"name": "real_scores", "datatype": "FP64", "shape": [4], "data": REAL},
            {"name": "fake_scores", "datatype": "FP64", "shape": [4], "data": FAKE},
            *extra,
        ]
        response = client.post("/v2/models/wasserstein/infer", json={"inputs": inputs})
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        return float(outputs["loss"]["data"][0])

    assert infer() == pytest.approx(0.225, abs=1e-12)
    weights = [
        {"name": n, "datatype": "FP64", "shape": [4], "data": [TF_WEIGHT] * 4} for n in ("real_weights", "fake_weights")
    ]
    assert infer(*weights) == pytest.approx(0.225 * TF_WEIGHT, abs=1e-12)
    config = client.get("/v2/models/wasserstein/config").json()
    optional = {i["name"]: i["optional"] for i in config["input"]}
    assert optional == {
        "real_scores": False,
        "fake_scores": False,
        "real_weights": True,
        "fake_weights": True,
    }  # no sample weights: the loss is one value for the batch


def test_openapi_marks_the_score_weights_optional(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["WassersteinRequest"]
    assert set(schema["required"]) == {"real_scores", "fake_scores"}
    assert "real_weights" in schema["properties"] and "fake_weights" in schema["properties"]
    spec = REGISTRY.get("wasserstein")
    assert spec is not None and [i.name for i in spec.required] == ["real_scores", "fake_scores"]


def test_ad_hoc_composite_fills_the_score_weights_it_is_not_sent(client: TestClient) -> None:
    terms = [
        {"loss": "wasserstein"},
        {"loss": "adversarial", "inputs": {"real_logits": "real_scores", "fake_logits": "fake_scores"}},
    ]
    body: dict[str, Any] = {"terms": terms, "real_scores": REAL, "fake_scores": FAKE, "dtype": "float64"}
    plain = post(client, "composite", **body)
    weighted = post(client, "composite", **body, real_weights=[TF_WEIGHT] * 4, fake_weights=[TF_WEIGHT] * 4)
    assert weighted["loss"] == pytest.approx(plain["loss"] * TF_WEIGHT, rel=1e-12)
