"""Monitors in ``/metrics``: read from the database at scrape time, so every worker and
replica reports the same totals (no per-process counters to merge)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from service.monitors.store import Store
from service.monitors.views import monitor_view

LABELS = ["monitor", "loss"]


class MonitorCollector:
    """Per monitor: observation and loss-sum counters (``rate(sum)/rate(count)`` is the mean
    of unweighted observations; ``lossd_monitor_weight_total`` is the divisor for weighted
    ones), the latest window's mean and p90, and whether that window is flagged."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration: the families depend on the database

    def collect(self) -> Iterator[Metric]:
        observations = CounterMetricFamily(
            "lossd_monitor_observations", "Samples recorded by a monitor.", labels=LABELS
        )
        loss_sum = CounterMetricFamily(
            "lossd_monitor_loss_sum", "Sum of the (weighted) per-sample losses recorded by a monitor.", labels=LABELS
        )
        weight = CounterMetricFamily(
            "lossd_monitor_weight",
            "Sum of the sample weights recorded by a monitor (1 per unweighted sample).",
            labels=LABELS,
        )
        mean = GaugeMetricFamily(
            "lossd_monitor_window_mean", "Mean loss of the latest window with data.", labels=LABELS
        )
        p90 = GaugeMetricFamily("lossd_monitor_window_p90", "90th percentile loss of the latest window.", labels=LABELS)
        alert = GaugeMetricFamily(
            "lossd_monitor_alert", "1 when the latest window's mean is flagged against the baseline.", labels=LABELS
        )
        totals = self.store.totals()
        latest = self.store.latest_window_starts()
        for monitor in self.store.monitors():
            labels = [monitor.name, monitor.loss]
            total = totals.get(monitor.id)
            observations.add_metric(labels, total.count if total else 0)
            loss_sum.add_metric(labels, total.total if total else 0.0)
            weight.add_metric(labels, total.weight if total else 0.0)
            if monitor.id in latest:
                windows = self.store.windows(monitor, since=latest[monitor.id])
                if windows and windows[-1][1].mean is not None:
                    window = windows[-1][1]
                    mean.add_metric(labels, window.mean or 0.0)
                    p90.add_metric(labels, window.quantiles()["p90"] or 0.0)
            state = monitor_view(self.store, monitor, detail=False)["alert"]["state"]
            alert.add_metric(labels, 1.0 if state == "alert" else 0.0)
        yield from (observations, loss_sum, weight, mean, p90, alert)
