"""``GET /ui/monitors``: one self-contained HTML page (inline CSS and SVG, nothing fetched
from elsewhere), drawn on the server so it shows without JavaScript and works offline:
each monitor's mean loss per window, its p90, the baseline and the band a window must stay
under, and the flagged windows."""

from __future__ import annotations

from html import escape
from typing import Any

from service.errors import invalid
from service.monitors.aggregate import Aggregate
from service.monitors.baseline import Baseline
from service.monitors.store import Monitor, Segment, Store
from service.monitors.timestamps import rfc3339
from service.monitors.views import monitor_view, segments_view

WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_Y = 760, 240, 64, 16, 28
MEAN_COLOUR, P90_COLOUR, BAND_COLOUR, ALERT_COLOUR = "#2563eb", "#93c5fd", "#bbf7d0", "#dc2626"
MOST_WINDOWS = 240

STYLE = f"""
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #111827; background: #ffffff; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }}
section {{ margin: 20px 0; padding: 12px 16px; border: 1px solid #e5e7eb; border-radius: 8px; }}
h2 {{ font-size: 16px; margin: 0 0 6px; }}
.state {{ padding: 1px 8px; border-radius: 10px; font-size: 12px; color: #fff; }}
.ok {{ background: #16a34a; }} .alert {{ background: {ALERT_COLOUR}; }} .pending {{ background: #6b7280; }}
.meta {{ color: #4b5563; font-size: 12px; }}
svg text {{ font-size: 11px; fill: #4b5563; }}
.legend span {{ margin-right: 14px; font-size: 12px; }}
table.segments {{ border-collapse: collapse; margin-top: 8px; font-size: 12px; }}
table.segments th, table.segments td {{ padding: 2px 10px; border-bottom: 1px solid #e5e7eb; text-align: left; }}
"""


PAGE_SIZE = 20
"""Monitors per page: a page costs what its monitors' charts cost, however many there are."""


def pages(count: int) -> int:
    return max(1, -(-count // PAGE_SIZE))


def page(store: Store, number: int = 1) -> str:
    """Page ``number`` (from 1) of the monitors, by name: three queries for the monitors
    without segments (the monitors, the segments, their windows); a segmented monitor reads
    its own."""
    everyone = store.monitors()
    last = pages(len(everyone))
    if number > last:
        raise invalid("page", f"there are {last} page(s) of monitors ({PAGE_SIZE} a page), not {number}")
    monitors = everyone[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    segments: dict[int, list[Segment]] = {m.id: [] for m in monitors}
    for segment in store.segments():
        if segment.monitor_id in segments:
            segments[segment.monitor_id].append(segment)
    plain = store.plain_windows(monitors)
    sections = [
        section(
            store,
            monitor_view(
                store, m, True, MOST_WINDOWS, segments[m.id], plain.get(m.id), view_of=point if m.id in plain else None
            ),
            m,
        )
        for m in monitors
    ]
    body = "".join(sections) if sections else "<p>No monitors yet: POST /monitors creates one.</p>"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='refresh' content='30'><title>lossd monitors</title>"
        f"<style>{STYLE}</style></head><body><h1>lossd monitors</h1>"
        f"<div class='meta'>{len(everyone)} monitor(s); the page refreshes every 30 s.</div>"
        f"{navigation(number, last)}{body}{navigation(number, last)}</body></html>"
    )


def navigation(number: int, last: int) -> str:
    """Links to the previous and next pages, where there is more than one."""
    if last == 1:
        return ""
    links = [f"page {number} of {last}"]
    if number > 1:
        links.insert(0, f"<a href='?page={number - 1}'>previous</a>")
    if number < last:
        links.append(f"<a href='?page={number + 1}'>next</a>")
    return f"<nav class='meta'>{' · '.join(links)}</nav>"


def section(store: Store, view: dict[str, Any], monitor: Monitor) -> str:
    """A monitor: its state, totals and chart (all segments merged), then its segments."""
    totals, state, base, windows = view["totals"], view["alert"]["state"], view["baseline"], view["windows"]
    mean = "n/a" if totals["mean"] is None else f"{totals['mean']:.6g}"
    baseline = "not ready" if not base["ready"] else f"{base['mean']:.6g} ± {base['std']:.3g} ({base['source']})"
    alert = view["alert"]
    drift = alert["drift_state"]
    if alert["drift"] is not None:
        drift += f" (KS {alert['drift']:.3f}, limit {alert['drift_limit']:.3f})"
    return (
        f"<section><h2>{escape(view['name'])} <span class='state {state}'>{state}</span></h2>"
        f"<div class='meta'>loss {escape(view['loss'])}, window {view['window_seconds']} s, "
        f"{totals['count']} samples, mean {mean}; baseline {escape(baseline)}, threshold {base['threshold']:g} SE; "
        f"{view['alert']['flagged_windows']} flagged window(s); distribution {drift}</div>{chart(windows, base)}"
        f"<div class='legend'><span style='color:{MEAN_COLOUR}'>━ mean</span>"
        f"<span style='color:{P90_COLOUR}'>━ p90</span><span style='color:#15803d'>▆ baseline band</span>"
        f"<span style='color:{ALERT_COLOUR}'>● flagged</span></div>{segments_table(store, monitor)}</section>"
    )


def point(start: int, length: int, window: Aggregate, judged: Baseline | None, _: bool) -> dict[str, Any]:
    """What the chart draws of a window (the API's view formats more than it needs)."""
    limit = alert = None
    if judged is not None and judged.judges(start):
        limit, alert = judged.limit(window.count), judged.flagged(start, window)
    p90 = window.quantiles()["p90"]
    # "end_at" instead of "end": only the last point's end is written, formatted then.
    return {
        "start": rfc3339(start),
        "end_at": start + length,
        "mean": window.mean,
        "p90": p90,
        "limit": limit,
        "alert": alert,
    }


def segments_table(store: Store, monitor: Monitor) -> str:
    """A table of a segmented monitor's segments: tags, samples, mean and alert state."""
    if not monitor.segments:
        return ""
    rows = []
    for entry in segments_view(store, monitor)["segments"]:
        tags = "".join(f"<td>{'—' if v is None else escape(v)}</td>" for v in entry["tags"].values())
        mean = "n/a" if entry["mean"] is None else f"{entry['mean']:.6g}"
        state, drift = entry["alert"]["state"], entry["alert"]["drift_state"]
        drifted = "alert" if drift == "drift" else drift
        rows.append(
            f"<tr>{tags}<td>{entry['count']}</td><td>{mean}</td>"
            f"<td><span class='state {state}'>{state}</span></td>"
            f"<td><span class='state {drifted}'>{drift}</span></td></tr>"
        )
    head = "".join(f"<th>{escape(key)}</th>" for key in monitor.segments)
    body = "".join(rows) or f"<tr><td colspan='{len(monitor.segments) + 4}'>no observations yet</td></tr>"
    return (
        f"<table class='segments'><thead><tr>{head}<th>samples</th><th>mean</th><th>state</th><th>drift</th>"
        "</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def chart(windows: list[dict[str, Any]], base: dict[str, Any]) -> str:
    """An SVG line chart of the windows' means (ids ``mean``, ``p90``, ``band``, ``alerts``)."""
    points = [w for w in windows if w["mean"] is not None]
    if not points:
        return f"<svg width='{WIDTH}' height='{HEIGHT}'><text x='20' y='40'>no observations yet</text></svg>"
    values = [w["mean"] for w in points] + [w["p90"] for w in points if w["p90"] is not None]
    values += [w["limit"] for w in points if w.get("limit") is not None]
    if base["ready"]:
        values.append(base["mean"])
    low, high = min(0.0, *values), max(values)
    high = high if high > low else low + 1.0
    span = len(points) - 1 or 1

    def x(i: int) -> float:
        return PAD_LEFT + (WIDTH - PAD_LEFT - PAD_RIGHT) * (i / span if len(points) > 1 else 0.5)

    def y(v: float) -> float:
        return float(HEIGHT - PAD_Y - (HEIGHT - 2 * PAD_Y) * (v - low) / (high - low) * 0.95)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' role='img'>"]
    parts.append(
        f"<rect x='{PAD_LEFT}' y='{PAD_Y / 2}' width='{WIDTH - PAD_LEFT - PAD_RIGHT}' "
        f"height='{HEIGHT - 1.5 * PAD_Y}' fill='#f9fafb' stroke='#e5e7eb'/>"
    )
    judged = [(i, w) for i, w in enumerate(points) if w.get("limit") is not None]
    if base["ready"] and judged:
        upper = [f"{x(i):.1f},{y(w['limit']):.1f}" for i, w in judged]
        lower = [f"{x(i):.1f},{y(base['mean']):.1f}" for i, w in reversed(judged)]
        parts.append(f"<polygon id='band' points='{' '.join(upper + lower)}' fill='{BAND_COLOUR}' stroke='none'/>")
    if base["ready"]:
        parts.append(
            f"<line x1='{PAD_LEFT}' x2='{WIDTH - PAD_RIGHT}' y1='{y(base['mean']):.1f}' "
            f"y2='{y(base['mean']):.1f}' stroke='#15803d' stroke-dasharray='6 4'/>"
        )
    p90 = " ".join(f"{x(i):.1f},{y(w['p90']):.1f}" for i, w in enumerate(points) if w["p90"] is not None)
    parts.append(f"<polyline id='p90' points='{p90}' fill='none' stroke='{P90_COLOUR}' stroke-width='2'/>")
    mean = " ".join(f"{x(i):.1f},{y(w['mean']):.1f}" for i, w in enumerate(points))
    parts.append(f"<polyline id='mean' points='{mean}' fill='none' stroke='{MEAN_COLOUR}' stroke-width='3'/>")
    parts.append("<g id='alerts'>")
    for i, w in enumerate(points):
        colour = ALERT_COLOUR if w.get("alert") else MEAN_COLOUR
        radius = 6 if w.get("alert") else 3
        parts.append(
            f"<circle cx='{x(i):.1f}' cy='{y(w['mean']):.1f}' r='{radius}' fill='{colour}'>"
            f"<title>{escape(w['start'])}: mean {w['mean']:.6g}</title></circle>"
        )
    parts.append("</g>")
    for value in (low, high):
        parts.append(f"<text x='{PAD_LEFT - 6}' y='{y(value) + 4:.1f}' text-anchor='end'>{value:.4g}</text>")
    parts.append(f"<text x='{PAD_LEFT}' y='{HEIGHT - 6}'>{escape(points[0]['start'])}</text>")
    last = points[-1]
    end = last["end"] if "end" in last else rfc3339(last["end_at"])
    parts.append(f"<text x='{WIDTH - PAD_RIGHT}' y='{HEIGHT - 6}' text-anchor='end'>{escape(end)}</text>")
    parts.append("</svg>")
    return "".join(parts)
