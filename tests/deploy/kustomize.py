"""The kustomizations under deploy/, rendered: by `kubectl kustomize` where kubectl exists,
otherwise by reading their `resources` lists here (all they use; anything else is refused,
so the fallback cannot silently render something else than kustomize would). Where kubectl
exists a test checks that the two agree."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUSTOMIZATIONS = ("", "base", "overlays/postgres", "kserve", "prometheus-adapter")
"""Every kustomization under deploy/, relative to it ("" is deploy/ itself)."""
APPLIED = ("", "overlays/postgres", "kserve", "prometheus-adapter")
"""The ones a user applies: between them, every object."""
SUPPORTED_KEYS = frozenset({"apiVersion", "kind", "resources"})

Object = dict[str, Any]


class KustomizationError(Exception):
    """What kustomize would refuse, or what this renderer does not implement."""


def identity(obj: Object) -> tuple[str, str, str, str]:
    """kustomize's resource id: group/version, kind, namespace, name."""
    metadata = obj.get("metadata") or {}
    return obj["apiVersion"], obj["kind"], metadata.get("namespace", ""), metadata["name"]


def read_resources(directory: Path, visited: tuple[Path, ...] = ()) -> list[Object]:
    """The objects of the kustomization in ``directory``, in the order of its resources."""
    directory = directory.resolve()
    for root in visited:
        if root.is_relative_to(directory):
            raise KustomizationError(f"cycle: {directory} contains the kustomization root {root}")
    file = directory / "kustomization.yaml"
    if not file.is_file():
        raise KustomizationError(f"{directory}: no kustomization.yaml")
    data = yaml.safe_load(file.read_text()) or {}
    unsupported = sorted(set(data) - SUPPORTED_KEYS)
    if unsupported:
        raise KustomizationError(f"{file}: {unsupported} not supported here (only {sorted(SUPPORTED_KEYS)})")
    if (data.get("apiVersion"), data.get("kind")) != ("kustomize.config.k8s.io/v1beta1", "Kustomization"):
        raise KustomizationError(f"{file}: not a kustomize.config.k8s.io/v1beta1 Kustomization")
    objects: list[Object] = []
    for entry in data.get("resources") or []:
        path = (directory / entry).resolve()
        if path.is_dir():
            objects += read_resources(path, (*visited, directory))
        elif path.is_file():
            # kustomize's default load restrictions: a file must lie under the root (a
            # directory elsewhere is a base, with a root of its own).
            if not path.is_relative_to(directory):
                raise KustomizationError(f"{file}: {entry} is a file outside the kustomization root")
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        else:
            raise KustomizationError(f"{file}: {entry} does not exist")
    seen: set[tuple[str, str, str, str]] = set()
    for obj in objects:
        if identity(obj) in seen:
            raise KustomizationError(f"{file}: {identity(obj)} appears twice")
        seen.add(identity(obj))
    return objects


def kubectl_kustomize(directory: Path) -> list[Object] | None:
    """`kubectl kustomize directory`, parsed; None without kubectl."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise KustomizationError(f"kubectl kustomize {directory}: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


@functools.cache
def _rendered(relative: str) -> str:
    directory = DEPLOY / relative
    objects = kubectl_kustomize(directory)
    return json.dumps(objects if objects is not None else read_resources(directory))


def rendered(relative: str) -> list[Object]:
    """The objects of deploy/<relative>: kubectl's rendering if it exists, else ours (a
    fresh copy each time: tests may change what they get)."""
    objects: list[Object] = json.loads(_rendered(relative))
    return objects


def every_object() -> list[Object]:
    """Every object of deploy/, once."""
    unique: dict[tuple[str, str, str, str], Object] = {}
    for relative in APPLIED:
        for obj in rendered(relative):
            unique.setdefault(identity(obj), obj)
    return list(unique.values())


def of_kind(kind: str) -> list[Object]:
    return [obj for obj in every_object() if obj["kind"] == kind]


def one(kind: str, name: str = "lossd") -> Object:
    (found,) = (obj for obj in of_kind(kind) if obj["metadata"]["name"] == name)
    return found


def pod_specs() -> Iterator[tuple[str, Object]]:
    """Each pod spec of deploy/, named by its object: workloads' templates and the
    InferenceService's predictor (a PodSpec with KServe's fields beside it)."""
    for obj in every_object():
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield name, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            yield name, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            yield name, obj["spec"]
        elif obj["kind"] == "InferenceService":
            for component in ("predictor", "transformer", "explainer"):
                if component in obj["spec"]:
                    yield f"{name}.{component}", obj["spec"][component]


def containers(pod: Object) -> list[Object]:
    found: list[Object] = [*pod.get("initContainers", []), *pod["containers"]]
    return found


def env(container: Object) -> dict[str, Object]:
    """The container's environment by name (each entry as written: value or valueFrom)."""
    return {entry["name"]: entry for entry in container.get("env", [])}


def runs_lossd(container: Object) -> bool:
    return any(name.startswith("LOSSD_") for name in env(container))
