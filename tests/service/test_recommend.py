"""GET /losses/recommend follows the usual selection guidance."""

import pytest
from fastapi.testclient import TestClient

from kernels.recommend import RULES

CASES = [
    ("task=regression&outliers=true", ["huber", "mae", "log_cosh"], {"mse"}),
    ("task=regression&outliers=false", ["mse"], {"huber", "mae"}),
    ("output=logits&imbalanced=true", ["focal"], {"mse", "sparse_cross_entropy"}),
    ("task=imbalance", ["focal"], {"huber"}),
    ("task=classification&imbalanced=false", ["binary_cross_entropy", "sparse_cross_entropy"], {"focal"}),
]


@pytest.mark.parametrize(("query", "first", "absent"), CASES)
def test_ranking(client: TestClient, query: str, first: list[str], absent: set[str]) -> None:
    response = client.get(f"/losses/recommend?{query}")
    assert response.status_code == 200
    ranked = response.json()["recommendations"]
    names = [r["name"] for r in ranked]
    assert names[: len(first)] == first
    assert not absent & set(names)
    assert [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1))
    assert all(r["reason"] and r["title"] for r in ranked)
    assert len(names) == len(set(names))


def test_output_sets_from_logits_and_implies_the_task(client: TestClient) -> None:
    body = client.get("/losses/recommend?output=logits").json()
    assert body["query"]["task"] == "classification"
    focal = next(r for r in body["recommendations"] if r["name"] == "binary_cross_entropy")
    assert focal["params"] == {"from_logits": True}


def test_suggested_params_are_valid(client: TestClient) -> None:
    for query in ("", "output=probabilities", "output=logits&imbalanced=true"):
        for r in client.get(f"/losses/recommend?{query}").json()["recommendations"]:
            card = client.get(f"/losses/{r['name']}").json()
            assert set(r["params"]) <= set(card["params"].get("properties", {})), r


@pytest.mark.parametrize("query", ["task=astrology", "output=pixels", "outliers=perhaps", "colour=red"])
def test_bad_queries_are_422(client: TestClient, query: str) -> None:
    response = client.get(f"/losses/recommend?{query}")
    assert response.status_code == 422
    assert response.json()["field"] == query.split("=")[0]


def test_every_rule_has_a_reason() -> None:
    assert all(rule.reason.endswith((".", ")")) for rule in RULES)
