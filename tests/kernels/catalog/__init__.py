"""The test declaration of every registered loss, one module per kernel family (see ``base``).

``CATALOG`` maps each loss's canonical name to its :class:`LossInfo`; the golden generator
(``python -m tests.kernels.catalog.golden``), ``tests/kernels/test_golden.py``, ``test_gradients.py`` and
``test_properties.py`` all read it, and ``tests/kernels/test_catalog.py`` fails when a registered loss has
no declaration or a declaration names no registered loss. Adding a loss: its kernel module, and its
entry in the matching module here (then ``make golden``).
"""

from __future__ import annotations

from tests.kernels.catalog import (
    boxes,
    classification,
    composites,
    generative,
    image,
    imbalance,
    lovasz,
    margin,
    metric_learning,
    perceptual,
    probabilistic,
    ranking,
    regression,
    segmentation,
    sequence,
)
from tests.kernels.catalog.base import Golden, GoldenElsewhere, GradientCase, LossInfo, NoGradients

FAMILIES = (
    regression,
    classification,
    imbalance,
    margin,
    ranking,
    metric_learning,
    generative,
    sequence,
    segmentation,
    lovasz,
    composites,
    image,
    perceptual,
    boxes,
    probabilistic,
)


def _catalog() -> dict[str, LossInfo]:
    catalog: dict[str, LossInfo] = {}
    for family in FAMILIES:
        for info in family.LOSSES:
            if info.name in catalog:
                raise ValueError(f"{info.name} is declared twice (the second time in {family.__name__})")
            catalog[info.name] = info
    return catalog


CATALOG = _catalog()
"""Each registered loss (canonical name) -> its test declaration."""


def info(name: str) -> LossInfo:
    """The declaration of a loss, or a KeyError that says where to add it."""
    found = CATALOG.get(name)
    if found is None:
        raise KeyError(
            f"loss {name!r} has no test declaration: add a LossInfo to LOSSES in the tests/kernels/catalog/ module "
            "of its kernel family"
        )
    return found


GRADIENT_CASES: dict[str, GradientCase] = {
    name: entry.gradients for name, entry in CATALOG.items() if isinstance(entry.gradients, GradientCase)
}
"""The losses with differentiable inputs -> their finite-difference inputs and params."""
NO_GRADIENTS: dict[str, NoGradients] = {
    name: entry.gradients for name, entry in CATALOG.items() if isinstance(entry.gradients, NoGradients)
}
"""The losses without differentiable inputs -> why, and valid inputs."""

__all__ = [
    "CATALOG",
    "FAMILIES",
    "GRADIENT_CASES",
    "NO_GRADIENTS",
    "Golden",
    "GoldenElsewhere",
    "GradientCase",
    "LossInfo",
    "NoGradients",
    "info",
]
