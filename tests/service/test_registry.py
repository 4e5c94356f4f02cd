"""GET /health, /losses, /losses/{name}, /losses/{name}/onnx."""

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from kernels import REGISTRY
from kernels.spec import Properties
from service import __version__

API_CARD_KEYS = {
    "name",
    "title",
    "aliases",
    "task",
    "summary",
    "formula",
    "inputs",
    "params",
    "properties",
    "use_cases",
    "gradients",
    "equivalents",
    "references",
}


def test_health(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health == {
        "status": "ok",
        "version": __version__,
        "providers": ["CPUExecutionProvider"],
        "losses": len(REGISTRY),
    }


def test_every_card_is_complete(client: TestClient) -> None:
    cards = client.get("/losses").json()["losses"]
    assert [c["name"] for c in cards] == [s.name for s in REGISTRY]
    for card in cards:
        assert card.keys() == API_CARD_KEYS
        assert card["summary"] and card["formula"] and card["use_cases"] and card["references"]
        assert card["equivalents"], card["name"]
        assert card["params"]["type"] == "object"
        assert card["properties"].keys() == Properties.model_fields.keys()
        required = set(card["params"].get("required", []))
        for name, field in card["params"].get("properties", {}).items():
            assert field.get("description"), card["name"]
            assert ("default" in field) != (name in required), card["name"]


METRIC_LEARNING = {"arcface", "cosface", "nt_xent", "supcon", "circle", "triplet_hard", "triplet_semihard"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "task=regression",
            {"mse", "mae", "huber", "log_cosh", "smooth_l1", "msle", "mape", "poisson_nll", "gaussian_nll", "quantile"}
            | {"giou", "diou", "ciou", "crps"},
        ),
        (
            "task=regression&robust_to_outliers=true",
            {"mae", "huber", "log_cosh", "smooth_l1", "msle", "mape", "quantile", "giou", "diou", "ciou", "crps"},
        ),
        ("task=regression&convex=false", {"msle", "gaussian_nll", "giou", "diou", "ciou", "crps"}),
        ("task=regression&differentiable=false", {"mae", "msle", "mape", "quantile", "giou", "diou", "ciou", "crps"}),
        ("task=classification&differentiable=false", {"hinge", "categorical_hinge", "multi_margin"}),
        ("task=imbalance&convex=true", {"focal", "weighted_cross_entropy", "categorical_focal"}),
        (
            "task=ranking",
            {"contrastive", "triplet", "cosine_embedding", "margin_ranking", "hinge_embedding", *METRIC_LEARNING},
        ),
        ("task=ranking&convex=true", {"margin_ranking", "cosface", "hinge_embedding"}),
        ("task=generative&bounded_below=false", {"wasserstein"}),
        ("task=classification&convex=false", set()),
        ("task=classification&smooth_gradient=true", {"nll", "squared_hinge", "soft_margin", "multilabel_soft_margin"}),
    ],
)
def test_filters(client: TestClient, query: str, expected: set[str]) -> None:
    response = client.get(f"/losses?{query}")
    assert response.status_code == 200
    assert {c["name"] for c in response.json()["losses"]} == expected


@pytest.mark.parametrize("query", ["task=astrology", "convex=maybe", "colour=red"])
def test_bad_filters_are_422(client: TestClient, query: str) -> None:
    response = client.get(f"/losses?{query}")
    assert response.status_code == 422
    assert response.json()["field"] == query.split("=")[0]


def test_alias_resolves_to_the_canonical_card(client: TestClient) -> None:
    assert client.get("/losses/l2").json()["name"] == "mse"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_download_runs(client: TestClient, dtype: str) -> None:
    response = client.get(f"/losses/huber/onnx?dtype={dtype}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    model = onnx.load(io.BytesIO(response.content))
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(response.content)
    np_dtype = np.dtype(dtype)
    loss, grad = session.run(
        ["loss", "grad_predictions"],
        {
            "predictions": np.array([[3.0]], np_dtype),
            "targets": np.zeros((1, 1), np_dtype),
            "delta": np.array(1.0, np_dtype),
            "weights": np.ones(1, np_dtype),
            "mean": np.array(True),
        },
    )
    assert loss == pytest.approx(2.5) and grad[0, 0] == pytest.approx(1.0)


def test_onnx_variant_by_query(client: TestClient) -> None:
    logits = client.get("/losses/focal/onnx?from_logits=true&gradients=false").content
    probabilities = client.get("/losses/focal/onnx").content
    assert "Sigmoid" in {n.op_type for n in onnx.load(io.BytesIO(logits)).graph.node}
    assert "Sigmoid" not in {n.op_type for n in onnx.load(io.BytesIO(probabilities)).graph.node}
    assert client.get("/losses/focal/onnx?gamma=2").status_code == 422
    assert client.get("/losses/focal/onnx?from_logits=perhaps").status_code == 422


def test_onnx_numeric_choice_by_query(client: TestClient) -> None:
    """A numeric structural choice (multi_margin's p: Literal[1, 2]) is read from the query string."""
    squared = client.get("/losses/multi_margin/onnx?p=2&dtype=float64")
    assert squared.status_code == 200
    assert 'filename="multi_margin.p=2.float64.grad.onnx"' in squared.headers["content-disposition"]
    session = ort.InferenceSession(squared.content)
    feed = {
        "predictions": np.array([[0.0, 0.5, -1.0]]),
        "targets": np.array([0]),
        "margin": np.array(1.0),
        "class_weights": np.ones(1),
        "weights": np.ones(1),
        "mean": np.array(True),
    }
    (loss,) = session.run(["loss"], feed)
    assert loss == pytest.approx(1.5**2 / 3)
    problem = client.get("/losses/multi_margin/onnx?p=3")
    assert problem.status_code == 422 and problem.json()["field"] == "p"
