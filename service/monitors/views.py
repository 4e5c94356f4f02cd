"""Monitors, segments and windows as the API shows them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from service.errors import invalid
from service.monitors.aggregate import Aggregate, merge
from service.monitors.baseline import DEFAULT_WINDOWS, Baseline, baseline
from service.monitors.store import Monitor, Segment, Store, Tags
from service.monitors.timestamps import LAST, LATEST, rfc3339

RECENT_WINDOWS = 10
WindowView = Callable[[int, int, Aggregate, Baseline | None, bool], dict[str, Any]]


UNJUDGED = {"limit": None, "alert": None, "drift": None, "drift_limit": None, "drift_alert": None}
NO_QUANTILES = {"p50": None, "p90": None, "p99": None}


def window_view(start: int, length: int, window: Aggregate, judged: Baseline | None, quantiles: bool) -> dict[str, Any]:
    """A window with every field of schemas.Window, in its order (routes answer it as it is,
    without validating each of hundreds of windows against the model)."""
    view: dict[str, Any] = {**window.summary(), "start": rfc3339(start), "end": rfc3339(start + length)}
    view.update(window.quantiles() if quantiles else NO_QUANTILES)
    if judged is not None and judged.judges(start):
        view["limit"] = judged.limit(window.count)
        view["alert"] = judged.flagged(start, window)
        view["drift"], view["drift_limit"], view["drift_alert"] = judged.drift(start, window)
    else:
        view.update(UNJUDGED)
    return view


def baseline_size(monitor: Monitor) -> int:
    return int(monitor.baseline.get("windows", DEFAULT_WINDOWS))


def selection_baseline(
    store: Store,
    monitor: Monitor,
    chosen: list[Segment] | None,
    every: list[Segment],
    windows: list[tuple[int, Aggregate]] | None = None,
) -> Baseline:
    """The baseline of some segments merged (None: all): the stored one where it is fixed
    (all segments, or one), else the selection's first windows (``windows``: all of them,
    read already) and their merged sketch."""
    if "reference" in monitor.baseline:
        return baseline(monitor.baseline, [])
    ids = None if chosen is None or len(chosen) == len(every) else [s.id for s in chosen]
    if ids is None and monitor.frozen is not None:
        base = baseline(monitor.baseline, [], monitor.frozen)
    elif ids is not None and len(chosen or ()) == 1 and chosen and chosen[0].frozen is not None:
        base = baseline(monitor.baseline, [], chosen[0].frozen)
    else:
        if windows is None or ids is not None:
            windows = store.windows(monitor, sketches=False, segment_ids=ids, first=baseline_size(monitor))
        first = [(start, sums_only(w)) for start, w in windows[: baseline_size(monitor)]]
        base = baseline(monitor.baseline, first)
    if base.ready and not base.has_sketch and base.until is not None:  # (also one fixed before drift was measured)
        base = replace(base, merged=store.baseline_sketch(monitor, ids, base.until))
    return base


def sums_only(window: Aggregate) -> Aggregate:
    """A window's sums, which merge (a window read with its stored quantiles does not)."""
    return Aggregate(window.count, window.weight, window.total, window.squares, window.min, window.max)


def single(chosen: list[Segment] | None, every: list[Segment]) -> bool:
    """Whether a selection is one segment, whose window rows carry its drift as stored."""
    return len(every if chosen is None else chosen) <= 1


def alert_view(
    base: Baseline, windows: list[tuple[int, Aggregate]], latest: tuple[int, Aggregate] | None = None
) -> dict[str, Any]:
    """The alert state of windows (sorted by start) against their baseline; the drift is the
    latest judged window's (``latest``: that window with its sketch, where ``windows`` are
    sums of several segments)."""
    judged = [(start, base.flagged(start, w)) for start, w in windows if base.judges(start)]
    last = judged[-1] if judged else None
    if latest is None:
        latest = next(((start, w) for start, w in reversed(windows) if base.judges(start)), None)
    distance, limit, drifted = base.drift(*latest) if latest is not None else (None, None, None)
    return {
        "state": "pending" if not base.ready else ("alert" if last and last[1] else "ok"),
        "window": rfc3339(last[0]) if last else None,
        "flagged_windows": sum(1 for _, flagged in judged if flagged),
        "drift_state": "pending" if not base.ready else ("drift" if drifted else "ok"),
        "drift": distance,
        "drift_limit": limit,
    }


def monitor_view(
    store: Store,
    monitor: Monitor,
    detail: bool,
    recent: int = RECENT_WINDOWS,
    every: list[Segment] | None = None,
    windows: list[tuple[int, Aggregate]] | None = None,
    view_of: WindowView | None = None,
) -> dict[str, Any]:
    """The definition, baseline and alert state (all segments merged); with ``detail``,
    totals and the ``recent`` latest windows (each as ``view_of`` shows it). ``every`` and
    ``windows``: its segments and, for a monitor of one segment, its windows, read already
    (the page reads every monitor's at once)."""
    every = store.segments(monitor) if every is None else every
    one = single(None, every)
    if windows is None or not one:
        # Without segments a window is one row: read once, with its stored quantiles and drift.
        windows = store.windows(monitor, sketches=one, mergeable=False)
    base = selection_baseline(store, monitor, None, every, windows if one else None)
    latest = None
    recent_windows = windows[-recent:]
    if not one and windows:  # the windows are sums: the recent ones again, merged with their sketches
        since = windows[max(len(windows) - (recent if detail else 1), 0)][0]
        recent_windows = store.windows(monitor, since=since)
        latest = next(((start, w) for start, w in reversed(recent_windows) if base.judges(start)), None)
    view: dict[str, Any] = {
        "name": monitor.name,
        "loss": monitor.loss,
        "params": monitor.params,
        "window_seconds": monitor.window_seconds,
        "segments": list(monitor.segments),
        "retention_seconds": monitor.retention_seconds,
        "label_ttl_seconds": monitor.label_ttl_seconds,
        "created": rfc3339(monitor.created),
        "baseline": base.view(),
        "alert": alert_view(base, windows, latest),
    }
    if detail:
        view["totals"] = merge(s.totals for s in every).summary()
        view_of = window_view if view_of is None else view_of
        view["windows"] = [view_of(start, monitor.window_seconds, w, base, True) for start, w in recent_windows]
    return view


def parse_tags(monitor: Monitor, text: str) -> Tags:
    """``key:value,key:value`` (a query string's tag filter): keys must be segments."""
    tags: Tags = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition(":")
        if not sep:
            raise invalid("tags", f"{part!r} is not key:value (e.g. ?tags=model_version:v3,region:eu)")
        if key not in monitor.segments:
            raise invalid("tags", f"{key!r} is not a segment of monitor {monitor.name!r}; {segments_of(monitor)}")
        if key in tags:
            raise invalid("tags", f"{key!r} is given twice")
        tags[key] = value
    return tags


def segments_of(monitor: Monitor) -> str:
    if not monitor.segments:
        return "it has no segments"
    return f"its segments are {', '.join(monitor.segments)}"


def windows_view(
    store: Store,
    monitor: Monitor,
    since: float | None,
    until: float | None,
    step: int | None,
    tags: Tags | None = None,
) -> dict[str, Any]:
    """Windows with data in ``[since, until)`` of the segments ``tags`` picks (keys not
    named are merged over; None: all segments), merged into windows of ``step`` seconds (a
    multiple of the monitor's window, aligned on the epoch). A merged window is judged
    against the baseline when all of it lies after the baseline."""
    length = monitor.window_seconds
    step = length if step is None else step
    if step <= 0 or step % length:
        raise invalid("step", f"must be a positive multiple of the monitor's window_seconds ({length}), got {step}")
    if step >= LATEST:
        raise invalid("step", f"must be less than {LATEST} s: a window of {step} s would end after {LAST}")
    if since is not None and until is not None and until <= since:
        raise invalid("until", "must be after since")
    every = store.segments(monitor)
    chosen = None if not tags else [s for s in every if all(s.tags.get(k) == v for k, v in tags.items())]
    base = selection_baseline(store, monitor, chosen, every)
    low = None if since is None else int(since // length) * length
    high = None if until is None else -(-int(until) // length) * length
    ids = None if chosen is None else [s.id for s in chosen]
    coarse: dict[int, Aggregate] = {}
    rows = store.windows(
        monitor, since=low, until=high, segment_ids=ids, mergeable=step != length or not single(chosen, every)
    )
    for start, window in rows:
        key = start // step * step
        coarse[key] = coarse[key].merged(window) if key in coarse else window
    if step != length and coarse and max(coarse) + step >= LATEST:  # (one window: its own end, checked on write)
        raise invalid(
            "step",
            f"the window of {step} s from {rfc3339(max(coarse))} would end after {LAST}, the last time RFC 3339 "
            "can write: a smaller step",
        )
    return {
        "name": monitor.name,
        "step": step,
        "windows": [window_view(start, step, w, base, quantiles=True) for start, w in sorted(coarse.items())],
    }


def segments_view(store: Store, monitor: Monitor) -> dict[str, Any]:
    """Each segment: its tags, totals' count and mean, and its alert state against its own baseline."""
    per_segment = store.segment_windows(monitor)
    entries = []
    for segment in store.segments(monitor):
        windows = per_segment.get(segment.id, [])
        base = baseline(monitor.baseline, windows[: baseline_size(monitor)], segment.frozen)
        entries.append(
            {
                "tags": {key: segment.tags.get(key) for key in monitor.segments},
                "count": segment.totals.count,
                "mean": segment.totals.mean,
                "alert": alert_view(base, windows),
            }
        )
    return {"name": monitor.name, "segments": entries}
