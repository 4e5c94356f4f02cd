"""Loss names from requests resolved against the registry; an unknown one names its close matches."""

from __future__ import annotations

from kernels import REGISTRY
from kernels.spec import LossSpec
from service.errors import close_match_hint, invalid, not_found

LISTING = "; GET /losses lists them all"


def loss_named(name: str, field: str | None = None) -> LossSpec:
    """The loss of a name or alias. Unknown: not found when the name is the request's target
    (a path), invalid when it is the value of ``field`` in a body."""
    spec = REGISTRY.get(name)
    if spec is not None:
        return spec
    matches = REGISTRY.close_matches(name)
    detail = f"no loss named {name!r}{close_match_hint(matches, LISTING)}"
    if field is not None:
        raise invalid(field, detail)
    raise not_found("Unknown loss", detail, matches=matches)


def model_named(name: str) -> LossSpec:
    """A loss as an Open Inference Protocol model: by its canonical name only."""
    spec = REGISTRY.get(name)
    if spec is not None and spec.name == name:
        return spec
    canonical = {s.name for s in REGISTRY}
    # An alias names its loss, but a model only by its canonical name: point there first.
    matches = [spec.name] if spec is not None else []
    matches += [m for m in REGISTRY.close_matches(name) if m in canonical and m not in matches]
    raise not_found("Unknown model", f"unknown model {name!r}{close_match_hint(matches)}")
