"""The KServe InferenceService, a custom resource the bundled Kubernetes schemas lack:
checked for what KServe (v1beta1) and Knative, its default Serverless mode, require of a
custom predictor. The predictor is a PodSpec with KServe's component fields inline: those
fields are checked against KServe's list, the rest strictly against the Kubernetes PodSpec
schema, as a Pod."""

from __future__ import annotations

import re

import kubernetes_validate

from tests.deploy.kustomize import Object, env, rendered
from tests.deploy.test_schemas import VERSIONS

COMPONENT_FIELDS = frozenset(
    {
        "minReplicas",
        "maxReplicas",
        "scaleTarget",
        "scaleMetric",
        "containerConcurrency",
        "timeout",
        "canaryTrafficPercent",
        "logger",
        "batcher",
        "labels",
        "annotations",
        "deploymentStrategy",
    }
)
"""KServe's ComponentExtensionSpec (pkg/apis/serving/v1beta1/component.go)."""
IMPLEMENTATIONS = frozenset(
    {"sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "huggingface", "pmml", "lightgbm", "paddle"}
    | {"model", "storageUris", "workerSpec"}
)
"""PredictorSpec's other implementations: a custom predictor (containers) excludes them."""
SCALE_METRICS = frozenset({"cpu", "memory", "concurrency", "rps"})
KNATIVE_POD_FIELDS = frozenset(
    {"containers", "volumes", "serviceAccountName", "imagePullSecrets", "enableServiceLinks"}
    | {"automountServiceAccountToken"}
)
"""The pod fields Knative Serving admits without a feature flag."""
KNATIVE_PORT_NAMES = frozenset({"http1", "h2c"})
KNATIVE_RESERVED_PORTS = frozenset({8012, 8013, 8022, 9090, 9091})
"""Taken by Knative's queue-proxy in the same pod."""
NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
"""KServe's InferenceService name (DNS-1035: it becomes a Knative Service and a host name)."""


def inference_service() -> Object:
    (isvc,) = rendered("kserve")
    return isvc


def test_it_is_a_v1beta1_inference_service_with_a_valid_name() -> None:
    isvc = inference_service()
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    name = isvc["metadata"]["name"]
    assert NAME.fullmatch(name) and len(f"{name}-predictor") <= 63, name
    assert set(isvc["spec"]) <= {"predictor", "transformer", "explainer"}
    assert "predictor" in isvc["spec"]
    annotations = isvc["metadata"].get("annotations", {})
    assert annotations.get("serving.kserve.io/deploymentMode", "Serverless") == "Serverless"
    assert all(isinstance(value, str) for value in annotations.values())


def test_the_predictor_is_exactly_one_custom_container() -> None:
    predictor = inference_service()["spec"]["predictor"]
    assert not set(predictor) & IMPLEMENTATIONS, "a custom predictor and another implementation"
    assert "protocolVersion" not in predictor, "not a field of a custom predictor: the PROTOCOL env is"
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"].split(":")[0].rsplit("/", 1)[-1] == "lossd"


def test_the_pod_fields_are_a_valid_pod_spec() -> None:
    predictor = inference_service()["spec"]["predictor"]
    pod_spec = {key: value for key, value in predictor.items() if key not in COMPONENT_FIELDS}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": pod_spec}
    for version in VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)


def test_the_component_fields_are_what_kserve_accepts() -> None:
    predictor = inference_service()["spec"]["predictor"]
    assert predictor["scaleMetric"] in SCALE_METRICS
    for field in ("minReplicas", "maxReplicas", "scaleTarget", "timeout"):
        assert isinstance(predictor[field], int) and predictor[field] >= 0, field
    assert predictor["minReplicas"] <= predictor["maxReplicas"]
    assert predictor["scaleTarget"] > 0


def test_it_speaks_v2_rest_on_the_one_port_knative_routes() -> None:
    predictor = inference_service()["spec"]["predictor"]
    (container,) = predictor["containers"]
    settings = env(container)
    assert settings["PROTOCOL"]["value"] == "v2"  # KServe accepts v1 or v2 there
    (port,) = container["ports"]  # Knative: one port per revision
    assert port["name"] in KNATIVE_PORT_NAMES and port["name"] == "http1", "h2c would mean gRPC"
    assert port["containerPort"] not in KNATIVE_RESERVED_PORTS
    assert settings["LOSSD_PORT"]["value"] == str(port["containerPort"]) == "8000"
    assert settings["LOSSD_GRPC_PORT"]["value"] == "0", "a second port Knative would not route"
    for kind in ("readinessProbe", "livenessProbe"):
        assert container[kind]["httpGet"]["port"] == port["containerPort"], f"{kind}: Knative wants the serving port"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_the_pod_uses_only_what_knative_admits_by_default() -> None:
    predictor = inference_service()["spec"]["predictor"]
    pod_fields = set(predictor) - COMPONENT_FIELDS
    assert pod_fields <= KNATIVE_POD_FIELDS, f"need Knative feature flags: {sorted(pod_fields - KNATIVE_POD_FIELDS)}"
    (container,) = predictor["containers"]
    assert "startupProbe" not in container
    volumes = {volume["name"]: volume for volume in predictor["volumes"]}
    assert all(set(volume) == {"name", "emptyDir"} for volume in volumes.values())
