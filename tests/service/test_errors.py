"""Bad input gets a clear 4xx naming the field, never a 500."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

FOCAL = {"predictions": [[0.2, 0.7], [0.9, 0.1]], "targets": [[0, 1], [1, 0]]}
SPARSE = {"predictions": [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]], "targets": [2, 0]}
LOG_THIRD = [[-1.0986] * 3] * 4
CTC = {
    "predictions": [LOG_THIRD, LOG_THIRD],
    "targets": [[1, 2], [1, 1]],
    "input_lengths": [4, 3],
    "target_lengths": [2, 2],
}

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
    (
        "loss-overflow",
        "mse",
        {"predictions": [[3e38]], "targets": [[-3e38]]},
        422,
        "predictions",
        "sample 0 is not finite",
    ),
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
    ("ctc-blank-not-a-class", "ctc", {**CTC, "params": {"blank": 3}}, 422, "params.blank", "C = 3"),
    ("ctc-blank-negative", "ctc", {**CTC, "params": {"blank": -1}}, 422, "params.blank", "greater than or equal"),
    ("ctc-blank-in-target", "ctc", {**CTC, "targets": [[1, 0], [1, 1]]}, 422, "targets", "index [0, 1] is the blank"),
    (
        "ctc-blank-param-in-target",
        "ctc",
        {**CTC, "params": {"blank": 2}},
        422,
        "targets",
        "label 2 at index [0, 1] is the blank",
    ),
    ("ctc-label-range", "ctc", {**CTC, "targets": [[1, 3], [1, 1]]}, 422, "targets", "outside [0, 2]"),
    (
        "ctc-impossible",
        "ctc",
        {**CTC, "input_lengths": [4, 2]},
        422,
        "input_lengths",
        "sample 1 has input_length 2, but its target (target_length 2, 1 adjacent repeats",
    ),
    ("ctc-impossible-hint", "ctc", {**CTC, "input_lengths": [1, 3]}, 422, "input_lengths", "zero_infinity=true"),
    ("ctc-input-length-above-T", "ctc", {**CTC, "input_lengths": [5, 3]}, 422, "input_lengths", "outside [0, T=4]"),
    ("ctc-target-length-above-S", "ctc", {**CTC, "target_lengths": [3, 2]}, 422, "target_lengths", "[0, S=2]"),
    ("ctc-length-not-integer", "ctc", {**CTC, "input_lengths": [3.5, 3]}, 422, "input_lengths", "integers"),
    ("ctc-length-negative", "ctc", {**CTC, "target_lengths": [-1, 2]}, 422, "target_lengths", "count -1 at index [0]"),
    ("ctc-lengths-batch", "ctc", {**CTC, "input_lengths": [4]}, 422, "input_lengths", "N=2"),
    ("ctc-predictions-rank", "ctc", {**CTC, "predictions": LOG_THIRD}, 422, "predictions", "expected shape (N, T, C)"),
    ("ctc-non-finite", "ctc", {**CTC, "predictions": [LOG_THIRD, [[1e39] * 3] * 4]}, 422, "predictions", "non-finite"),
    ("unknown-loss", "focall", FOCAL, 404, "name", "did you mean focal"),
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
