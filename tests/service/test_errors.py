"""Bad input gets a clear 4xx naming the field, never a 500."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

FOCAL = {"predictions": [[0.2, 0.7], [0.9, 0.1]], "targets": [[0, 1], [1, 0]]}
SPARSE = {"predictions": [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]], "targets": [2, 0]}
PAIRS = {"x1": [[0.0, 1.0], [1.0, 1.0]], "x2": [[1.0, 0.0], [0.5, 1.0]], "targets": [1, 0]}
SIGNED = {**PAIRS, "targets": [1, -1]}
TRIPLET = {"anchor": [[0.0, 1.0]], "positive": [[1.0, 0.0]], "negative": [[0.5, 0.5]]}
SCORES = {"real_scores": [1.0, 2.0, 0.5], "fake_scores": [-1.0, 0.0]}
LOGITS = {"real_logits": [1.0, 2.0, 0.5], "fake_logits": [-1.0, 0.0]}
BINS = {"predictions": [[0.2, 0.3, 0.5]], "targets": [[0.0, 1.0, 0.0]]}

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
    ("pair-label", "contrastive", {**PAIRS, "targets": [1, 2]}, 422, "targets", "one of 0, 1"),
    ("pair-label-signed", "contrastive", SIGNED, 422, "targets", "one of 0, 1"),
    ("pair-dims", "contrastive", {**PAIRS, "x2": [[1.0, 0.0, 0.0], [0.5, 1.0, 0.0]]}, 422, "x2", "(N=2, D=2)"),
    ("pair-targets-length", "contrastive", {**PAIRS, "targets": [1]}, 422, "targets", "(N=2)"),
    ("pair-targets-2d", "contrastive", {**PAIRS, "targets": [[1], [0]]}, 422, "targets", "(N=2)"),
    ("pair-margin", "contrastive", {**PAIRS, "params": {"margin": -1}}, 422, "params.margin", "greater than or equal"),
    ("cosine-label", "cosine_embedding", PAIRS, 422, "targets", "one of -1, 1"),
    ("cosine-margin", "cosine_embedding", {**SIGNED, "params": {"margin": 2}}, 422, "params.margin", "less than"),
    ("triplet-dims", "triplet", {**TRIPLET, "negative": [[0.5, 0.5, 0.5]]}, 422, "negative", "(N=1, D=2)"),
    ("triplet-batch", "triplet", {**TRIPLET, "positive": [[1.0, 0.0], [0.0, 1.0]]}, 422, "positive", "N=1"),
    ("triplet-p", "triplet", {**TRIPLET, "params": {"p": 0.5}}, 422, "params.p", "greater than or equal to 1"),
    ("triplet-margin", "triplet", {**TRIPLET, "params": {"margin": 0}}, 422, "params.margin", "greater than 0"),
    ("triplet-squared-p", "triplet", {**TRIPLET, "params": {"squared": True, "p": 3}}, 422, "params", "squared=false"),
    ("triplet-non-finite", "triplet", {**TRIPLET, "anchor": [[0.0, 1e39]]}, 422, "anchor", "non-finite"),
    ("ranking-2d", "margin_ranking", {"x1": [[0.5]], "x2": [0.1], "targets": [1]}, 422, "x1", "expected shape (N)"),
    ("ranking-label", "margin_ranking", {"x1": [0.5], "x2": [0.1], "targets": [0]}, 422, "targets", "one of -1, 1"),
    ("batch-level-weights", "wasserstein", {**SCORES, "weights": [1, 1, 1]}, 422, "weights", "whole batch"),
    (
        "batch-level-weights-none",
        "adversarial",
        {**LOGITS, "weights": [1], "reduction": "none"},
        422,
        "weights",
        "no sample weights",
    ),
    ("gan-mode", "wasserstein", {**SCORES, "params": {"mode": "discriminator"}}, 422, "params.mode", "critic"),
    (
        "gan-formulation",
        "adversarial",
        {**LOGITS, "params": {"formulation": "wgan"}},
        422,
        "params.formulation",
        "non_saturating",
    ),
    ("scores-2d", "wasserstein", {**SCORES, "fake_scores": [[0.0, 1.0]]}, 422, "fake_scores", "expected shape (M)"),
    ("scores-empty", "wasserstein", {**SCORES, "fake_scores": []}, 422, "fake_scores", "empty"),
    ("scores-missing", "adversarial", {"real_logits": [1.0]}, 422, "fake_logits", "required"),
    ("bins-range", "emd", {**BINS, "predictions": [[0.2, 1.3, 0.5]]}, 422, "predictions", "[0.0, 1.0]"),
    ("bins-negative", "emd", {**BINS, "targets": [[0.5, -0.1, 0.6]]}, 422, "targets", "index [0, 1]"),
    ("bins-zero-row", "earth_movers", {**BINS, "targets": [[0, 0, 0]]}, 422, "targets", "positive sum"),
    ("bins-count", "earth_movers", {**BINS, "targets": [[0.0, 1.0]]}, 422, "targets", "(N=1, K=3)"),
    ("bins-p", "earth_movers", {**BINS, "params": {"p": 3}}, 422, "params.p", "1 or 2"),
    ("float32-overflow", "contrastive", {**PAIRS, "x1": [[1e20, 0.0], [1.0, 1.0]]}, 422, None, "overflow float32"),
    (
        "float32-sum-overflow",
        "mse",
        {"predictions": [[1.7e19], [1.7e19]], "targets": [[0.0], [0.0]], "reduction": "sum"},
        422,
        None,
        "reduced loss overflows float32",
    ),
]


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
