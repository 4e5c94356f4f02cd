"""The catalog of test declarations (tests/kernels/catalog/) covers exactly the registered losses, and
loading it needs none of the reference libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kernels import REGISTRY
from tests.kernels.catalog import CATALOG, FAMILIES, info

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("loss", [spec.name for spec in REGISTRY])
def test_every_registered_loss_has_a_declaration(loss: str) -> None:
    assert loss in CATALOG, (
        f"loss {loss!r} has no test declaration: add a LossInfo to LOSSES in the tests/kernels/catalog/ module of "
        "its kernel family"
    )
    assert info(loss).name == loss


def test_every_declaration_names_a_registered_loss() -> None:
    registered = {spec.name for spec in REGISTRY}
    unknown = sorted(set(CATALOG) - registered)
    assert not unknown, f"declarations for losses that are not registered (or not by their canonical name): {unknown}"
    assert sum(len(family.LOSSES) for family in FAMILIES) == len(CATALOG), "a loss is declared twice"


def test_an_undeclared_loss_says_where_to_declare_it() -> None:
    with pytest.raises(KeyError, match="tests/kernels/catalog/"):
        info("no_such_loss")


def test_the_catalog_imports_no_reference_library() -> None:
    """The references import torch, Keras, MONAI, SciPy, scikit-image only when the golden generator
    runs them: the suite needs only numpy."""
    code = (
        "import sys\n"
        "import tests.kernels.catalog\n"
        "import tests.kernels.catalog.golden\n"
        "from tests.kernels.catalog.reference import LIBRARIES\n"
        "print(sorted({m.partition('.')[0] for m in sys.modules} & set(LIBRARIES)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
