"""Bad input gets a clear 4xx naming the field, never a 500."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

FOCAL = {"predictions": [[0.2, 0.7], [0.9, 0.1]], "targets": [[0, 1], [1, 0]]}
SPARSE = {"predictions": [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]], "targets": [2, 0]}
MASKS = {"predictions": [[[0.2, 0.7, 0.4]], [[0.9, 0.1, 0.5]]], "targets": [[[0, 1, 1]], [[1, 0, 0]]]}  # (2, 1, 3)
IMAGE = [[[[0.1 * ((i + j) % 7) for j in range(11)] for i in range(11)]]]  # (1, 1, 11, 11)
SSIM = {"predictions": IMAGE, "targets": IMAGE}

# (id, loss, body (dict, or raw bytes), status, field, words the detail must contain)
CASES: list[tuple[str, str, Any, int, str | None, str]] = [
    ("malformed-json", "focal", b'{"predictions": [[0.2', 400, None, "not valid JSON"),
    ("nan-literal", "focal", b'{"predictions": [[NaN]], "targets": [[0]]}', 400, None, "not valid JSON"),
    ("not-an-object", "focal", b"[1, 2]", 422, None, "JSON object"),
    ("missing-input", "focal", {"predictions": [[0.5]]}, 422, "targets", "required"),
    ("unknown-field", "focal", {**FOCAL, "colour": 1}, 422, "colour", "Extra inputs"),
    ("unknown-param", "focal", {**FOCAL, "params": {"gama": 1}}, 422, "params.gama", "Extra inputs"),
    ("param-bounds", "focal", {**FOCAL, "params": {"gamma": -1}}, 422, "params.gamma", "greater than or equal"),
    ("params-not-object", "focal", {**FOCAL, "params": 3}, 422, "params", ""),
    ("bad-reduction", "focal", {**FOCAL, "reduction": "avg"}, 422, "reduction", "mean"),
    ("bad-dtype", "focal", {**FOCAL, "dtype": "float16"}, 422, "dtype", "float32"),
    ("bad-output", "focal", {**FOCAL, "outputs": ["grads"]}, 422, "outputs.0", "gradients"),
    ("shape-mismatch", "focal", {**FOCAL, "targets": [[0, 1, 1], [1, 0, 0]]}, 422, "targets", "expected shape"),
    ("batch-mismatch", "focal", {**FOCAL, "targets": [[0, 1]]}, 422, "targets", "N=2"),
    ("ragged", "focal", {**FOCAL, "predictions": [[0.2, 0.7], [0.9]]}, 422, "predictions", "ragged"),
    ("strings", "focal", {**FOCAL, "predictions": [["a", "b"], ["c", "d"]]}, 422, "predictions", "numbers"),
    ("scalar", "focal", {**FOCAL, "predictions": 0.5}, 422, "predictions", "list"),
    ("empty", "focal", {"predictions": [], "targets": []}, 422, "predictions", "empty"),
    ("probability-range", "focal", {**FOCAL, "predictions": [[0.2, 1.5], [0.9, 0.1]]}, 422, "predictions", "[0, 1]"),
    ("target-range", "focal", {**FOCAL, "targets": [[0, 2], [1, 0]]}, 422, "targets", "index [0, 1]"),
    ("overflow-to-inf", "mse", {"predictions": [[1e39]], "targets": [[0.0]]}, 422, "predictions", "non-finite"),
    ("weights-length", "focal", {**FOCAL, "weights": [1.0]}, 422, "weights", "one weight per sample"),
    ("weights-negative", "focal", {**FOCAL, "weights": [1.0, -1.0]}, 422, "weights", "index [1]"),
    ("weights-zero-mean", "focal", {**FOCAL, "weights": [0, 0]}, 422, "weights", "positive sum"),
    ("weights-with-none", "focal", {**FOCAL, "weights": [1, 1], "reduction": "none"}, 422, "weights", "'none'"),
    ("label-not-integer", "sparse_cross_entropy", {**SPARSE, "targets": [1.5, 0]}, 422, "targets", "integers"),
    ("label-out-of-range", "sparse_cross_entropy", {**SPARSE, "targets": [3, 0]}, 422, "targets", "[0, 2]"),
    ("label-negative", "sparse_cross_entropy", {**SPARSE, "targets": [-1, 0]}, 422, "targets", "ignore_index"),
    ("all-ignored", "sparse_cross_entropy", {**SPARSE, "targets": [-100, -100]}, 422, "targets", "ignored"),
    ("class-axis-missing", "cross_entropy", {"predictions": [0.5, 0.5], "targets": [1, 0]}, 422, "predictions", "C"),
    (
        "class-weights-length",
        "sparse_cross_entropy",
        {**SPARSE, "params": {"class_weights": [1, 2]}},
        422,
        "params.class_weights",
        "expected 3 values",
    ),
    (
        "pos-weight-length",
        "bce",
        {**FOCAL, "params": {"pos_weight": [1, 2, 3]}},
        422,
        "params.pos_weight",
        "expected 2 values",
    ),
    ("unknown-loss", "focall", FOCAL, 404, "name", "did you mean focal"),
    ("dice-probability-range", "dice", {**MASKS, "predictions": [[[0.2, 1.7, 0.4]], [[0.9, 0.1, 0.5]]]}, 422,
     "predictions", "lie in [0.0, 1.0]"),
    ("dice-target-range", "iou", {**MASKS, "targets": [[[0, 2, 1]], [[1, 0, 0]]]}, 422, "targets", "[0.0, 1.0]"),
    ("dice-shape-mismatch", "tversky", {**MASKS, "targets": [[[0, 1]], [[1, 0]]]}, 422, "targets", "expected shape"),
    ("dice-channel-axis-missing", "dice", {"predictions": [0.5, 0.5], "targets": [1, 0]}, 422, "predictions", "C"),
    ("dice-background-one-channel", "dice", {**MASKS, "params": {"include_background": False}}, 422,
     "params.include_background", "needs at least 2 channels"),
    ("dice-softmax-one-channel", "iou", {**MASKS, "params": {"activation": "softmax"}}, 422, "params.activation",
     "use 'sigmoid'"),
    ("dice-activation-unknown", "dice", {**MASKS, "params": {"activation": "relu"}}, 422, "params.activation",
     "'sigmoid'"),
    ("dice-smooth-dr-zero", "dice", {**MASKS, "params": {"smooth_dr": 0}}, 422, "params.smooth_dr", "greater than"),
    ("tversky-alpha-negative", "tversky", {**MASKS, "params": {"alpha": -0.5}}, 422, "params.alpha", "greater"),
    ("ssim-image-too-small", "ssim", {**SSIM, "params": {"window_size": 13}}, 422, "predictions",
     "at least window_size pixels high (got H=11)"),
    ("ssim-window-even", "ssim", {**SSIM, "params": {"window_size": 8}}, 422, "params.window_size", "odd"),
    ("ssim-sigma-bound", "ssim", {**SSIM, "params": {"sigma": 1000}}, 422, "params.sigma", "less than"),
    ("ssim-not-an-image", "ssim", {"predictions": IMAGE[0], "targets": IMAGE[0]}, 422, "predictions", "expected shape"),
    ("ssim-nan", "ssim", {**SSIM, "targets": [[[[0.0] * 11] * 10 + [[0.0] * 10 + [1e39]]]]}, 422, "targets",
     "non-finite"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("loss", "body", "status", "field", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_a_clear_4xx(
    client: TestClient, loss: str, body: Any, status: int, field: str | None, words: str
) -> None:
    if isinstance(body, bytes):
        response = client.post(f"/loss/{loss}", content=body, headers={"Content-Type": "application/json"})
    else:
        response = client.post(f"/loss/{loss}", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert {"type", "title", "detail"} <= problem.keys()
    assert problem.get("field") == field
    assert words in problem["detail"]


def test_unknown_loss_lists_close_matches(client: TestClient) -> None:
    response = client.get("/losses/cross_entropyy")
    assert response.status_code == 404
    assert "cross_entropy" in response.json()["matches"]


def test_unknown_route_is_a_problem(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["title"] == "Not Found"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_wrong_content_type_is_415(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/loss/mse", content=b'{"predictions": [[1]], "targets": [[1]]}', headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert response.json()["field"] == "content-type"
    assert "application/json" in response.json()["detail"]


def test_json_with_charset_is_accepted(client: TestClient) -> None:
    response = client.post(
        "/loss/mse",
        content=b'{"predictions": [[1]], "targets": [[1]]}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200
    assert response.json()["loss"] == 0


def test_activation_decides_whether_predictions_are_probabilities(client: TestClient) -> None:
    """Logits outside [0, 1] are fine with a sigmoid or softmax activation (Input.probabilities_when)."""
    logits = {"predictions": [[[2.5, -1.0], [0.3, 4.0]]], "targets": [[[1, 0], [0, 1]]]}
    assert client.post("/loss/dice", json=logits).status_code == 422
    for activation in ("sigmoid", "softmax"):
        response = client.post("/loss/dice", json={**logits, "params": {"activation": activation}})
        assert response.status_code == 200, response.text
