"""The README's measured figures are a bench run's own output: its block equals what
``bench/results.json`` (that run's ``--json``) renders, and the run covered every section
the issue's figures come from."""

from __future__ import annotations

import json
from pathlib import Path

from bench import readme

ROOT = Path(__file__).parents[2]


def test_the_readme_block_is_what_the_committed_results_render() -> None:
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    text = (ROOT / "README.md").read_text()
    start, end = text.index(readme.BEGIN), text.index(readme.END) + len(readme.END)
    rerun = "python -m bench --json bench/results.json --readme README.md"
    assert text[start:end] == readme.render(results), f"stale: {rerun}"


def test_the_committed_run_covers_the_sections() -> None:
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    assert {"http", "asgi", "large", "layouts", "peers", "grpc", "kernels", "startup"} <= set(results["reports"])
    for text in results["reports"].values():
        assert "FAILED" not in text.splitlines()[0], text[:300]


def test_rendering_replaces_only_the_block() -> None:
    results = {"versions": {"lossd": "0"}, "cores": 2, "other_cores_before": 0.0, "reports": {"http": "a | b"}}
    before = f"intro\n{readme.BEGIN}\nold\n{readme.END}\noutro\n"
    after = readme.replace_block(before, readme.render(results))
    assert after.startswith("intro\n") and after.endswith("\noutro\n")
    assert "old" not in after and "```text\na | b\n```" in after
