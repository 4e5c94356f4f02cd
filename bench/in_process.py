"""Section 1b: the same apps called in process through ASGI (no sockets, no
uvicorn, no access log): the app's own CPU cost per request, which the HTTP numbers
bury under the load generator, uvicorn and other processes' noise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvloop

from bench.asgi import ASGIApp, lifespan, one_request, seconds_per_request
from bench.payload import PATH, small_request
from bench.servers import floor_app, minimal_app, naive_app
from bench.stats import Spread
from bench.table import number, ratio, render, spread


@dataclass(frozen=True)
class Settings:
    threads: int
    rounds: int
    requests: int
    """Requests per round; each round's mean is one sample."""


def service_app(threads: int) -> ASGIApp:
    from service.app import create_app
    from service.settings import Settings as ServiceSettings

    app: ASGIApp = create_app(ServiceSettings(provider="cpu", intra_op_threads=threads))
    return app


def traced_app(threads: int) -> ASGIApp:
    """The service with tracing on: every span made, handed to an exporter that drops it (the
    synchronous processor: an upper bound on what the batching one costs the request)."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from service import tracing
    from service.settings import Settings as ServiceSettings

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    app = service_app(threads)
    tracing.start(ServiceSettings(), Dropped())  # its lifespan's shutdown turns tracing off again
    return app


APPS: dict[str, tuple[str, Callable[[int], ASGIApp]]] = {
    "floor": ("floor: bare ASGI + orjson + numpy + ORT", floor_app),
    "minimal": ("minimal floor: same, hand-written focal graph", minimal_app),
    "service": ("service: service.app.create_app()", service_app),
    "naive": ("naive: FastAPI + pydantic list[list[float]]", naive_app),
    "traced": ("service, tracing on (spans dropped)", traced_app),
}
"""The service's row is tracing off, as by default; "traced" comes last (it turns tracing on)."""


async def _measure(settings: Settings) -> dict[str, Spread | str]:
    body = small_request()
    found: dict[str, Spread | str] = {}
    for key, (_, factory) in APPS.items():
        try:
            found[key] = await _measure_one(factory(settings.threads), body, settings)
        except Exception as exc:  # reported in the table, the other apps still run
            found[key] = f"{type(exc).__name__}: {exc}".splitlines()[0][:100]
    return found


async def _measure_one(app: ASGIApp, body: bytes, settings: Settings) -> Spread:
    async with lifespan(app):
        status, answer = await one_request(app, PATH, body)
        if status != 200:
            raise RuntimeError(f"answered {status} in process: {answer[:300]!r}")
        samples = [await seconds_per_request(app, PATH, body, settings.requests) for _ in range(settings.rounds)]
    return Spread.of(samples)


def run(settings: Settings) -> dict[str, Spread | str]:
    return uvloop.run(_measure(settings))


def report(results: dict[str, Spread | str], settings: Settings) -> str:
    floor_result = results["floor"]
    floor = floor_result.low if isinstance(floor_result, Spread) else 0.0
    headers = ["app (called in process)", "us/req best", "req/s per core", "vs floor", "us/req median (min-max)"]
    rows = []
    for key, s in results.items():
        if isinstance(s, str):
            rows.append([APPS[key][0], "FAILED: " + s, "", "", ""])
        else:
            rows.append([APPS[key][0], number(s.low * 1e6), number(1 / s.low), ratio(floor, s.low), spread(s, 1e6)])
    title = (
        f"Small requests in process: the ASGI app alone (no HTTP, uvicorn or access log), {settings.rounds} rounds x "
        f"{settings.requests} sequential requests; best round = the app's own cost; 'vs floor' = req/s ratio"
    )
    return "\n".join([title, "", render(headers, rows)])


def json(results: dict[str, Spread | str]) -> dict[str, Any]:
    floor_result = results["floor"]
    floor = floor_result.low if isinstance(floor_result, Spread) else None
    found: dict[str, Any] = {}
    for key, s in results.items():
        if isinstance(s, str):
            found[key] = {"error": s}
        else:
            found[key] = {"seconds_per_request": s.json(), "best_vs_floor": floor / s.low if floor else None}
    return found
