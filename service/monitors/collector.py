"""Monitors in ``/metrics``: read from the database at scrape time, so every worker and
replica reports the same totals (no per-process counters to merge). A scrape reads the
rolled-up rows: the monitors, their segments and each segment's latest window, a few
queries whatever the number of batches or windows.

The exposition text is written here directly rather than through prometheus_client's
metric families: a thousand monitors are eight thousand samples, and the library's
per-sample label validation and formatting cost several times the queries."""

from __future__ import annotations

import math
import time

from service.monitors.aggregate import Aggregate
from service.monitors.baseline import Baseline, baseline
from service.monitors.store import Monitor, Segment, Store
from service.monitors.views import baseline_size

FAMILIES = (
    ("lossd_monitor_observations_total", "counter", "Samples recorded by a monitor."),
    ("lossd_monitor_loss_sum_total", "counter", "Sum of the (weighted) per-sample losses recorded by a monitor."),
    (
        "lossd_monitor_weight_total",
        "counter",
        "Sum of the sample weights recorded by a monitor (1 per unweighted sample).",
    ),
    ("lossd_monitor_window_mean", "gauge", "Mean loss of the latest window with data."),
    ("lossd_monitor_window_p90", "gauge", "90th percentile loss of the latest window."),
    ("lossd_monitor_alert", "gauge", "1 when the latest window's mean is flagged against the baseline."),
    (
        "lossd_monitor_drift",
        "gauge",
        "KS distance of the latest window's loss distribution from the baseline's (0 to 1).",
    ),
    ("lossd_monitor_drift_limit", "gauge", "The KS distance above which the latest window has drifted."),
)
"""Per monitor and segment (labels ``monitor``, ``loss`` and the monitor's segment keys, ""
for a null tag): observation and loss-sum counters (``rate(sum)/rate(count)`` is the mean
of unweighted observations; ``lossd_monitor_weight_total`` is the divisor for weighted
ones), the latest window's mean and p90, whether that window is flagged against the
segment's baseline, and its KS drift from it with the limit it is judged by
(``lossd_monitor_drift > lossd_monitor_drift_limit``: drifted)."""


def number(value: float) -> str:
    """A sample value as Prometheus' text format writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition_text(store: Store) -> bytes:
    """Every monitor family, in Prometheus' text format (version 0.0.4)."""
    samples: dict[str, list[str]] = {name: [] for name, _, _ in FAMILIES}
    observations, loss_sum, weight = (samples[n] for n, _, _ in FAMILIES[:3])
    mean, p90, alert, drift, drift_limit = (samples[n] for n, _, _ in FAMILIES[3:])
    segments: dict[int, list[Segment]] = {}
    for segment in store.segments():
        segments.setdefault(segment.monitor_id, []).append(segment)
    latest = store.latest_windows()
    now = time.time()
    for monitor in store.monitors():
        every = segments.get(monitor.id, [])
        if not every and not monitor.segments:
            every = [Segment(0, monitor.id, {}, Aggregate(), 0, None)]  # no data yet: still its zero counters
        own = f'monitor="{label_value(monitor.name)}",loss="{label_value(monitor.loss)}"'
        for segment in every:
            tags = "".join(f',{key}="{label_value(segment.tags.get(key) or "")}"' for key in monitor.segments)
            labels = "{" + own + tags + "} "
            observations.append(labels + number(segment.totals.count))
            loss_sum.append(labels + number(segment.totals.total))
            weight.append(labels + number(segment.totals.weight))
            window = latest.get(segment.id)
            if window is None or monitor.expired(window[0], now):
                alert.append(labels + "0.0")
                continue
            start, aggregate = window
            if aggregate.mean is not None:
                mean.append(labels + number(aggregate.mean))
                p90.append(labels + number(aggregate.quantiles()["p90"] or 0.0))
            base = segment_baseline(store, monitor, segment)
            alert.append(labels + ("1.0" if base.flagged(start, aggregate) else "0.0"))
            distance, limit, _ = base.drift(start, aggregate)
            if distance is not None and limit is not None:
                drift.append(labels + number(distance))
                drift_limit.append(labels + number(limit))
    parts = []
    for name, kind, help_text in FAMILIES:
        parts.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
        parts.extend(f"{name}{sample}\n" for sample in samples[name])
    return "".join(parts).encode()


def segment_baseline(store: Store, monitor: Monitor, segment: Segment) -> Baseline:
    if segment.frozen is not None or "reference" in monitor.baseline:
        return baseline(monitor.baseline, [], segment.frozen)
    first = store.windows(monitor, sketches=False, segment_ids=[segment.id], first=baseline_size(monitor))
    return baseline(monitor.baseline, first)
