"""deploy/'s objects fit together and fit lossd: selectors select the server's pods (and
only those), the ports and probes are the ones the server listens on, every LOSSD_ setting
is one lossd has (with a value it accepts), the database URL comes from a Secret, and the
autoscaler's metric is the gauge the service exports, served by the prometheus-adapter
rule."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import yaml

from service.metrics import IN_FLIGHT
from service.settings import Settings
from tests.deploy.kustomize import DEPLOY, Object, containers, env, every_object, of_kind, one, pod_specs, runs_lossd

PLANNED_SETTINGS: frozenset[str] = frozenset()
"""In API.md's configuration but not yet in service/settings.py: drop each once it is."""
HTTP_PORT, GRPC_PORT = 8000, 8001


def labels_select(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def server_pod() -> Object:
    template: Object = one("Deployment")["spec"]["template"]
    return template


def workload_templates() -> list[Object]:
    return [obj["spec"]["template"] for obj in every_object() if obj["kind"] in ("Deployment", "StatefulSet")]


def test_selectors_select_the_server_pods_and_nothing_else() -> None:
    deployment = one("Deployment")
    labels = server_pod()["metadata"]["labels"]
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "Service": one("Service")["spec"]["selector"],
        "PodDisruptionBudget": one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    }
    for constraint in server_pod()["spec"]["topologySpreadConstraints"]:
        selectors[f"spread on {constraint['topologyKey']}"] = constraint["labelSelector"]["matchLabels"]
    for what, selector in selectors.items():
        assert selector and labels_select(selector, labels), what
        others = [t for t in workload_templates() if t is not server_pod() and t["metadata"]["labels"] != labels]
        assert not any(labels_select(selector, t["metadata"]["labels"]) for t in others), f"{what} selects more"
    target = one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "lossd")


def test_ports_are_where_lossd_listens() -> None:
    (container,) = server_pod()["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": HTTP_PORT, "grpc": GRPC_PORT}
    settings = env(container)
    assert settings["LOSSD_PORT"]["value"] == str(HTTP_PORT)
    assert settings["LOSSD_GRPC_PORT"]["value"] == str(GRPC_PORT)
    assert settings["LOSSD_HOST"]["value"] == "0.0.0.0"
    service_ports = {port["name"]: port for port in one("Service")["spec"]["ports"]}
    assert {name: port["targetPort"] for name, port in service_ports.items()} == {"http": "http", "grpc": "grpc"}
    assert service_ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    annotations = server_pod()["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(HTTP_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", [name for name, pod in pod_specs() if any(map(runs_lossd, containers(pod)))])
def test_service_links_are_off_where_lossd_runs(name: str) -> None:
    """Service links would set LOSSD_PORT=tcp://<ip>:8000 for the Service named lossd (and
    LOSSD_GRPC_PORT for one named lossd-grpc): the server's own settings."""
    assert dict(pod_specs())[name].get("enableServiceLinks") is False


def lossd_containers() -> list[tuple[str, Object]]:
    return [(name, c) for name, pod in pod_specs() for c in containers(pod) if runs_lossd(c)]


@pytest.mark.parametrize("index", range(len(lossd_containers())))
def test_every_lossd_setting_exists_and_takes_its_value(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A setting lossd does not have would be ignored (a typo goes unnoticed), and one it
    refuses would stop `lossd serve`: Settings reads the literal values here as it would."""
    fields = {f"LOSSD_{field.upper()}" for field in Settings.model_fields}
    assert not PLANNED_SETTINGS & fields, f"now settings, drop them from PLANNED_SETTINGS: {PLANNED_SETTINGS & fields}"
    name, container = lossd_containers()[index]
    settings = {key: entry for key, entry in env(container).items() if key.startswith("LOSSD_")}
    unknown = sorted(set(settings) - fields - PLANNED_SETTINGS)
    assert not unknown, f"{name}: no such setting {unknown}"
    for key in [key for key in os.environ if key.startswith("LOSSD_")]:
        monkeypatch.delenv(key)
    for key, entry in settings.items():
        if "value" not in entry:
            continue
        if key in PLANNED_SETTINGS:
            assert re.fullmatch(r"\d+", entry["value"]), f"{name}: {key}={entry['value']!r}"
        else:
            monkeypatch.setenv(key, entry["value"])
    Settings()


def test_the_database_url_comes_from_a_secret() -> None:
    for name, container in lossd_containers():
        entry = env(container)["LOSSD_DATABASE_URL"]
        assert "value" not in entry, f"{name}: a database URL (with its password) in plain sight"
        reference = entry["valueFrom"]["secretKeyRef"]
        assert (reference["name"], reference["key"]) == ("lossd-database", "url"), name
        assert not reference.get("optional"), f"{name}: without it each replica would keep monitors of its own"


def test_the_postgres_overlay_provides_the_secret_and_the_database() -> None:
    secret = one("Secret", "lossd-database")
    url = secret["stringData"]["url"]
    Settings(database_url=url)
    service = one("Service", "lossd-postgres")
    host_port = re.search(r"@([^:/]+):(\d+)/", url)
    assert host_port and host_port[1] == service["metadata"]["name"]
    assert int(host_port[2]) == service["spec"]["ports"][0]["port"]
    (postgres,) = one("StatefulSet", "lossd-postgres")["spec"]["template"]["spec"]["containers"]
    assert env(postgres)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "lossd-database"
    assert f":{secret['stringData']['password']}@" in url


def test_the_autoscaler_has_the_replicas_and_the_disruption_budget_fits() -> None:
    hpa = one("HorizontalPodAutoscaler")["spec"]
    assert "replicas" not in one("Deployment")["spec"], "the HPA owns the count; apply would reset it"
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    budget = one("PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] < hpa["minReplicas"], "a drain would leave no replica serving"


def in_flight_metric() -> str:
    (family,) = IN_FLIGHT.describe()
    name: str = family.name
    return name


def adapter_rules() -> dict[str, list[dict[str, Any]]]:
    values = yaml.safe_load((DEPLOY / "prometheus-adapter" / "values.yaml").read_text())
    (configmap,) = of_kind("ConfigMap")
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    return {"values.yaml": values["rules"]["custom"], "configmap.yaml": config["rules"]}


def test_the_autoscaler_scales_on_the_gauge_the_service_exports() -> None:
    (pods,) = [m["pods"] for m in one("HorizontalPodAutoscaler")["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods["metric"]["name"] == in_flight_metric() == "lossd_requests_in_flight"
    assert pods["target"]["type"] == "AverageValue"
    (container,) = server_pod()["spec"]["containers"]
    workers = int(env(container)["LOSSD_WORKERS"]["value"])
    assert float(pods["target"]["averageValue"]) >= workers, "below one request per worker: always scaling"


def test_the_adapter_rule_serves_that_gauge_per_pod() -> None:
    rules = adapter_rules()
    assert rules["values.yaml"] == rules["configmap.yaml"], "the Helm values and the ConfigMap disagree"
    (rule,) = rules["values.yaml"]
    metric = in_flight_metric()
    assert rule["seriesQuery"].startswith(metric + "{") and 'pod!=""' in rule["seriesQuery"]
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert re.fullmatch(rule["name"]["matches"], metric) and rule["name"]["as"] == metric
    for placeholder in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
        assert placeholder in rule["metricsQuery"], placeholder
