"""Monitors in ``/metrics``: read from the database at scrape time, so every worker and
replica reports the same totals (no per-process counters to merge). A scrape reads the
rolled-up rows: the monitors, their segments and each segment's latest window, a few
queries whatever the number of batches or windows."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from service.monitors.aggregate import Aggregate
from service.monitors.baseline import Baseline, baseline
from service.monitors.store import Monitor, Segment, Store
from service.monitors.views import baseline_size


class MonitorCollector:
    """Per monitor and segment (labels ``monitor``, ``loss`` and the monitor's segment keys,
    "" for a null tag): observation and loss-sum counters (``rate(sum)/rate(count)`` is the
    mean of unweighted observations; ``lossd_monitor_weight_total`` is the divisor for
    weighted ones), the latest window's mean and p90, whether that window is flagged
    against the segment's baseline, and its KS drift from it with the limit it is judged
    by (``lossd_monitor_drift > lossd_monitor_drift_limit``: drifted)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration: the families depend on the database

    def collect(self) -> Iterator[Metric]:
        observations = CounterMetricFamily("lossd_monitor_observations", "Samples recorded by a monitor.")
        loss_sum = CounterMetricFamily(
            "lossd_monitor_loss_sum", "Sum of the (weighted) per-sample losses recorded by a monitor."
        )
        weight = CounterMetricFamily(
            "lossd_monitor_weight", "Sum of the sample weights recorded by a monitor (1 per unweighted sample)."
        )
        mean = GaugeMetricFamily("lossd_monitor_window_mean", "Mean loss of the latest window with data.")
        p90 = GaugeMetricFamily("lossd_monitor_window_p90", "90th percentile loss of the latest window.")
        alert = GaugeMetricFamily(
            "lossd_monitor_alert", "1 when the latest window's mean is flagged against the baseline."
        )
        drift = GaugeMetricFamily(
            "lossd_monitor_drift",
            "KS distance of the latest window's loss distribution from the baseline's (0 to 1).",
        )
        drift_limit = GaugeMetricFamily(
            "lossd_monitor_drift_limit", "The KS distance above which the latest window has drifted."
        )
        segments: dict[int, list[Segment]] = {}
        for segment in self.store.segments():
            segments.setdefault(segment.monitor_id, []).append(segment)
        latest = self.store.latest_windows()
        now = time.time()
        for monitor in self.store.monitors():
            every = segments.get(monitor.id, [])
            if not every and not monitor.segments:
                empty = Segment(0, monitor.id, {}, Aggregate(), 0, None)
                every = [empty]  # a monitor without data still shows its zero counters
            for segment in every:
                labels = {"monitor": monitor.name, "loss": monitor.loss}
                labels.update({key: segment.tags.get(key) or "" for key in monitor.segments})
                observations.add_sample("lossd_monitor_observations_total", labels, segment.totals.count)
                loss_sum.add_sample("lossd_monitor_loss_sum_total", labels, segment.totals.total)
                weight.add_sample("lossd_monitor_weight_total", labels, segment.totals.weight)
                window = latest.get(segment.id)
                if window is None or monitor.expired(window[0], now):
                    alert.add_sample("lossd_monitor_alert", labels, 0.0)
                    continue
                start, aggregate = window
                if aggregate.mean is not None:
                    mean.add_sample("lossd_monitor_window_mean", labels, aggregate.mean)
                    p90.add_sample("lossd_monitor_window_p90", labels, aggregate.quantiles()["p90"] or 0.0)
                base = self.baseline(monitor, segment)
                flagged = base.flagged(start, aggregate)
                alert.add_sample("lossd_monitor_alert", labels, 1.0 if flagged else 0.0)
                distance, limit, _ = base.drift(start, aggregate)
                if distance is not None and limit is not None:
                    drift.add_sample("lossd_monitor_drift", labels, distance)
                    drift_limit.add_sample("lossd_monitor_drift_limit", labels, limit)
        yield from (observations, loss_sum, weight, mean, p90, alert, drift, drift_limit)

    def baseline(self, monitor: Monitor, segment: Segment) -> Baseline:
        if segment.frozen is not None or "reference" in monitor.baseline:
            return baseline(monitor.baseline, [], segment.frozen)
        first = self.store.windows(monitor, sketches=False, segment_ids=[segment.id], first=baseline_size(monitor))
        return baseline(monitor.baseline, first)
