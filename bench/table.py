"""Plain-text tables and number formats for the report."""

from __future__ import annotations

from collections.abc import Sequence

from bench.stats import Spread


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A table with the first ``left`` columns left-aligned and the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def number(value: float) -> str:
    """Three significant figures, with thousands separators for large values."""
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def spread(s: Spread, scale: float = 1.0) -> str:
    """``median (min-max)``, each multiplied by ``scale``."""
    return f"{number(s.median * scale)} ({number(s.low * scale)}-{number(s.high * scale)})"


def ratio(value: float, floor: float) -> str:
    return f"{value / floor:.2f}x" if floor > 0 else "n/a"
