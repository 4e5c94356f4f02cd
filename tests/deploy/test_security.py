"""The security and lifecycle settings of every pod in deploy/: each container runs as a
non-root user on a read-only root filesystem, cannot gain privileges, drops every
capability, runs under the runtime's seccomp profile, has resources and probes; lossd's
pods can write where lossd writes (/tmp and LOSSD_DATA_DIR) and are given the time to
drain before they are killed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import service.cli
from service.settings import Settings
from tests.deploy.kustomize import Object, containers, env, one, pod_specs, runs_lossd

PODS = dict(pod_specs())
LOSSD_DATA_DIR = "/var/lib/lossd"
DEFAULT_DRAIN_SECONDS = Settings.model_fields["drain_seconds"].default
"""LOSSD_DRAIN_SECONDS when unset."""


def test_every_kind_of_pod_is_found() -> None:
    assert set(PODS) == {"Deployment/lossd", "StatefulSet/lossd-postgres", "InferenceService/lossd.predictor"}


def effective(pod: Object, container: Object, field: str) -> object:
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    own = container.get("securityContext", {})
    return own[field] if field in own else pod.get("securityContext", {}).get(field)


@pytest.mark.parametrize("name", PODS)
def test_every_container_is_locked_down(name: str) -> None:
    pod = PODS[name]
    for container in containers(pod):
        where = f"{name}: container {container['name']}"
        context = container.get("securityContext", {})
        assert effective(pod, container, "runAsNonRoot") is True, where
        user = effective(pod, container, "runAsUser")
        assert isinstance(user, int) and user > 0, f"{where}: runAsUser {user!r} (a numeric non-root uid)"
        assert context.get("readOnlyRootFilesystem") is True, where
        assert context.get("allowPrivilegeEscalation") is False, where
        assert context.get("privileged") is not True, where
        assert context.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not context.get("capabilities", {}).get("add"), where
        seccomp = effective(pod, container, "seccompProfile")
        assert isinstance(seccomp, dict) and seccomp.get("type") == "RuntimeDefault", where
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container.get("resources", {}).get(kind, {})), f"{where}: {kind}"
        assert "readinessProbe" in container and "livenessProbe" in container, where
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(field), f"{name}: {field}"
    assert pod.get("automountServiceAccountToken") is False, f"{name}: no Kubernetes API access needed"


def writable_mounts(pod: Object, container: Object) -> dict[str, Object]:
    """The container's mount paths that are writable, with the volume behind each."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    claims = {claim["metadata"]["name"] for claim in pod.get("volumeClaimTemplates", [])}
    mounts = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {"persistentVolumeClaim": {}} if mount["name"] in claims else {})
        if not mount.get("readOnly") and ("emptyDir" in volume or "persistentVolumeClaim" in volume):
            mounts[mount["mountPath"]] = volume
    return mounts


@pytest.mark.parametrize("name", [name for name, pod in PODS.items() if any(map(runs_lossd, containers(pod)))])
def test_lossd_can_write_to_tmp_and_its_data_directory(name: str) -> None:
    """The read-only root filesystem leaves lossd /tmp (the workers' metric files) and
    LOSSD_DATA_DIR, as in the image (`docker run --read-only` in tests/docker)."""
    pod = PODS[name]
    for container in filter(runs_lossd, containers(pod)):
        data_dir = env(container)["LOSSD_DATA_DIR"]["value"]
        assert data_dir == LOSSD_DATA_DIR
        assert {"/tmp", data_dir} <= set(writable_mounts(pod, container)), name
        assert "LOSSD_PORT" in env(container), f"{name}: LOSSD_PORT set explicitly (what the probes use)"


def test_the_deployment_probes_lossd_health() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["startupProbe"]["path"] == "/v2/health/live"
    assert probes["livenessProbe"]["path"] == "/v2/health/live"
    assert probes["readinessProbe"]["path"] == "/v2/health/ready"
    assert {probe["port"] for probe in probes.values()} == {"http"}
    # Start-up builds ~400 graphs (20-60 s, longer on a busy node): minutes, not seconds.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180


def graceful_shutdown_seconds() -> int:
    """uvicorn's timeout_graceful_shutdown in `lossd serve`: after the drain, requests in
    flight get up to this long to finish."""
    path = Path(service.cli.__file__)
    source = path.read_text()
    match = re.search(r"timeout_graceful_shutdown\W{1,4}(\d+)", source)  # a keyword or a dict entry
    assert match, f"{path}: no timeout_graceful_shutdown=<seconds> found (update this test)"
    return int(match[1])


def test_termination_grace_covers_the_drain_and_the_graceful_shutdown() -> None:
    """SIGTERM, then /v2/health/ready is 503 while requests are still served for
    LOSSD_DRAIN_SECONDS, then uvicorn stops gracefully: the kubelet's SIGKILL must come
    after both."""
    pod = one("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    drain_entry = env(container).get("LOSSD_DRAIN_SECONDS")
    drain = float(drain_entry["value"]) if drain_entry else DEFAULT_DRAIN_SECONDS
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > drain
    assert grace > drain + graceful_shutdown_seconds(), (grace, drain, graceful_shutdown_seconds())
