"""``perceptual`` through the service: LOSSD_FEATURE_MODELS, the 409 without it, the card
listing the configured extractors, validation against the extractor, a real server."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings, parse_feature_models
from tests.feature_models import conv_extractor, reference_per_sample, softmax_extractor, write_extractors
from tests.kernels.harness import evaluate
from tests.server import running_server

RNG = np.random.default_rng(12)
PREDICTIONS = RNG.normal(size=(3, 3, 6, 7))
TARGETS = RNG.normal(size=(3, 3, 6, 7))
BODY = {"predictions": PREDICTIONS.tolist(), "targets": TARGETS.tolist()}
OVERFLOW = PREDICTIONS.tolist()
OVERFLOW[1][2][3][4] = 1e39  # inf in float32


@pytest.fixture(scope="module")
def extractors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("extractors")
    paths = write_extractors(directory)
    paths["unpadded"] = directory / "unpadded.onnx"
    onnx.save(conv_extractor(padding=0), paths["unpadded"])
    paths["softmax"] = directory / "softmax.onnx"
    onnx.save(softmax_extractor(), paths["softmax"])
    return paths


@pytest.fixture(scope="module")
def configured(extractors: dict[str, Path]) -> Iterator[TestClient]:
    settings = Settings(provider="cpu", feature_models={k: str(v) for k, v in extractors.items()})
    with TestClient(create_app(settings), raise_server_exceptions=True) as test_client:
        yield test_client


def test_without_a_feature_model_the_loss_is_409_and_says_how(client: TestClient) -> None:
    response = client.post("/loss/perceptual", json=BODY)
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["field"] == "params.feature_model"
    assert "LOSSD_FEATURE_MODELS=name=/path/to/extractor.onnx" in problem["detail"]
    assert client.get("/losses/perceptual/onnx").status_code == 409
    card = client.get("/losses/perceptual").json()
    field = card["params"]["properties"]["feature_model"]
    assert field["anyOf"][0]["enum"] == [] and "None is configured here" in field["description"]
    assert card["gradients"] == []
    assert "perceptual" in {c["name"] for c in client.get("/losses?task=generative").json()["losses"]}


def test_values_match_the_reference(configured: TestClient, extractors: dict[str, Path]) -> None:
    weights = [1.0, 0.5, 2.0]
    response = configured.post(
        "/loss/perceptual",
        json={**BODY, "weights": weights, "dtype": "float64", "outputs": ["loss", "per_sample", "gradients"]},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    expected = reference_per_sample(extractors["conv"], PREDICTIONS, TARGETS)
    np.testing.assert_allclose(result["per_sample"], expected, rtol=1e-6)
    np.testing.assert_allclose(result["loss"], np.dot(weights, expected) / sum(weights), rtol=1e-6)
    # the kernel's own gradient (checked against torch and finite differences in tests/kernels)
    kernel = evaluate("perceptual", {"predictions": PREDICTIONS, "targets": TARGETS}, weights=weights)
    np.testing.assert_allclose(result["gradients"]["predictions"], kernel.gradients["predictions"], rtol=1e-12)
    assert np.shape(result["gradients"]["predictions"]) == PREDICTIONS.shape
    assert result["count"] == 3 and result["dtype"] == "float64"


def v2_body(outputs: list[str] | None, model: str) -> dict[str, Any]:
    tensors = [
        {"name": name, "shape": list(array.shape), "datatype": "FP64", "data": array.ravel().tolist()}
        for name, array in (("predictions", PREDICTIONS), ("targets", TARGETS))
    ]
    body: dict[str, Any] = {"inputs": tensors, "parameters": {"feature_model": model, "reduction": "sum"}}
    if outputs is not None:
        body["outputs"] = [{"name": name} for name in outputs]
    return body


def test_v2_returns_the_gradient(configured: TestClient) -> None:
    response = configured.post("/v2/models/perceptual/infer", json=v2_body(["loss", "gradient_predictions"], "conv"))
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert list(outputs) == ["loss", "gradient_predictions"]
    gradient = outputs["gradient_predictions"]
    assert gradient["shape"] == list(PREDICTIONS.shape) and gradient["datatype"] == "FP64"
    kernel = evaluate("perceptual", {"predictions": PREDICTIONS, "targets": TARGETS}, reduction="sum")
    np.testing.assert_allclose(np.reshape(gradient["data"], PREDICTIONS.shape), kernel.gradients["predictions"])
    everything = configured.post("/v2/models/perceptual/infer", json=v2_body(None, "conv")).json()
    assert [o["name"] for o in everything["outputs"]] == ["loss", "per_sample", "gradient_predictions"]


def test_an_extractor_without_a_backward_serves_the_loss_without_gradients(configured: TestClient) -> None:
    """REST answers ``gradients: {}``, V2 leaves the gradient out of "all outputs" and refuses it by name, and
    the card names the operator."""
    body = {**BODY, "params": {"feature_model": "softmax"}, "outputs": ["loss", "gradients"]}
    response = configured.post("/loss/perceptual", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["gradients"] == {} and response.json()["loss"] > 0
    everything = configured.post("/v2/models/perceptual/infer", json=v2_body(None, "softmax"))
    assert everything.status_code == 200, everything.text
    assert [o["name"] for o in everything.json()["outputs"]] == ["loss", "per_sample"]
    named = configured.post("/v2/models/perceptual/infer", json=v2_body(["gradient_predictions"], "softmax"))
    assert named.status_code == 400 and "no gradient_predictions" in named.json()["error"]
    description = configured.get("/losses/perceptual").json()["params"]["properties"]["feature_model"]["description"]
    assert "Without gradients here: feature_model 'softmax': Softmax node: operator Softmax has no backward" in (
        description
    )
    download = configured.get("/losses/perceptual/onnx?feature_model=softmax&gradients=true")
    assert 'filename="perceptual.feature_model=softmax.float32.fwd.onnx"' in download.headers["content-disposition"]


def test_choosing_a_model_by_name(configured: TestClient, extractors: dict[str, Path]) -> None:
    two = {"predictions": PREDICTIONS[:, :2].tolist(), "targets": TARGETS[:, :2].tolist()}
    result = configured.post("/loss/perceptual", json={**two, "params": {"feature_model": "pointwise64"}}).json()
    expected = reference_per_sample(extractors["pointwise64"], PREDICTIONS[:, :2], TARGETS[:, :2]).mean()
    assert result["loss"] == pytest.approx(expected, rel=1e-5)


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown-model", {**BODY, "params": {"feature_model": "vgg"}}, "params.feature_model", "configured: conv"),
    ("channels", {"predictions": PREDICTIONS[:, :2].tolist(), "targets": TARGETS[:, :2].tolist()}, "predictions",
     "C=3"),
    ("rank", {"predictions": PREDICTIONS[0].tolist(), "targets": TARGETS[0].tolist()}, "predictions", "(N, C, H, W)"),
    ("mismatch", {**BODY, "targets": TARGETS[:, :, :5].tolist()}, "targets", "expected shape"),
    ("non-finite", {**BODY, "predictions": OVERFLOW}, "predictions", "at index [1, 2, 3, 4]"),
    (
        "too-small",
        {"predictions": np.zeros((1, 3, 1, 1)).tolist(), "targets": np.zeros((1, 3, 1, 1)).tolist(),
         "params": {"feature_model": "unpadded"}},
        "predictions",
        "could not process",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("body", "field", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_422_naming_the_field(
    configured: TestClient, body: dict[str, Any], field: str, words: str
) -> None:
    response = configured.post("/loss/perceptual", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == field
    assert words in problem["detail"], problem["detail"]


def test_the_card_lists_the_configured_models(configured: TestClient) -> None:
    card = configured.get("/losses/perceptual").json()
    field = card["params"]["properties"]["feature_model"]
    assert field["anyOf"][0]["enum"] == ["conv", "pointwise64", "unpadded", "softmax"]
    assert "Configured here: conv, pointwise64, unpadded, softmax (default: conv)" in field["description"]
    assert card["gradients"] == ["predictions"] and "backward" in card["summary"]
    listed = {c["name"]: c for c in configured.get("/losses").json()["losses"]}
    assert listed["perceptual"] == card
    health = configured.get("/health").json()
    assert health["losses"] == len(listed)


def test_the_onnx_download_runs_the_whole_loss(configured: TestClient, extractors: dict[str, Path]) -> None:
    response = configured.get("/losses/perceptual/onnx?feature_model=conv&dtype=float64&gradients=true")
    assert response.status_code == 200
    assert 'filename="perceptual.feature_model=conv.float64.grad.onnx"' in response.headers["content-disposition"]
    onnx.checker.check_model(onnx.load(io.BytesIO(response.content)), full_check=True)
    session = ort.InferenceSession(response.content, providers=["CPUExecutionProvider"])
    per_sample, gradient = session.run(
        ["per_sample", "grad_predictions"],
        {"predictions": PREDICTIONS, "targets": TARGETS, "weights": np.ones(3), "mean": np.array(True)},
    )
    np.testing.assert_allclose(per_sample, reference_per_sample(extractors["conv"], PREDICTIONS, TARGETS), 1e-6)
    kernel = evaluate("perceptual", {"predictions": PREDICTIONS, "targets": TARGETS})
    np.testing.assert_allclose(gradient, kernel.gradients["predictions"], rtol=1e-12)
    assert configured.get("/losses/perceptual/onnx?feature_model=nope").status_code == 422


def test_the_environment_form_is_parsed() -> None:
    assert parse_feature_models(" a = x.onnx ,b=dir/y=z.onnx,") == {"a": "x.onnx", "b": "dir/y=z.onnx"}
    for bad, words in [("a", "not name=path"), ("a=x.onnx,a=y.onnx", "given twice"), ("=x.onnx", "not name=path")]:
        with pytest.raises(ValueError, match=words):
            parse_feature_models(bad)


@pytest.mark.server
def test_a_real_server_configured_from_the_environment(extractors: dict[str, Path]) -> None:
    env = {"LOSSD_FEATURE_MODELS": f"conv={extractors['conv']},pointwise64={extractors['pointwise64']}"}
    with running_server(env) as server:
        card = httpx.get(f"{server.url}/losses/perceptual").json()
        assert card["params"]["properties"]["feature_model"]["anyOf"][0]["enum"] == ["conv", "pointwise64"]
        response = httpx.post(f"{server.url}/loss/perceptual", json={**BODY, "reduction": "none", "dtype": "float64"})
        assert response.status_code == 200, response.text
        expected = reference_per_sample(extractors["conv"], PREDICTIONS, TARGETS)
        np.testing.assert_allclose(response.json()["loss"], expected, rtol=1e-6)
        assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    assert server.returncode == 0


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("vgg=/nowhere/vgg.onnx", "LOSSD_FEATURE_MODELS: Value error, vgg=/nowhere/vgg.onnx: no such file"),
        ("vgg", "is not name=path.onnx"),
        ("garbage", "not a valid ONNX model"),
    ],
)
def test_a_bad_configuration_stops_the_server_with_one_clear_line(tmp_path: Path, value: str, words: str) -> None:
    if value == "garbage":
        (tmp_path / "garbage.onnx").write_bytes(b"not a model")
        value = f"garbage={tmp_path / 'garbage.onnx'}"
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--port", "0"],
        env={"PATH": "/usr/bin:/bin", "LOSSD_FEATURE_MODELS": value, "LOSSD_NO_REEXEC": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("lossd: invalid configuration: "), result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_lossd_export_includes_the_configured_extractors(
    extractors: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.cli import main

    monkeypatch.setenv("LOSSD_FEATURE_MODELS", f"conv={extractors['conv']}")
    main(["export", str(tmp_path)])
    stems = {path.name for path in tmp_path.glob("perceptual.*.onnx")}
    assert stems == {
        f"perceptual.feature_model=conv.{d}.{k}.onnx" for d in ("float32", "float64") for k in ("fwd", "grad")
    }
