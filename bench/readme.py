"""The README's measured figures, written from a bench run's own report.

``python -m bench --json bench/results.json --readme README.md`` replaces the block between
the markers below with each section's table exactly as that run printed it (medians with
their min-max, ratios to the floors of the same run), headed by the machine and versions;
``tests/bench/test_readme_figures.py`` checks that the README's block is what
``bench/results.json`` renders, so no figure in the README is typed by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:begin (written by python -m bench --readme README.md; do not edit) -->"
END = "<!-- bench:end -->"


def render(results: dict[str, Any]) -> str:
    """The block for a run's results (``python -m bench --json``)."""
    versions = ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    lines = [
        BEGIN,
        f"Measured by `python -m bench {' '.join(results.get('argv', []))}`".rstrip() + f" on {results['cores']} cores "
        f"({versions}); other processes kept {results['other_cores_before']:.2f} cores busy before the run.",
        "",
    ]
    for name, text in results["reports"].items():
        other = results.get(f"other_cores_during_{name}")
        noise = f" (other processes: {other:.2f} cores)" if other is not None else ""
        lines += [f"**{name}**{noise}", "", "```text", text.rstrip(), "```", ""]
    lines.append(END)
    return "\n".join(lines)


def replace_block(readme: str, block: str) -> str:
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[:start] + block + readme[end:]


def write(path: Path, results: dict[str, Any]) -> None:
    path.write_text(replace_block(path.read_text(), render(results)))
