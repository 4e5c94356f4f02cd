"""POST /loss/composite and named composites, against the terms computed one by one."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient

from tests.server import running_server

RNG = np.random.default_rng(8)
P = RNG.uniform(0.05, 0.95, (2, 3, 4, 4))
Y = (RNG.uniform(size=(2, 3, 4, 4)) > 0.6).astype(float)
MASKS = {"predictions": P.tolist(), "targets": Y.tolist()}
LOGITS = RNG.normal(size=(4, 3))
LABELS = [0, 2, 1, 2]


def post(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def one(client: TestClient, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return post(client, f"/loss/{name}", {**body, "outputs": ["loss", "per_sample", "gradients"], "dtype": "float64"})


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_composite_is_the_weighted_sum_of_its_terms(client: TestClient, reduction: str) -> None:
    terms = [
        {"loss": "dice", "weight": 0.5, "params": {"smooth_nr": 0.01}},
        {"loss": "bce", "weight": 2.0},
    ]
    weights = None if reduction == "none" else [1.0, 0.25]
    body: dict[str, Any] = {**MASKS, "reduction": reduction} | ({"weights": weights} if weights else {})
    result = one(client, "composite", {**body, "terms": terms})
    dice = one(client, "dice", {**body, "params": {"smooth_nr": 0.01}})
    bce = one(client, "bce", body)
    for key in ("loss", "per_sample"):
        np.testing.assert_allclose(result[key], 0.5 * np.asarray(dice[key]) + 2.0 * np.asarray(bce[key]), rtol=1e-12)
    gradient = 0.5 * np.asarray(dice["gradients"]["predictions"]) + 2.0 * np.asarray(bce["gradients"]["predictions"])
    np.testing.assert_allclose(result["gradients"]["predictions"], gradient, rtol=1e-12, atol=1e-15)
    assert [t["loss"] for t in result["terms"]] == ["dice", "binary_cross_entropy"]
    assert [t["weight"] for t in result["terms"]] == [0.5, 2.0]
    np.testing.assert_allclose(result["terms"][0]["value"], dice["loss"], rtol=1e-12)
    np.testing.assert_allclose(result["terms"][1]["value"], bce["loss"], rtol=1e-12)
    assert result["reduction"] == reduction and result["count"] == 2 and result["dtype"] == "float64"


def test_mapped_inputs_and_integer_labels(client: TestClient) -> None:
    body = {
        "terms": [
            {"loss": "sparse_cross_entropy", "params": {"from_logits": True}, "inputs": {"predictions": "scores"}},
            {"loss": "multi_margin", "weight": 0.5, "inputs": {"predictions": "scores", "targets": "labels"}},
        ],
        "scores": LOGITS.tolist(),
        "targets": LABELS,
        "labels": LABELS,
        "outputs": ["loss", "gradients"],
        "dtype": "float64",
    }
    result = post(client, "/loss/composite", body)
    ce = one(
        client,
        "sparse_cross_entropy",
        {"predictions": LOGITS.tolist(), "targets": LABELS, "params": {"from_logits": True}},
    )
    margin = one(client, "multi_margin", {"predictions": LOGITS.tolist(), "targets": LABELS})
    np.testing.assert_allclose(result["loss"], ce["loss"] + 0.5 * margin["loss"], rtol=1e-12)
    expected = np.asarray(ce["gradients"]["predictions"]) + 0.5 * np.asarray(margin["gradients"]["predictions"])
    assert list(result["gradients"]) == ["scores"]
    np.testing.assert_allclose(result["gradients"]["scores"], expected, rtol=1e-12, atol=1e-15)


def test_a_repeated_composite_is_one_graph_and_one_run(client: TestClient) -> None:
    sessions = client.app.state.runtime.composites  # type: ignore[attr-defined]
    terms = [{"loss": "focal", "weight": 0.3}, {"loss": "tversky", "weight": 0.7}]
    post(client, "/loss/composite", {**MASKS, "terms": terms})
    builds, runs = sessions.builds, sessions.runs
    for weight in (0.1, 5.0):  # other weights and param values feed the same graph
        terms[1] = {"loss": "tversky", "weight": weight, "params": {"alpha": 0.2, "beta": 0.8}}
        post(client, "/loss/composite", {**MASKS, "terms": terms})
    assert (sessions.builds, sessions.runs) == (builds, runs + 2)


def test_named_composites_are_listed_with_derived_cards(client: TestClient) -> None:
    names = [c["name"] for c in client.get("/losses?task=segmentation").json()["losses"]]
    assert {"dice_bce", "focal_dice"} <= set(names)
    card = client.get("/losses/dice_bce").json()
    assert card["task"] == "segmentation" and card["gradients"] == ["predictions"]
    assert card["formula"] == r"\ell = 1\,\ell_{\text{dice}} + 1\,\ell_{\text{binary\_cross\_entropy}}"
    assert card["properties"]["bounded_below"] and not card["properties"]["convex"]
    assert [i["name"] for i in card["inputs"]] == ["predictions", "targets"]
    convex = [c["name"] for c in client.get("/losses?convex=true").json()["losses"]]
    assert "dice_bce" not in convex and "binary_cross_entropy" in convex
    onnx_model = client.get("/losses/dice_bce/onnx?dtype=float64")
    assert onnx_model.status_code == 200 and onnx_model.content[:2] == b"\x08\x0a"  # ir_version 10


def test_named_composite_computes_like_any_loss(client: TestClient) -> None:
    result = one(client, "dice_bce", MASKS)
    dice, bce = one(client, "dice", MASKS), one(client, "bce", MASKS)
    np.testing.assert_allclose(result["per_sample"], np.add(dice["per_sample"], bce["per_sample"]), rtol=1e-12)
    gradient = np.add(dice["gradients"]["predictions"], bce["gradients"]["predictions"])
    np.testing.assert_allclose(result["gradients"]["predictions"], gradient, rtol=1e-12, atol=1e-15)
    bad = client.post("/loss/dice_bce", json={**MASKS, "predictions": (P * 2).tolist()})
    assert bad.status_code == 422 and bad.json()["field"] == "predictions"


def test_named_composite_over_v2(client: TestClient) -> None:
    metadata = client.get("/v2/models/focal_dice").json()
    assert [i["name"] for i in metadata["inputs"]] == ["predictions", "targets", "weights"]
    assert [o["name"] for o in metadata["outputs"]] == ["loss", "per_sample", "gradient_predictions"]
    shape = list(P.shape)
    body = {
        "inputs": [
            {"name": "predictions", "shape": shape, "datatype": "FP64", "data": P.ravel().tolist()},
            {"name": "targets", "shape": shape, "datatype": "FP64", "data": Y.ravel().tolist()},
        ]
    }
    response = client.post("/v2/models/focal_dice/infer", json=body)
    assert response.status_code == 200, response.text
    loss = next(o for o in response.json()["outputs"] if o["name"] == "loss")["data"][0]
    expected = one(client, "focal", MASKS)["loss"] + one(client, "dice", MASKS)["loss"]
    np.testing.assert_allclose(loss, expected, rtol=1e-12)


DICE_BCE = [{"loss": "dice"}, {"loss": "bce"}]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"terms": [{"loss": "dice"}, {"loss": "dcie"}], **MASKS}, "terms[1].loss", "did you mean"),
        ({"terms": [{"loss": "focal", "params": {"gamma": -1}}], **MASKS}, "terms[0].params.gamma", "greater"),
        ({"terms": [{"loss": "focal", "params": {"gama": 1}}], **MASKS}, "terms[0].params.gama", "Extra"),
        ({"terms": DICE_BCE, "predictions": MASKS["predictions"]}, "targets", "required by terms[0] (dice)"),
        ({"terms": [{"loss": "mse"}, {"loss": "wasserstein"}], **MASKS}, "terms[1].loss", "whole batch"),
        ({"terms": [{"loss": "sparse_cross_entropy"}, {"loss": "mse"}], **MASKS}, "terms[1].loss", "dtypes"),
        ({"terms": [{"loss": "cross_entropy"}, {"loss": "dice"}], **MASKS}, "terms[1].loss", "incompatible"),
        ({"terms": DICE_BCE, **MASKS, "colour": 1}, "colour", "no term takes"),
        ({"terms": [{"loss": "dice", "inputs": {"preds": "p"}}], **MASKS}, "terms[0].inputs.preds", "no input"),
        ({"terms": [], **MASKS}, "terms", "at least 1"),
        ({"terms": [{"loss": "dice", "weight": "heavy"}], **MASKS}, "terms.0.weight", "number"),
        ({"terms": DICE_BCE, **MASKS, "predictions": (P + 1).tolist()}, "predictions", "[0.0, 1.0]"),
        ({"terms": DICE_BCE, **MASKS, "weights": [1.0]}, "weights", "one weight per sample"),
        (
            {
                "terms": [{"loss": "dice"}, {"loss": "mse", "inputs": {"predictions": "p2", "targets": "t2"}}],
                **MASKS,
                "p2": [[1.0]],
                "t2": [[0.0]],
            },
            "p2",
            "samples",
        ),
        (
            {
                "terms": [{"loss": "contrastive", "inputs": {"x1": "a", "x2": "b"}}],
                "a": [[1.0]],
                "b": [[1.0, 2.0]],
                "targets": [1],
            },
            "b",
            "shape",
        ),
        (
            {"terms": [{"loss": "bce", "params": {"pos_weight": [1.0, 2.0]}}], **MASKS},
            "terms[0].params.pos_weight",
            "one per class",
        ),
    ],
)
def test_bad_compositions_are_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str, words: str
) -> None:
    response = client.post("/loss/composite", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == field and words in problem["detail"], problem


def test_terms_sharing_kernel_functions_are_the_sum_of_their_terms(client: TestClient) -> None:
    """Issue 18: dice + tversky (their kernels share function names) on a channel-first input was a 500."""
    rng = np.random.default_rng(18)
    masks = {
        "predictions": rng.uniform(0.05, 0.95, (1, 4, 5, 10)).tolist(),
        "targets": (rng.uniform(size=(1, 4, 5, 10)) > 0.6).astype(float).tolist(),
    }
    result = one(client, "composite", {**masks, "terms": [{"loss": "dice"}, {"loss": "tversky"}]})
    dice, tversky = one(client, "dice", masks), one(client, "tversky", masks)
    np.testing.assert_allclose(result["loss"], dice["loss"] + tversky["loss"], rtol=1e-12)
    gradient = np.add(dice["gradients"]["predictions"], tversky["gradients"]["predictions"])
    np.testing.assert_allclose(result["gradients"]["predictions"], gradient, rtol=1e-12, atol=1e-15)


def test_a_composite_graph_that_cannot_be_built_is_a_422_naming_the_terms(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(model: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the optimizer gave up\nmore detail")

    monkeypatch.setattr("kernels.composite.onnxscript.optimizer.optimize", broken)
    x = RNG.normal(size=(3, 4)).tolist()
    terms = [
        {"loss": "log_cosh", "weight": 0.5},
        {"loss": "smooth_l1"},
        {"loss": "mape"},
    ]  # a structure built nowhere else
    response = client.post("/loss/composite", json={"terms": terms, "predictions": x, "targets": x})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == "terms", problem
    assert "log_cosh + smooth_l1 + mape cannot be built as one graph" in problem["detail"], problem
    assert "the optimizer gave up" in problem["detail"] and "more detail" not in problem["detail"], problem


START = 240.0
"""Seconds a server may take to start: it builds every graph, on a shared machine."""
CONFIGURED = {
    "embedding_mix": {
        "title": "Contrastive + cosine embedding",
        "terms": [
            {"loss": "contrastive", "weight": 1.0, "params": {"margin": 2.0}},
            {"loss": "cosine_embedding", "weight": 0.5, "inputs": {"targets": "signs"}},
        ],
    },
    # Element-wise terms: a request of one value per sample, (N,), once had no graph (a 500).
    "regression_mix": {"terms": [{"loss": "mse", "weight": 0.5}, {"loss": "mae", "weight": 1.0}]},
}


def test_configured_composites_are_served_like_any_loss() -> None:
    a, b = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))
    similar, signs = [1.0, 0.0, 1.0, 0.0], [1.0, -1.0, 1.0, -1.0]
    env = {"LOSSD_COMPOSITES": json.dumps(CONFIGURED), "LOSSD_PROVIDER": "cpu"}
    with running_server(env, timeout=START) as server:
        card = httpx.get(f"{server.url}/losses/embedding_mix").json()
        assert card["task"] == "ranking" and [i["name"] for i in card["inputs"]] == ["x1", "x2", "targets", "signs"]
        body = {"x1": a.tolist(), "x2": b.tolist(), "targets": similar, "signs": signs, "dtype": "float64"}
        mixed = httpx.post(f"{server.url}/loss/embedding_mix", json=body).json()
        contrastive = httpx.post(
            f"{server.url}/loss/contrastive",
            json={
                "x1": a.tolist(),
                "x2": b.tolist(),
                "targets": similar,
                "params": {"margin": 2.0},
                "dtype": "float64",
            },
        ).json()
        cosine = httpx.post(
            f"{server.url}/loss/cosine_embedding",
            json={"x1": a.tolist(), "x2": b.tolist(), "targets": signs, "dtype": "float64"},
        ).json()
        np.testing.assert_allclose(mixed["loss"], contrastive["loss"] + 0.5 * cosine["loss"], rtol=1e-12)
        flat = {"predictions": [0.5, 2.0, -1.0], "targets": [0.0, 1.0, 1.0], "dtype": "float64"}
        answer = httpx.post(f"{server.url}/loss/regression_mix", json=flat)
        assert answer.status_code == 200, answer.text
        assert answer.json()["loss"] == pytest.approx(0.5 * 5.25 / 3 + 3.5 / 3, rel=1e-12)
        connection = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
        try:
            inputs = []
            for name, array in (("x1", a), ("x2", b), ("targets", np.array(similar)), ("signs", np.array(signs))):
                tensor = triton.InferInput(name, list(array.shape), "FP64")
                tensor.set_data_from_numpy(array, binary_data=True)
                inputs.append(tensor)
            result = connection.infer("embedding_mix", inputs)
            np.testing.assert_allclose(result.as_numpy("loss"), mixed["loss"], rtol=1e-12)
        finally:
            connection.close()


def test_a_bad_configured_composite_stops_start_up() -> None:
    bad = {"broken": {"terms": [{"loss": "mse"}, {"loss": "wasserstein"}]}}
    with (
        pytest.raises(RuntimeError, match=r"broken.*terms\[1\]\.loss"),
        running_server({"LOSSD_COMPOSITES": json.dumps(bad), "LOSSD_PROVIDER": "cpu"}, timeout=START),
    ):
        pass


# MONAI's own DiceCELoss test case (tests/losses/test_dice_ce_loss.py): (2, 2, 3) inputs, (2, 1, 3) label maps;
# the values are monai 1.6.1's DiceCELoss in float64.
MONAI_X = [[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]]
MONAI_LABELS = [[[0, 0, 1]], [[0, 1, 0]]]


@pytest.mark.parametrize(
    "targets",
    [MONAI_LABELS, [[0, 0, 1], [0, 1, 0]], [[[1, 1, 0], [0, 0, 1]], [[1, 0, 1], [0, 1, 0]]]],
    ids=["labels-n1", "labels-n", "one-hot"],
)
def test_dice_ce_is_monai_dice_ce_loss(client: TestClient, targets: Any) -> None:
    """dice_ce is DiceCELoss() (to_onehot_y=True for label maps); its softmax=True form the ad-hoc composite."""
    result = post(client, "/loss/dice_ce", {"predictions": MONAI_X, "targets": targets, "dtype": "float64"})
    assert result["loss"] == pytest.approx(0.31326168751822286, rel=1e-12)
    softmax = [
        {"loss": "dice", "weight": 0.5, "params": {"activation": "softmax"}},
        {"loss": "channel_cross_entropy", "weight": 2.0, "params": {"from_logits": True}},
    ]
    body = {"terms": softmax, "predictions": MONAI_X, "targets": targets, "dtype": "float64"}
    assert post(client, "/loss/composite", body)["loss"] == pytest.approx(0.7694829433012482, rel=1e-12)
    softmax = [{**softmax[0], "weight": 1.0, "params": {"activation": "softmax", "include_background": False}}]
    softmax.append({"loss": "channel_cross_entropy", "params": {"from_logits": True}})
    body = {**body, "terms": softmax}
    assert post(client, "/loss/composite", body)["loss"] == pytest.approx(0.6688551376515994, rel=1e-12)


def test_dice_ce_needs_two_channels(client: TestClient) -> None:
    """One channel: cross-entropy over it is 0, and MONAI switches to BCE (dice + binary_cross_entropy here)."""
    response = client.post("/loss/dice_ce", json={"predictions": [[[0.2, 0.7]]], "targets": [[[0, 1]]]})
    assert response.status_code == 422, response.text
    assert "binary_cross_entropy" in response.json()["detail"]
