"""Monitors and windows as the API shows them."""

from __future__ import annotations

from typing import Any

from service.errors import invalid
from service.monitors.aggregate import Aggregate, merge
from service.monitors.baseline import Baseline, baseline
from service.monitors.store import Monitor, Store
from service.monitors.timestamps import rfc3339

RECENT_WINDOWS = 10


def window_view(start: int, length: int, window: Aggregate, judged: Baseline | None, quantiles: bool) -> dict[str, Any]:
    view: dict[str, Any] = {"start": rfc3339(start), "end": rfc3339(start + length), **window.summary()}
    if quantiles:
        view.update(window.quantiles())
    if judged is not None and judged.judges(start):
        view["limit"] = judged.limit(window.count)
        view["alert"] = judged.flagged(start, window)
    return view


def monitor_view(store: Store, monitor: Monitor, detail: bool) -> dict[str, Any]:
    """The definition, baseline and alert state; with ``detail``, totals and the recent windows."""
    windows = store.windows(monitor, sketches=False)
    base = baseline(monitor.baseline, windows)
    judged = [(start, base.flagged(start, w)) for start, w in windows if base.judges(start)]
    latest = judged[-1] if judged else None
    state = "pending" if not base.ready else ("alert" if latest and latest[1] else "ok")
    view: dict[str, Any] = {
        "name": monitor.name,
        "loss": monitor.loss,
        "params": monitor.params,
        "window_seconds": monitor.window_seconds,
        "created": rfc3339(monitor.created),
        "baseline": base.view(),
        "alert": {
            "state": state,
            "window": rfc3339(latest[0]) if latest else None,
            "flagged_windows": sum(1 for _, flagged in judged if flagged),
        },
    }
    if detail:
        view["totals"] = merge(w for _, w in windows).summary()
        recent = [start for start, _ in windows[-RECENT_WINDOWS:]]
        since = recent[0] if recent else None
        view["windows"] = [
            window_view(start, monitor.window_seconds, w, base, quantiles=True)
            for start, w in store.windows(monitor, since=since)
        ]
    return view


def windows_view(
    store: Store, monitor: Monitor, since: float | None, until: float | None, step: int | None
) -> dict[str, Any]:
    """Windows with data in ``[since, until)``, merged into windows of ``step`` seconds (a
    multiple of the monitor's window, aligned on the epoch). A merged window is judged
    against the baseline when all of it lies after the baseline."""
    length = monitor.window_seconds
    step = length if step is None else step
    if step <= 0 or step % length:
        raise invalid("step", f"must be a positive multiple of the monitor's window_seconds ({length}), got {step}")
    if since is not None and until is not None and until <= since:
        raise invalid("until", "must be after since")
    base = baseline(monitor.baseline, store.windows(monitor, sketches=False))
    low = None if since is None else int(since // length) * length
    high = None if until is None else -(-int(until) // length) * length
    coarse: dict[int, Aggregate] = {}
    for start, window in store.windows(monitor, since=low, until=high):
        key = start // step * step
        coarse[key] = coarse[key].merged(window) if key in coarse else window
    return {
        "name": monitor.name,
        "step": step,
        "windows": [window_view(start, step, w, base, quantiles=True) for start, w in sorted(coarse.items())],
    }
