"""Baselines and alerts: a window is flagged when its mean exceeds the baseline mean by more
than ``threshold`` standard errors, the standard error being the baseline's standard
deviation over the square root of the window's sample count. Its loss distribution has
drifted when the KS distance of its sketch from the baseline's exceeds ``drift_threshold``
(see service.monitors.drift)."""

from __future__ import annotations

import base64
import functools
import math
from dataclasses import dataclass
from typing import Any

from service.monitors import drift
from service.monitors.aggregate import Aggregate, merge
from service.monitors.sketch import Sketch

DEFAULT_WINDOWS = 3
DEFAULT_THRESHOLD = 3.0
DEFAULT_DRIFT_THRESHOLD = 0.1
"""A tenth of the probability mass moved: well above the sketch's error on continuous
losses (under 0.01) and what a shift of about a quarter of a standard deviation gives."""


def sketch_text(sketch: Sketch) -> str:
    """A sketch as JSON can hold it (a baseline's, stored with its sums)."""
    return base64.b64encode(sketch.encode()).decode()


def sketch_of_text(text: str | None) -> Sketch | None:
    return None if text is None else Sketch.decode(base64.b64decode(text))


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
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
    merged: Sketch | None = None
    """Its losses' distribution, where it was merged from windows at read time."""
    encoded: str | None = None
    """Its losses' distribution as stored (``sketch_text``), decoded only where a distance
    is worked out: a scrape of a thousand baselines reads the distances stored on write."""

    @property
    def has_sketch(self) -> bool:
        return self.merged is not None or self.encoded is not None

    @functools.cached_property
    def sketch(self) -> Sketch | None:
        """Its losses' distribution (None: not ready, or fixed before drift was measured)."""
        return self.merged if self.merged is not None else sketch_of_text(self.encoded)

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

    def drift(self, start: int, window: Aggregate) -> tuple[float | None, float | None, bool | None]:
        """A judged window's KS distance from the baseline, the limit it is judged by and
        whether it is above (all None for a baseline window, or without the sketches). The
        distance stored with a window row is used where there is one (the caller's baseline
        is that row's segment's)."""
        if not self.judges(start) or window.count <= 0:
            return None, None, None
        distance = window.drift
        if distance is None and window.stored is None and self.has_sketch and self.sketch is not None:
            found = drift.ks(window.sketch, self.sketch)
            distance = None if found is None else found.distance
        if distance is None:
            return None, None, None
        limit = drift.limit(self.drift_threshold, window.count, self.count)
        return distance, limit, limit is not None and distance > limit

    def view(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "windows": self.windows,
            "threshold": self.threshold,
            "drift_threshold": self.drift_threshold,
            "ready": self.ready,
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
        }


def baseline(
    config: dict[str, Any],
    windows: list[tuple[int, Aggregate]],
    frozen: dict[str, Any] | None = None,
    sketch: Sketch | None = None,
) -> Baseline:
    """The baseline of a monitor from its configuration and its first windows (sorted by
    start) with ``sketch``, their merged sketch, or ``frozen``: the sums and sketch of those
    windows stored once a later window existed."""
    size = int(config.get("windows", DEFAULT_WINDOWS))
    threshold = float(config.get("threshold", DEFAULT_THRESHOLD))
    drift_threshold = float(config.get("drift_threshold", DEFAULT_DRIFT_THRESHOLD))
    reference = config.get("reference")
    if reference is not None:
        stats = reference["count"], reference["mean"], reference["std"]
        return Baseline("reference", size, threshold, *stats, None, drift_threshold, encoded=reference.get("sketch"))
    if frozen is not None:
        sums = Aggregate(frozen["count"], frozen["weight"], frozen["total"], frozen["squares"])
        fixed = sums.count, sums.mean, sums.std, int(frozen["until"])
        return Baseline("windows", size, threshold, *fixed, drift_threshold, encoded=frozen.get("sketch"))
    if len(windows) < size:
        return Baseline("windows", size, threshold, sum(w.count for _, w in windows), None, None, None, drift_threshold)
    first = merge(w for _, w in windows[:size])
    until = windows[size - 1][0] + 1
    return Baseline("windows", size, threshold, first.count, first.mean, first.std, until, drift_threshold, sketch)
