"""mypy --strict covers the loss declarations; only onnxscript graph bodies are exempt.

pyproject.toml sets ``check_untyped_defs = false`` for the kernel modules that hold graph
code: mypy then skips the bodies of *unannotated* functions there (onnxscript's op stubs
cannot type graph code), while ``disallow_untyped_defs`` (strict) still requires every
other function to be annotated, and so checked: each exempt body is marked by its
``# type: ignore[no-untyped-def]``. These tests keep that exemption to graph code.
"""

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNELS = sorted((ROOT / "kernels").glob("*.py"))


def _is_script(node: ast.FunctionDef) -> bool:
    """Decorated ``@script(...)`` (onnxscript)."""
    return any(
        isinstance(d, ast.Call) and isinstance(d.func, ast.Name) and d.func.id == "script" for d in node.decorator_list
    )


def _annotated(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    arguments = node.args
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
    return node.returns is not None or any(a is not None and a.annotation is not None for a in every)


def _unannotated_non_graph(tree: ast.AST) -> list[str]:
    """Unannotated functions that are not onnxscript functions (not looking inside those:
    their nested graph attributes, e.g. a Scan body, are graph code too)."""
    found: list[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef) and _is_script(child):
                continue
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and not _annotated(child):
                found.append(f"{child.name} (line {child.lineno})")
            stack.append(child)
    return found


@pytest.mark.parametrize("path", KERNELS, ids=[p.stem for p in KERNELS])
def test_only_graph_code_is_left_unannotated(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    assert _unannotated_non_graph(tree) == [], "annotate these: mypy does not check unannotated bodies here"


def test_the_exemption_is_not_errors_ignored() -> None:
    """No kernel module is exempt wholesale (``ignore_errors``), and the graph-code modules
    are still held to annotating every other function."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    for override in config.get("overrides", []):
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        if any(m == "kernels" or m.startswith("kernels.") for m in modules):
            assert set(override) <= {"module", "check_untyped_defs"}, override
