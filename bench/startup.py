"""Section: how soon ``lossd serve`` is ready, what an idle worker holds, what a first call costs.

Each start is a fresh ``lossd serve`` in its default configuration (gRPC on, one worker,
the allocator setting), timed from the spawn to its first 200 from ``/health`` and from
``/v2/health/ready``; the worker's RSS is read a second after it is ready. Then one small
request per loss, its first call against the median of the next ones: first with an empty
graph cache (each graph built on first use), then, after a restart, with the graphs that
first run cached (what the Docker image ships prebuilt).

``python -m bench.startup [--starts 5] [--losses focal,mse]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench import layouts
from bench.machine import MALLOC_ENV
from bench.process import ServerProcess, free_port, get, post
from bench.procfs import workers_rss
from bench.stats import Spread
from bench.table import number, render, spread
from kernels import REGISTRY

READY_S = 2.0
"""``/health`` and ``/v2/health/ready`` answer within this many seconds of the spawn."""
IDLE_RSS_MB = 150.0
"""An idle worker's resident memory, at most."""
FIRST_CALL_MS = 150.0
"""A graph's first call costs at most this much more than the calls after it."""
ELEMENTS = 1000
"""Per request: small, so that a first call's extra is the graph's, not the request's."""
AGAIN = 5
"""Calls after the first, whose median is the warm time."""
MB = 1 << 20


@dataclass(frozen=True)
class Settings:
    starts: int = 5
    losses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Start:
    health_s: float
    ready_s: float
    rss_mb: float


@dataclass(frozen=True)
class FirstCall:
    loss: str
    first_ms: float
    warm_ms: float
    status: int

    @property
    def extra_ms(self) -> float:
        return self.first_ms - self.warm_ms


@dataclass(frozen=True)
class Measured:
    starts: list[Start]
    cold: list[FirstCall]
    """Every loss's first call with an empty graph cache."""
    cached: list[FirstCall]
    """The same after a restart, the graphs cached by the cold calls."""


def requests(wanted: tuple[str, ...] = ()) -> dict[str, bytes]:
    """A small ``POST /loss/{name}`` body per loss that ``bench.layouts`` can lay out, its
    smallest-rank layout, default params."""
    rng = np.random.default_rng(0)
    found = {}
    for spec in REGISTRY:
        bindings = layouts.layouts(spec, ELEMENTS)
        if bindings and (not wanted or spec.name in wanted):
            arrays = layouts.make_inputs(spec, next(iter(bindings.values())), rng)
            found[spec.name] = orjson.dumps(arrays, option=orjson.OPT_SERIALIZE_NUMPY)
    return found


def seconds_until(proc: ServerProcess, path: str, since: float, timeout: float = 60.0) -> float:
    """Seconds from ``since`` to the first 200 from ``path``, polled every 5 ms."""
    while time.perf_counter() - since < timeout:
        assert proc.process is not None
        if proc.process.poll() is not None:
            raise RuntimeError(f"lossd serve exited with {proc.process.returncode}:\n{proc.log_tail()}")
        try:
            if get(proc.port, path) == 200:
                return time.perf_counter() - since
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{path} not ready after {timeout:.0f} s:\n{proc.log_tail()}")


def server(cache: Path, log: Path) -> ServerProcess:
    env = {**os.environ, **MALLOC_ENV, "LOSSD_GRAPH_CACHE": str(cache), "LOSSD_GRPC_PORT": str(free_port())}
    return ServerProcess("service", [sys.executable, "-m", "service.cli", "serve"], env, log)


def started(proc: ServerProcess, spawned: float) -> Start:
    health = seconds_until(proc, "/health", spawned)
    ready = seconds_until(proc, "/v2/health/ready", spawned)
    time.sleep(1.0)
    return Start(health, ready, workers_rss(proc.pid) / MB)


def first_calls(proc: ServerProcess, bodies: dict[str, bytes]) -> list[FirstCall]:
    calls = []
    for loss, body in bodies.items():
        times, statuses = [], []
        for _ in range(1 + AGAIN):
            began = time.perf_counter()
            status, _ = post(proc.port, f"/loss/{loss}", body, timeout=30.0)
            times.append((time.perf_counter() - began) * 1e3)
            statuses.append(status)
        worst = next((s for s in statuses if s != 200), 200)
        calls.append(FirstCall(loss, times[0], float(np.median(times[1:])), worst))
    return calls


def run(settings: Settings, log: Callable[[str], None] = print) -> Measured:
    bodies = requests(settings.losses)
    starts: list[Start] = []
    with tempfile.TemporaryDirectory(prefix="lossd-bench-startup-") as tmp:
        cache = Path(tmp) / "graphs"
        log(f"start-up: {settings.starts} starts, first calls of {len(bodies)} losses")
        cold: list[FirstCall] = []
        cached: list[FirstCall] = []
        for index in range(settings.starts):
            proc = server(cache, Path(tmp) / f"start{index}.log")
            spawned = time.perf_counter()
            with proc:
                starts.append(started(proc, spawned))
                if index == 0:
                    cold = first_calls(proc, bodies)
                elif index == settings.starts - 1:
                    cached = first_calls(proc, bodies)
    return Measured(starts, cold, cached)


def calls_row(label: str, calls: list[FirstCall]) -> list[str]:
    if not calls:
        return [label, "n/a", "", "", ""]
    extra = Spread.of([c.extra_ms for c in calls])
    worst = max(calls, key=lambda c: c.extra_ms)
    answered = sum(c.status == 200 for c in calls)
    return [label, spread(extra), f"{number(worst.extra_ms)} ({worst.loss})", f"{answered}/{len(calls)}", ""]


def report(measured: Measured, settings: Settings) -> str:
    ready = Spread.of([s.ready_s for s in measured.starts])
    health = Spread.of([s.health_s for s in measured.starts])
    rss = Spread.of([s.rss_mb for s in measured.starts])
    rows = [
        ["/health after spawn, s", spread(health), "", "", f"<= {READY_S:g}"],
        ["/v2/health/ready after spawn, s", spread(ready), "", "", f"<= {READY_S:g}"],
        ["idle worker RSS, MiB", spread(rss), "", "", f"<= {IDLE_RSS_MB:g}"],
        calls_row("first call extra, empty cache, ms", measured.cold),
        calls_row("first call extra, cached graphs, ms", measured.cached),
    ]
    rows[3][4] = rows[4][4] = f"<= {FIRST_CALL_MS:g}"
    table = render(["start-up", "median (min-max)", "worst (loss)", "answered 200", "target"], rows)
    starts = len(measured.starts)
    return (
        f"Start-up: {starts} starts of `lossd serve` (defaults, gRPC on); first calls: one {ELEMENTS}-element\n"
        f"POST /loss/{{name}} per loss, its first call minus the median of the next {AGAIN}\n{table}"
    )


def json(measured: Measured) -> dict[str, Any]:
    return {
        "starts": [vars(s) for s in measured.starts],
        "cold": [vars(c) for c in measured.cold],
        "cached": [vars(c) for c in measured.cached],
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=Settings.starts)
    parser.add_argument("--losses", default="", help="comma-separated losses (default: those bench.layouts lays out)")
    args = parser.parse_args(argv)
    settings = Settings(args.starts, tuple(filter(None, args.losses.split(","))))
    print(report(run(settings), settings))


if __name__ == "__main__":
    main(sys.argv[1:])
