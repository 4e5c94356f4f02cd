"""The Open Inference Protocol, spoken by tritonclient (unchanged) to a real server."""

import gzip
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.server import Server, running_server

RNG = np.random.default_rng(11)
LOGITS = RNG.normal(size=(8, 5)).astype(np.float32)
BINARY = (RNG.uniform(size=(8, 5)) > 0.7).astype(np.float32)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server() as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    connection = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield connection
    connection.close()


def tensor(name: str, array: np.ndarray, binary: bool) -> triton.InferInput:
    datatype = {np.float32: "FP32", np.float64: "FP64", np.int64: "INT64", np.int32: "INT32"}[array.dtype.type]
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def rest(server: Server, name: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/loss/{name}", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_server_and_model_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.is_model_ready("focal")
    metadata = client.get_model_metadata("focal")
    assert [i["name"] for i in metadata["inputs"]] == ["predictions", "targets", "weights"]
    assert [o["name"] for o in metadata["outputs"]] == ["loss", "per_sample", "gradient_predictions"]
    config = client.get_model_config("sparse_cross_entropy")
    assert config["max_batch_size"] == 0
    assert {i["name"]: i["data_type"] for i in config["input"]}["targets"] == "TYPE_INT64"
    assert {m["name"] for m in client.get_model_repository_index()} >= {"focal", "mse"}
    # a loss that is one value for the batch takes no sample weights, so its metadata lists none
    batch_level = client.get_model_metadata("wasserstein")
    assert [i["name"] for i in batch_level["inputs"]] == ["real_scores", "fake_scores", "real_weights", "fake_weights"]
    assert "weights" not in {i["name"] for i in client.get_model_config("wasserstein")["input"]}
    # MONAI's batch makes dice batch-level only with that param: its weights stay, optional
    assert {i["name"]: i["optional"] for i in client.get_model_config("dice")["input"]}["weights"] is True


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infer_equals_rest(client: triton.InferenceServerClient, server: Server, binary: bool, dtype: type) -> None:
    inputs = [tensor("predictions", LOGITS.astype(dtype), binary), tensor("targets", BINARY.astype(dtype), binary)]
    outputs = [
        triton.InferRequestedOutput(n, binary_data=binary) for n in ("loss", "per_sample", "gradient_predictions")
    ]
    result = client.infer("focal", inputs, outputs=outputs, parameters={"from_logits": True, "gamma": 1.5})
    expected = rest(
        server,
        "focal",
        {
            "predictions": LOGITS.astype(dtype).tolist(),
            "targets": BINARY.tolist(),
            "outputs": ["per_sample", "gradients"],
            "params": {"from_logits": True, "gamma": 1.5},
            "dtype": np.dtype(dtype).name,
        },
    )
    assert result.as_numpy("loss").dtype == dtype
    np.testing.assert_array_equal(result.as_numpy("loss"), np.asarray(expected["loss"], dtype))
    np.testing.assert_array_equal(result.as_numpy("per_sample"), np.asarray(expected["per_sample"], dtype))
    np.testing.assert_array_equal(
        result.as_numpy("gradient_predictions"), np.asarray(expected["gradients"]["predictions"], dtype)
    )


def test_int64_labels_weights_and_list_params(client: triton.InferenceServerClient, server: Server) -> None:
    labels = np.array([0, 4, 2, -100, 1, 3, 3, 0], dtype=np.int64)
    weights = np.linspace(0.5, 2.0, 8).astype(np.float32)
    inputs = [tensor("predictions", LOGITS, True), tensor("targets", labels, True), tensor("weights", weights, True)]
    params = {"from_logits": True, "class_weights": "[1, 2, 1, 0.5, 3]", "label_smoothing": 0.1}
    result = client.infer("sparse_cross_entropy", inputs, parameters=params)  # no outputs named: all, binary
    expected = rest(
        server,
        "sparse_cross_entropy",
        {
            "predictions": LOGITS.tolist(),
            "targets": labels.tolist(),
            "weights": weights.tolist(),
            "outputs": ["per_sample", "gradients"],
            "params": {"from_logits": True, "class_weights": [1, 2, 1, 0.5, 3], "label_smoothing": 0.1},
        },
    )
    assert result.as_numpy("loss") == np.float32(expected["loss"])
    np.testing.assert_array_equal(
        result.as_numpy("gradient_predictions"), np.float32(expected["gradients"]["predictions"])
    )


def test_reduction_none(client: triton.InferenceServerClient) -> None:
    inputs = [tensor("predictions", LOGITS, False), tensor("targets", LOGITS + 1, False)]
    result = client.infer(
        "mse", inputs, outputs=[triton.InferRequestedOutput("loss")], parameters={"reduction": "none"}
    )
    np.testing.assert_allclose(result.as_numpy("loss"), np.ones(8, np.float32), rtol=1e-6)


@pytest.mark.parametrize(
    ("model", "inputs", "params", "message"),
    [
        ("focall", [("predictions", LOGITS)], {}, "unknown model 'focall'; did you mean focal"),
        ("bce", [("predictions", LOGITS)], {}, "unknown model 'bce'; did you mean binary_cross_entropy"),
        (
            "focal",
            [("predictions", LOGITS), ("targets", BINARY[:, :2])],
            {"from_logits": True},
            "targets: expected shape",
        ),
        ("focal", [("predictions", LOGITS), ("targets", BINARY)], {"gama": 2}, "parameter gama: Extra inputs"),
        ("focal", [("predictions", LOGITS)], {}, "missing input(s) targets"),
        ("focal", [("predictions", LOGITS), ("targets", BINARY), ("logits", LOGITS)], {}, "no input 'logits'"),
        ("focal", [("predictions", LOGITS), ("targets", BINARY)], {}, "probabilities must lie in [0.0, 1.0]"),
    ],
)
def test_errors_reach_tritonclient(
    client: triton.InferenceServerClient,
    model: str,
    inputs: list[tuple[str, np.ndarray]],
    params: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, [tensor(n, a, True) for n, a in inputs], parameters=params)
    assert message in caught.value.message()
    assert caught.value.status() in ("400", "404")


def raw_infer(server: Server, header: dict[str, Any], blobs: bytes, **headers: str) -> httpx.Response:
    body = orjson.dumps(header)
    return httpx.post(
        f"{server.url}/v2/models/mse/infer",
        content=body + blobs,
        headers={"Inference-Header-Content-Length": str(len(body)), **headers},
    )


def mse_header(size: int, shape: list[int]) -> dict[str, Any]:
    tensors = [
        {"name": n, "shape": shape, "datatype": "FP32", "parameters": {"binary_data_size": size}}
        for n in ("predictions", "targets")
    ]
    return {"inputs": tensors, "outputs": [{"name": "loss"}]}


def test_lying_binary_headers_are_400(server: Server) -> None:
    two = np.ones((2, 1), np.float32).tobytes()
    cases = [
        (mse_header(8, [2, 1]), two),  # the body ends before the second tensor
        (mse_header(12, [2, 1]), two * 2),  # size does not match the shape
        (mse_header(8, [2, 1]), two * 3),  # bytes that no input claims
    ]
    for header, blobs in cases:
        response = raw_infer(server, header, blobs)
        assert response.status_code == 400, response.text
        assert response.json().keys() == {"error"}
    body = orjson.dumps(mse_header(8, [2, 1]))
    too_long = httpx.post(
        f"{server.url}/v2/models/mse/infer",
        content=body + two * 2,
        headers={"Inference-Header-Content-Length": "100000"},
    )
    assert too_long.status_code == 400 and "does not fit" in too_long.json()["error"]


def test_gzip_request_and_json_only_response(server: Server) -> None:
    blobs = np.array([[3.0]], np.float32).tobytes() + np.array([[1.0]], np.float32).tobytes()
    body = orjson.dumps(mse_header(4, [1, 1]))
    response = httpx.post(
        f"{server.url}/v2/models/mse/infer",
        content=gzip.compress(body + blobs),
        headers={"Inference-Header-Content-Length": str(len(body)), "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["outputs"][0]["data"] == [4.0]


def test_unknown_v2_path_has_the_protocol_error_shape(server: Server) -> None:
    response = httpx.get(f"{server.url}/v2/models/focal/nothing")
    assert response.status_code == 404 and response.json().keys() == {"error"}


def inference_stats(client: triton.InferenceServerClient, model: str = "") -> dict[str, dict[str, Any]]:
    """Each model's entry of the statistics extension, by name."""
    result = client.get_inference_statistics(model_name=model)
    return {entry["name"]: entry for entry in result["model_stats"]}


def test_statistics_count_each_models_requests(client: triton.InferenceServerClient, server: Server) -> None:
    assert "statistics" in client.get_server_metadata()["extensions"]
    before = inference_stats(client)
    assert set(before) >= {"huber", "log_cosh", "focal"} and "l2" not in before  # canonical names only
    started = time.time() * 1000
    good = [tensor("predictions", LOGITS, True), tensor("targets", LOGITS + 0.5, True)]
    bad = [tensor("predictions", LOGITS, True), tensor("targets", LOGITS[:, :2], True)]
    for _ in range(3):
        client.infer("huber", good)
    for _ in range(2):
        with pytest.raises(InferenceServerException):
            client.infer("huber", bad)
    rest(server, "huber", {"predictions": LOGITS.tolist(), "targets": LOGITS.tolist()})  # REST counts too
    client.infer("log_cosh", good, model_version="1")

    (huber,) = client.get_inference_statistics(model_name="huber")["model_stats"]
    assert (huber["name"], huber["version"]) == ("huber", "1")
    stats = huber["inference_stats"]
    old = before["huber"]["inference_stats"]
    assert stats["success"]["count"] - old["success"]["count"] == 4
    assert stats["fail"]["count"] - old["fail"]["count"] == 2
    assert huber["inference_count"] - before["huber"]["inference_count"] == 4
    assert huber["execution_count"] == huber["inference_count"] == stats["success"]["count"]
    assert stats["fail"]["ns"] > old["fail"]["ns"]
    for phase in ("compute_input", "compute_infer", "compute_output"):
        assert stats[phase]["count"] == stats["success"]["count"]
        assert stats[phase]["ns"] > old[phase]["ns"]
    parts = sum(stats[phase]["ns"] for phase in ("compute_input", "compute_infer", "compute_output"))
    assert parts <= stats["success"]["ns"] + 1000  # the phases make up the answer (rounding aside)
    assert stats["queue"]["ns"] == 0 and huber["batch_stats"] == []
    assert started - 1000 <= huber["last_inference"] <= time.time() * 1000 + 1000

    after = inference_stats(client)  # every model: this test's requests, only where they went
    assert set(after) == set(before)
    assert after["huber"]["inference_stats"]["success"]["count"] == stats["success"]["count"]
    versioned = client.get_inference_statistics(model_name="log_cosh", model_version="1")["model_stats"]
    assert versioned == [after["log_cosh"]]
    assert after["log_cosh"]["inference_count"] - before["log_cosh"]["inference_count"] == 1
    assert after["log_cosh"]["inference_stats"]["fail"] == before["log_cosh"]["inference_stats"]["fail"]
    untouched = [n for n in after if n not in ("huber", "log_cosh", "focal", "sparse_cross_entropy", "mse")]
    assert all(after[n]["inference_count"] == before[n]["inference_count"] for n in untouched)


def test_statistics_of_an_unknown_model(client: triton.InferenceServerClient, server: Server) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.get_inference_statistics(model_name="hubr")
    assert caught.value.status() == "404" and "did you mean huber" in caught.value.message()
    response = httpx.get(f"{server.url}/v2/models/l2/stats")  # an alias is not a model name
    assert response.status_code == 404 and response.json().keys() == {"error"}
