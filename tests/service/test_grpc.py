"""The Open Inference Protocol over gRPC, spoken by tritonclient.grpc (unchanged) to a real
server: health, metadata, config, statistics, infer with FP32/FP64/INT64 (raw, as
tritonclient sends them) and typed contents, gradients, a named composite, results equal
to POST /loss/{name}, every error class with its status code, metrics with
protocol="grpc", grpc.health.v1, and a guarded server (API keys, limits)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from service.grpc import grpc_predict_v2_pb2 as pb
from service.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.server import Server, free_port, running_server

RNG = np.random.default_rng(16)
LOGITS = RNG.normal(size=(8, 5)).astype(np.float32)
BINARY = (RNG.uniform(size=(8, 5)) > 0.7).astype(np.float32)
MIX = {"mix": {"terms": [{"loss": "dice"}, {"loss": "bce", "weight": 0.5}], "task": "segmentation"}}
KEY = "grpc-key-0123456789"
MAX_ELEMENTS = 1000
MAX_BODY = 64 * 1024

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Server, str]]:
    port = free_port()
    env = {"LOSSD_GRPC_PORT": str(port), "LOSSD_PROVIDER": "cpu", "LOSSD_COMPOSITES": json.dumps(MIX)}
    with running_server(env, timeout=180) as server:
        yield server, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(served: tuple[Server, str]) -> Server:
    return served[0]


@pytest.fixture(scope="module")
def client(served: tuple[Server, str]) -> Iterator[triton.InferenceServerClient]:
    connection = triton.InferenceServerClient(served[1])
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def channel(served: tuple[Server, str]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(served[1]) as opened:
        yield opened


def tensor(name: str, array: np.ndarray) -> triton.InferInput:
    datatype = {np.float32: "FP32", np.float64: "FP64", np.int64: "INT64", np.int32: "INT32"}[array.dtype.type]
    found = triton.InferInput(name, list(array.shape), datatype)
    found.set_data_from_numpy(array)
    return found


def rest(server: Server, name: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/loss/{name}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def refused(call: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_health_metadata_config_and_statistics(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("focal") and client.is_model_ready("focal", "1")
    assert client.get_server_metadata(as_json=True)["name"] == "lossd"
    metadata = client.get_model_metadata("focal", as_json=True)
    assert [i["name"] for i in metadata["inputs"]] == ["predictions", "targets", "weights"]
    assert [o["name"] for o in metadata["outputs"]] == ["loss", "per_sample", "gradient_predictions"]
    config = client.get_model_config("sparse_cross_entropy", as_json=True)["config"]
    assert config["platform"] == "onnxruntime_onnx" and config["backend"] == "onnxruntime"
    assert {i["name"]: i["data_type"] for i in config["input"]}["targets"] == "TYPE_INT64"
    assert "from_logits" in config["parameters"]
    before = client.get_inference_statistics("mse", as_json=True)["model_stats"][0].get("inference_count", "0")
    client.infer("mse", [tensor("predictions", LOGITS), tensor("targets", LOGITS)])
    stats = client.get_inference_statistics("mse", as_json=True)["model_stats"][0]
    assert int(stats["inference_count"]) == int(before) + 1
    assert int(stats["inference_stats"]["compute_infer"]["ns"]) > 0
    every = client.get_inference_statistics(as_json=True)["model_stats"]
    assert {"mse", "focal", "mix"} <= {entry["name"] for entry in every}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infer_with_gradients_equals_rest(
    client: triton.InferenceServerClient, server: Server, dtype: type[np.floating[Any]]
) -> None:
    inputs = [tensor("predictions", LOGITS.astype(dtype)), tensor("targets", BINARY.astype(dtype))]
    outputs = [triton.InferRequestedOutput(n) for n in ("loss", "per_sample", "gradient_predictions")]
    # tritonclient 2.41's gRPC client sends no float parameters: the loss's params take text too
    result = client.infer("focal", inputs, outputs=outputs, parameters={"from_logits": True, "gamma": "1.5"})
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
    assert result.get_response().model_name == "focal"
    assert result.as_numpy("loss").dtype == dtype
    np.testing.assert_array_equal(result.as_numpy("loss").reshape(()), np.asarray(expected["loss"], dtype))
    np.testing.assert_array_equal(result.as_numpy("per_sample"), np.asarray(expected["per_sample"], dtype))
    np.testing.assert_array_equal(
        result.as_numpy("gradient_predictions"), np.asarray(expected["gradients"]["predictions"], dtype)
    )


def test_int64_labels_weights_and_list_params(client: triton.InferenceServerClient, server: Server) -> None:
    labels = np.array([0, 4, 2, -100, 1, 3, 3, 0], dtype=np.int64)
    weights = np.linspace(0.5, 2.0, 8).astype(np.float32)
    inputs = [tensor("predictions", LOGITS), tensor("targets", labels), tensor("weights", weights)]
    params = {"from_logits": True, "class_weights": "[1, 2, 1, 0.5, 3]", "label_smoothing": "0.1"}
    result = client.infer("sparse_cross_entropy", inputs, parameters=params)  # no outputs named: all
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
    assert [o.name for o in result.get_response().outputs] == ["loss", "per_sample", "gradient_predictions"]
    assert result.as_numpy("loss").reshape(()) == np.float32(expected["loss"])
    np.testing.assert_array_equal(
        result.as_numpy("gradient_predictions"), np.float32(expected["gradients"]["predictions"])
    )


def test_named_composite_and_reduction_none(client: triton.InferenceServerClient, server: Server) -> None:
    masks = RNG.uniform(size=(2, 4, 4)).astype(np.float32)
    truth = (masks > 0.5).astype(np.float32)
    result = client.infer("mix", [tensor("predictions", masks), tensor("targets", truth)])
    expected = rest(server, "mix", {"predictions": masks.tolist(), "targets": truth.tolist(), "outputs": ["gradients"]})
    assert result.as_numpy("loss").reshape(()) == np.float32(expected["loss"])
    np.testing.assert_array_equal(
        result.as_numpy("gradient_predictions"), np.float32(expected["gradients"]["predictions"])
    )
    none = client.infer(
        "mse",
        [tensor("predictions", LOGITS), tensor("targets", LOGITS + 1)],
        outputs=[triton.InferRequestedOutput("loss")],
        parameters={"reduction": "none"},
    )
    np.testing.assert_allclose(none.as_numpy("loss"), np.ones(8, np.float32), rtol=1e-6)


def test_typed_contents_and_int32(channel: grpc.Channel, server: Server) -> None:
    """Stubs generated from the committed proto, with typed contents rather than raw bytes."""
    stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
    request = pb.ModelInferRequest(model_name="sparse_cross_entropy", id="req-1")
    predictions = request.inputs.add(name="predictions", datatype="FP64", shape=[2, 3])
    predictions.contents.fp64_contents.extend([0.1, 0.7, 0.2, 0.5, 0.3, 0.2])
    request.inputs.add(name="targets", datatype="INT32", shape=[2]).contents.int_contents.extend([1, 0])
    request.outputs.add(name="per_sample")
    response = stub.ModelInfer(request, timeout=30)
    assert response.id == "req-1" and [o.name for o in response.outputs] == ["per_sample"]
    assert (response.outputs[0].datatype, list(response.outputs[0].shape)) == ("FP64", [2])
    per_sample = np.frombuffer(response.raw_output_contents[0], np.float64)
    expected = rest(
        server,
        "sparse_cross_entropy",
        {
            "predictions": [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]],
            "targets": [1, 0],
            "outputs": ["per_sample"],
            "dtype": "float64",
        },
    )
    np.testing.assert_allclose(per_sample, expected["per_sample"], rtol=1e-12)


@pytest.mark.parametrize(
    ("model", "inputs", "params", "code", "message"),
    [
        ("focall", [("predictions", LOGITS)], {}, "NOT_FOUND", "unknown model 'focall'; did you mean focal"),
        ("bce", [("predictions", LOGITS)], {}, "NOT_FOUND", "did you mean binary_cross_entropy"),
        (
            "focal",
            [("predictions", LOGITS), ("targets", BINARY[:, :2])],
            {"from_logits": True},
            "INVALID_ARGUMENT",
            "targets: expected shape",
        ),
        ("focal", [("predictions", LOGITS), ("targets", BINARY)], {"gama": 2}, "INVALID_ARGUMENT", "parameter gama"),
        ("focal", [("predictions", LOGITS)], {}, "INVALID_ARGUMENT", "missing input(s) targets"),
        ("focal", [("predictions", LOGITS), ("logits", LOGITS)], {}, "INVALID_ARGUMENT", "no input 'logits'"),
        ("focal", [("predictions", LOGITS), ("targets", BINARY)], {}, "INVALID_ARGUMENT", "predictions: "),
        ("perceptual", [("predictions", LOGITS), ("targets", LOGITS)], {}, "FAILED_PRECONDITION", "feature"),
    ],
)
def test_errors_are_status_codes_naming_the_problem(
    client: triton.InferenceServerClient,
    model: str,
    inputs: list[tuple[str, np.ndarray]],
    params: dict[str, Any],
    code: str,
    message: str,
) -> None:
    error = refused(lambda: client.infer(model, [tensor(n, a) for n, a in inputs], parameters=params))
    assert error.status() == f"StatusCode.{code}", error
    assert message in str(error.message()), error.message()


def test_lying_raw_contents_are_invalid_argument(channel: grpc.Channel) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
    two = np.ones((2, 1), np.float32).tobytes()
    request = pb.ModelInferRequest(model_name="mse", raw_input_contents=[two, two * 2])
    request.inputs.add(name="predictions", datatype="FP32", shape=[2, 1])
    request.inputs.add(name="targets", datatype="FP32", shape=[2, 1])
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input targets: raw_input_contents[1] of 16 bytes" in caught.value.details()
    del request.raw_input_contents[1]
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=30)
    assert "raw_input_contents has 1 entries for 2 inputs" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="mse", version="2"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_service_and_metrics(channel: grpc.Channel, server: Server) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "inference.GRPCInferenceService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert next(iter(watch)).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    scrape = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'lossd_requests_total{loss="focal",protocol="grpc",status="200"}' in scrape
    assert 'lossd_requests_total{loss="focal",protocol="grpc",status="400"}' in scrape


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[Server, str]]:
    port = free_port()
    env = {
        "LOSSD_GRPC_PORT": str(port),
        "LOSSD_PROVIDER": "cpu",
        "LOSSD_API_KEYS": KEY,
        "LOSSD_MAX_ELEMENTS": str(MAX_ELEMENTS),
        "LOSSD_MAX_BODY_BYTES": str(MAX_BODY),
    }
    with running_server(env, timeout=180) as server:
        yield server, f"127.0.0.1:{port}"


def test_keys_and_limits(guarded: tuple[Server, str]) -> None:
    _, address = guarded
    anonymous = triton.InferenceServerClient(address)
    keyed = {"authorization": f"Bearer {KEY}"}
    small = [tensor("predictions", LOGITS), tensor("targets", LOGITS)]
    try:
        assert anonymous.is_server_live() and anonymous.is_server_ready()  # health stays open
        for headers, detail in [(None, "needs an API key"), ({"authorization": "Bearer wrong"}, "not valid")]:
            error = refused(lambda h=headers: anonymous.infer("mse", small, headers=h))
            assert error.status() == "StatusCode.UNAUTHENTICATED" and detail in str(error.message())
        error = refused(lambda: anonymous.get_model_metadata("mse"))
        assert error.status() == "StatusCode.UNAUTHENTICATED"
        assert anonymous.infer("mse", small, headers=keyed).as_numpy("loss").reshape(()) == 0.0
        many = np.zeros((40, 20), np.float32)  # 1600 elements, 6.4 kB: over the element limit only
        error = refused(
            lambda: anonymous.infer("mse", [tensor("predictions", many), tensor("targets", many)], headers=keyed)
        )
        assert error.status() == "StatusCode.RESOURCE_EXHAUSTED" and "LOSSD_MAX_ELEMENTS" in str(error.message())
        large = np.zeros((100, 100), np.float32)  # 40 kB each: over the message limit
        error = refused(
            lambda: anonymous.infer("mse", [tensor("predictions", large), tensor("targets", large)], headers=keyed)
        )
        assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"
    finally:
        anonymous.close()
