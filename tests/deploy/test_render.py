"""Rendering deploy/: every kustomization is covered, and where kubectl exists its
`kubectl kustomize` gives exactly what reading the resources lists gives (the fallback the
other tests use without kubectl). The fallback refuses what kustomize refuses or what it
does not implement, rather than render something else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.deploy.kustomize import (
    DEPLOY,
    KUSTOMIZATIONS,
    KustomizationError,
    Object,
    identity,
    kubectl_kustomize,
    read_resources,
)

KUSTOMIZATION = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: b\n"


def canonical(objects: list[Object]) -> list[str]:
    return sorted(json.dumps(obj, sort_keys=True) for obj in objects)


def test_every_kustomization_is_listed() -> None:
    found = {path.parent.relative_to(DEPLOY).as_posix() for path in DEPLOY.rglob("kustomization.yaml")}
    assert found == {(relative or ".") for relative in KUSTOMIZATIONS}


@pytest.mark.parametrize("relative", KUSTOMIZATIONS)
def test_reading_the_resources_gives_what_kubectl_renders(relative: str) -> None:
    ours = read_resources(DEPLOY / relative)
    assert ours, f"deploy/{relative} renders nothing"
    kubectl = kubectl_kustomize(DEPLOY / relative)
    if kubectl is None:
        pytest.skip("no kubectl: the other tests use the resources lists as read here")
    assert canonical(ours) == canonical(kubectl)


def write(directory: Path, kustomization: str, **files: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(KUSTOMIZATION + kustomization)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def refused(directory: Path, reason: str) -> None:
    """Refused here, and by kubectl kustomize where it exists."""
    with pytest.raises(KustomizationError, match=reason):
        read_resources(directory)
    if shutil.which("kubectl"):
        with pytest.raises(KustomizationError):
            kubectl_kustomize(directory)


def test_a_base_and_an_overlay(tmp_path: Path) -> None:
    base = write(tmp_path / "base", "resources:\n  - a.yaml\n", **{"a.yaml": CONFIGMAP.format(name="a")})
    overlay = write(
        tmp_path / "overlay",
        "resources:\n  - ../base\n  - b.yaml\n",
        **{"b.yaml": CONFIGMAP.format(name="b") + "---\n" + CONFIGMAP.format(name="c")},
    )
    assert [identity(obj)[3] for obj in read_resources(overlay)] == ["a", "b", "c"]
    assert [identity(obj)[3] for obj in read_resources(base)] == ["a"]
    kubectl = kubectl_kustomize(overlay)
    if kubectl is not None:
        assert canonical(kubectl) == canonical(read_resources(overlay))


def test_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    directory = write(tmp_path, "resources:\n  - a.yaml\nnamePrefix: x-\n", **{"a.yaml": CONFIGMAP.format(name="a")})
    with pytest.raises(KustomizationError, match="namePrefix"):
        read_resources(directory)


def test_refuses_an_overlay_inside_its_base(tmp_path: Path) -> None:
    write(tmp_path, "resources:\n  - a.yaml\n", **{"a.yaml": CONFIGMAP.format(name="a")})
    refused(write(tmp_path / "overlays" / "x", "resources:\n  - ../..\n"), "cycle")


def test_refuses_a_file_outside_the_root(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(CONFIGMAP.format(name="a"))
    refused(write(tmp_path / "k", "resources:\n  - ../a.yaml\n"), "outside")


def test_refuses_an_object_twice(tmp_path: Path) -> None:
    files = {"a.yaml": CONFIGMAP.format(name="a"), "b.yaml": CONFIGMAP.format(name="a")}
    refused(write(tmp_path, "resources:\n  - a.yaml\n  - b.yaml\n", **files), "twice")


def test_refuses_a_missing_resource(tmp_path: Path) -> None:
    refused(write(tmp_path, "resources:\n  - nowhere.yaml\n"), "does not exist")
