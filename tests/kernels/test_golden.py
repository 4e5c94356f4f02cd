"""Kernels against golden values from the reference libraries (tests/golden/*.json).

The files are written by ``make golden`` (``python -m tests.kernels.catalog.golden``, which needs torch
and Keras) from each loss's ``Golden`` declaration (tests/kernels/catalog/); this test needs only numpy.
Each golden case holds one set of inputs and the reference's loss and gradients for every reduction,
with and without sample weights; the test runs each of those as its own parametrized case.

Tolerances (``Golden.tolerance``, per loss and dtype): a value passes when
``|actual - expected| <= rtol * |expected| + atol * scale``, ``scale`` being the largest magnitude in the
expected array (the value itself for a scalar). The ``atol`` term only matters for entries far below the
array's scale, e.g. the gradient of a saturated logit (~1e-18), where the reference formulas themselves
lose relative accuracy to cancellation (torchvision's ``1 - p_t``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kernels import REGISTRY
from tests.kernels.catalog import CATALOG, Golden, GoldenElsewhere
from tests.kernels.catalog.golden import case_ids
from tests.kernels.harness import evaluate

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
TESTS = Path(__file__).resolve().parents[1]
GOLDEN_ELSEWHERE: dict[str, GoldenElsewhere] = {
    name: entry.golden for name, entry in CATALOG.items() if isinstance(entry.golden, GoldenElsewhere)
}
"""Losses whose reference values cannot come from a library: the test module (under tests/)
that checks them against an independent implementation instead, and why."""
REDUCTIONS = ("mean", "sum", "none")


@cache
def golden(loss: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((GOLDEN / f"{loss}.json").read_text())
    return document


def golden_losses() -> list[str]:
    """One file per loss (other tests' goldens live in subdirectories, e.g. extractors/)."""
    return sorted(path.stem for path in GOLDEN.glob("*.json"))


def cases() -> list[Any]:
    params = []
    for loss in golden_losses():
        for index, case in enumerate(golden(loss)["cases"]):
            for result in range(len(case["results"])):
                entry = case["results"][result]
                weighted = "+weights" if entry["weighted"] else ""
                test_id = f"{loss}:{case['id']}:{entry['reduction']}{weighted}"
                params.append(pytest.param(loss, index, result, id=test_id))
    return params


def declared(loss: str) -> Golden:
    golden_entry = CATALOG[loss].golden
    assert isinstance(golden_entry, Golden), f"{loss} has a golden file but declares {golden_entry}"
    return golden_entry


def assert_close(what: str, actual: Any, expected: Any, tolerance: tuple[float, float]) -> None:
    rtol, atol = tolerance
    actual_array = np.asarray(actual, dtype=np.float64)
    expected_array = np.asarray(expected, dtype=np.float64)
    assert actual_array.shape == expected_array.shape, f"{what}: shape {actual_array.shape} != {expected_array.shape}"
    scale = float(np.max(np.abs(expected_array)))
    np.testing.assert_allclose(actual_array, expected_array, rtol=rtol, atol=atol * scale, err_msg=what)


@pytest.mark.parametrize(("loss", "index", "result"), cases())
def test_golden(loss: str, index: int, result: int) -> None:
    case = golden(loss)["cases"][index]
    expected = case["results"][result]
    dtype = case["dtype"]
    got = evaluate(
        loss,
        case["inputs"],
        case["params"],
        reduction=expected["reduction"],
        weights=case["weights"] if expected["weighted"] else None,
        dtype=dtype,
    )
    context = f"{loss} {case['id']} {expected['reduction']} weighted={expected['weighted']} ({case['reference']})"
    tolerance = declared(loss).tolerance[dtype]
    assert_close(f"loss of {context}", got.loss, expected["loss"], tolerance)
    assert_close(f"per_sample of {context}", got.per_sample, case["per_sample"], tolerance)
    assert set(got.gradients) == set(expected["gradients"]), context
    for name, gradient in expected["gradients"].items():
        assert_close(f"gradient wrt {name} of {context}", got.gradients[name], gradient, tolerance)


@pytest.mark.parametrize("loss", [spec.name for spec in REGISTRY])
def test_every_loss_has_goldens(loss: str) -> None:
    """Adding a loss without golden values (``make golden``) fails here, unless its declaration is
    ``GoldenElsewhere``, naming the test that checks it against an independent reference."""
    if loss in GOLDEN_ELSEWHERE:
        module = GOLDEN_ELSEWHERE[loss].test
        assert not (GOLDEN / f"{loss}.json").exists(), f"{loss} has a golden file: declare its Golden"
        assert (TESTS / module).is_file(), f"{loss}: GoldenElsewhere names {module}, which does not exist"
        return
    assert (GOLDEN / f"{loss}.json").exists(), (
        f"no golden file for {loss}: declare its Golden in tests/kernels/catalog/ and run make golden"
    )
    spec = REGISTRY.get(loss)
    assert spec is not None
    document = golden(loss)
    assert document["loss"] == loss
    seen = {
        (case["dtype"], result["reduction"], result["weighted"])
        for case in document["cases"]
        for result in case["results"]
    }
    for dtype in ("float32", "float64"):
        for reduction in REDUCTIONS:
            assert (dtype, reduction, False) in seen, f"{loss}: no {dtype} golden for reduction {reduction}"
        if spec.batch_level:  # one value per batch: no sample weights
            continue
        for reduction in ("mean", "sum"):
            assert (dtype, reduction, True) in seen, f"{loss}: no weighted {dtype} golden for reduction {reduction}"
    # every graph variant (e.g. from_logits true and false) is exercised
    variants = {spec.variant(spec.params(**case["params"])) for case in document["cases"]}
    missing = set(spec.variants) - variants
    assert not missing, f"{loss}: no golden case for variants {sorted(missing)}"
    # shapes with different numbers of axes in the inputs' "..." (e.g. one and several non-batch axes)
    if any("..." in spec_input.shape for spec_input in spec.inputs):
        ranks = {len(case["shape"]) for case in document["cases"]}
        assert len(ranks) >= 2, f"{loss}: golden shapes cover ranks {sorted(ranks)} only"
    else:  # fixed shapes: at least two different sizes
        shapes = {tuple(case["shape"]) for case in document["cases"]}
        assert len(shapes) >= 2, f"{loss}: golden cases all have shape {shapes}"


@pytest.mark.parametrize("loss", golden_losses())
def test_golden_file_holds_the_declared_cases(loss: str) -> None:
    """The file was made from the loss's current declaration: its cases are the declared combos, data
    kinds, shapes and dtypes, in order (else: ``make golden``)."""
    assert [case["id"] for case in golden(loss)["cases"]] == case_ids(declared(loss)), (
        f"tests/golden/{loss}.json does not hold the cases its declaration makes: run make golden"
    )


def test_golden_files_are_registered_losses() -> None:
    unknown = [name for name in golden_losses() if name not in REGISTRY]
    assert not unknown, f"golden files for unknown losses: {unknown}"
    assert set(GOLDEN_ELSEWHERE) <= {spec.name for spec in REGISTRY}, "GOLDEN_ELSEWHERE names unknown losses"
