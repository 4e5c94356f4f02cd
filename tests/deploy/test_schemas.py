"""Every object of deploy/ against the Kubernetes OpenAPI schemas, offline and strictly:
kubernetes-validate bundles the JSON schemas of each Kubernetes release, and its strict
ones refuse any field a schema does not declare (a typo such as `readOnlyRootFS` fails
rather than being dropped by the API server). Checked against the oldest release deploy/
supports and the newest one bundled. Custom resources (KServe's InferenceService) have no
bundled schema: test_kserve.py checks what KServe requires of them."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from tests.deploy.kustomize import APPLIED, one, rendered

OLDEST = "1.30"
"""The oldest Kubernetes deploy/ supports: matchLabelKeys in topology spread constraints
and the PodDisruptionBudget's unhealthyPodEvictionPolicy are on by default from 1.27."""
VERSIONS = (OLDEST, kubernetes_validate.latest_version())
CUSTOM = frozenset({("serving.kserve.io/v1beta1", "InferenceService")})


def problems(obj: dict[str, object], version: str) -> str | None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{'.'.join(map(str, exc.path))}: {exc.message}"
    except kubernetes_validate.SchemaNotFoundError as exc:
        return f"no schema: {exc.message}"  # a kind the bundle lacks is a failure, not a skip
    return None


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("relative", APPLIED)
def test_every_object_validates_strictly(relative: str, version: str) -> None:
    failures = []
    for obj in rendered(relative):
        if (obj["apiVersion"], obj["kind"]) in CUSTOM:
            continue
        problem = problems(obj, version)
        if problem:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {problem}")
    assert not failures, "\n".join(failures)


def test_strict_validation_refuses_unknown_fields_and_wrong_types() -> None:
    """The validation above is the strict one: it catches what a lenient one lets by."""
    deployment = one("Deployment")
    assert problems(deployment, OLDEST) is None
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    assert "readOnlyRootFS" in (problems(typo, OLDEST) or "")
    quoted = copy.deepcopy(deployment)
    quoted["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
    assert "not of type 'integer'" in (problems(quoted, OLDEST) or "")
    annotation = copy.deepcopy(deployment)
    annotation["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = 8000
    assert problems(annotation, OLDEST), "an annotation's value must be a string"
