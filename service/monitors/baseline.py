"""Baselines and alerts: a window is flagged when its mean exceeds the baseline mean by more
than ``threshold`` standard errors, the standard error being the baseline's standard
deviation over the square root of the window's sample count."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from service.monitors.aggregate import Aggregate, merge

DEFAULT_WINDOWS = 3
DEFAULT_THRESHOLD = 3.0


@dataclass(frozen=True)
class Baseline:
    source: str
    """"windows" (the monitor's first ``windows`` windows with data) or "reference" (a batch sent at creation)."""
    windows: int
    threshold: float
    count: int
    mean: float | None
    std: float | None
    until: int | None
    """Windows starting before this formed the baseline (None: a reference batch, or not ready)."""

    @property
    def ready(self) -> bool:
        return self.mean is not None and self.std is not None

    def limit(self, count: int) -> float | None:
        """The mean above which a window of ``count`` samples is flagged."""
        if self.mean is None or self.std is None or count <= 0:
            return None
        return self.mean + self.threshold * self.std / math.sqrt(count)

    def judges(self, start: int) -> bool:
        """Whether the window starting at ``start`` is judged against the baseline (not part of it)."""
        return self.ready and (self.until is None or start >= self.until)

    def flagged(self, start: int, window: Aggregate) -> bool | None:
        """True/False for a judged window, None for a baseline window or before the baseline is ready."""
        limit = self.limit(window.count)
        if not self.judges(start) or limit is None or window.mean is None:
            return None
        return window.mean > limit

    def view(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "windows": self.windows,
            "threshold": self.threshold,
            "ready": self.ready,
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
        }


def baseline(
    config: dict[str, Any], windows: list[tuple[int, Aggregate]], frozen: dict[str, Any] | None = None
) -> Baseline:
    """The baseline of a monitor from its configuration and its first windows (sorted by
    start), or ``frozen``: the sums of those windows stored once a later window existed."""
    size = int(config.get("windows", DEFAULT_WINDOWS))
    threshold = float(config.get("threshold", DEFAULT_THRESHOLD))
    reference = config.get("reference")
    if reference is not None:
        return Baseline("reference", size, threshold, reference["count"], reference["mean"], reference["std"], None)
    if frozen is not None:
        sums = Aggregate(frozen["count"], frozen["weight"], frozen["total"], frozen["squares"])
        return Baseline("windows", size, threshold, sums.count, sums.mean, sums.std, int(frozen["until"]))
    if len(windows) < size:
        return Baseline("windows", size, threshold, sum(w.count for _, w in windows), None, None, None)
    first = merge(w for _, w in windows[:size])
    until = windows[size - 1][0] + 1
    return Baseline("windows", size, threshold, first.count, first.mean, first.std, until)
