"""Section 1: requests/s for a small focal request, the service against two floors.

The floor runs the service's own focal graph behind bare ASGI + orjson + numpy: what the
service adds around the same computation. The minimal floor runs the smallest graph that
computes the same loss (``bench.minimal_graph``, checked to 1e-6 relative before anything is
measured): what the service's general graph costs on top.

All servers run side by side (one uvicorn worker each, uvloop + httptools, the same
environment) and are measured in turn, round-robin, so slow drift hits them alike.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import Generator, LoadResult, Target
from bench.machine import MALLOC_ENV, Interference
from bench.minimal_graph import LOSS_RTOL, focal_graph
from bench.payload import COLUMNS, PATH, ROWS, small_request
from bench.process import HOST, ServerProcess
from bench.stats import Spread
from bench.table import number, ratio, render, spread

TARGETS = {"floor": 0.8, "minimal": 0.65}
"""The service should reach at least this fraction of each floor's requests/s."""
TARGET_SCALING = 1.7
"""Two workers should serve at least this multiple of one worker's requests/s."""
TWO_WORKERS = {"LOSSD_WORKERS": "2"}


@dataclass(frozen=True)
class Server:
    key: str
    label: str
    argv: list[str]
    env: dict[str, str]
    connections: int | None = None
    """More connections than the generator's default: uvicorn's workers accept from one socket,
    and 8 keep-alive connections can all land on one worker."""


def servers() -> list[Server]:
    python = sys.executable
    launch = [python, "-m", "bench.launch"]
    service = [python, "-m", "service.cli", "serve"]
    return [
        Server(
            "floor", "floor: bare ASGI + orjson + numpy + ORT, same graph", [*launch, "bench.servers:floor_app"], {}
        ),
        Server(
            "minimal",
            f"minimal floor: same, {len(focal_graph().graph.node)}-node focal graph",
            [*launch, "bench.servers:minimal_app"],
            {},
        ),
        Server("service", "service: lossd serve", service, {}),
        Server("naive", "naive: FastAPI + pydantic list[list[float]]", [*launch, "bench.servers:naive_app"], {}),
        Server("service_2w", "service: lossd serve, 2 workers, 64 conns", service, TWO_WORKERS, 64),
    ]


def server_env(threads: int) -> dict[str, str]:
    """This environment plus what every server gets: the service's allocator setting,
    its intra-op threads, the CPU provider and one worker."""
    env = dict(os.environ)
    env.update(MALLOC_ENV)
    # gRPC off unless a section serves it on a port of its own (bench.grpc): two servers would
    # otherwise share 8001 through SO_REUSEPORT.
    env.update(LOSSD_INTRA_OP_THREADS=str(threads), LOSSD_PROVIDER="cpu", LOSSD_WORKERS="1", LOSSD_GRPC_PORT="0")
    return env


@dataclass(frozen=True)
class Measured:
    server: Server
    runs: list[LoadResult]
    cpu_us: list[float]
    """Server CPU microseconds per request, one per run."""
    noise: list[float]
    """Cores other processes kept busy during each run."""
    loss: float | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.runs)

    @property
    def rps(self) -> Spread:
        return Spread.of([r.rps for r in self.runs])

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    def json(self) -> dict[str, Any]:
        if not self.ok:
            return {"label": self.server.label, "error": self.error}
        return {
            "label": self.server.label,
            "rps": self.rps.json(),
            "p50_ms": Spread.of([r.p50_ms for r in self.runs]).json(),
            "p99_ms": Spread.of([r.p99_ms for r in self.runs]).json(),
            "server_cpu_us_per_request": Spread.of(self.cpu_us).json(),
            "other_processes_cores": Spread.of(self.noise).json(),
            "errors": self.errors,
            "loss": self.loss,
        }


@dataclass(frozen=True)
class Settings:
    seconds: float
    warmup: float
    repeats: int
    threads: int


def run(generator: Generator, settings: Settings) -> list[Measured]:
    """Start every server, check they compute the same loss, then measure them round-robin.
    A server that fails to start or disagrees is reported, not measured."""
    body = small_request()
    chosen = servers()
    env = server_env(settings.threads)
    with tempfile.TemporaryDirectory(prefix="lossd-bench-") as tmp, ExitStack() as stack:
        procs = [
            stack.enter_context(ServerProcess(s.key, s.argv, {**env, **s.env}, Path(tmp) / f"{s.key}.log"))
            for s in chosen
        ]
        losses: dict[str, float] = {}
        failed: dict[str, str] = {}
        for proc in procs:
            try:
                losses[proc.name] = float(proc.wait_ready(PATH, body)["loss"])
            except (RuntimeError, KeyError, TypeError, ValueError) as exc:
                failed[proc.name] = str(exc)
                proc.stop()
        failed.update(disagreements(losses))
        live = [(s, p) for s, p in zip(chosen, procs, strict=True) if s.key not in failed]
        runs: dict[str, list[LoadResult]] = {s.key: [] for s in chosen}
        cpu: dict[str, list[float]] = {s.key: [] for s in chosen}
        noise: dict[str, list[float]] = {s.key: [] for s in chosen}
        for server, proc in live:
            generator.run(Target(HOST, proc.port, PATH, body, connections=server.connections), settings.warmup)
        for _ in range(settings.repeats):
            for server, proc in live:
                interference = Interference.start()
                before = proc.cpu_seconds()
                result = generator.run(
                    Target(HOST, proc.port, PATH, body, connections=server.connections), settings.seconds
                )
                used = proc.cpu_seconds() - before
                noise[server.key].append(interference.other_cores(also_ours=used))
                cpu[server.key].append(used / max(result.requests, 1) * 1e6)
                runs[server.key].append(result)
    return [Measured(s, runs[s.key], cpu[s.key], noise[s.key], losses.get(s.key), failed.get(s.key)) for s in chosen]


def disagreements(losses: dict[str, float]) -> dict[str, str]:
    """Servers that are not doing the same work: a loss that differs from the floor's, or
    for the minimal floor (a different graph) from the service's by more than ``LOSS_RTOL``."""
    found = {}
    for key, loss in losses.items():
        reference_key, tolerance = ("service", LOSS_RTOL) if key == "minimal" else ("floor", 1e-5)
        reference = losses.get(reference_key)
        if reference is None and key == "minimal":
            found[key] = "its loss cannot be checked: the service gave none"
        elif reference is not None and not math.isclose(loss, reference, rel_tol=tolerance):
            found[key] = f"computes loss {loss!r}, the {reference_key} {reference!r} (rel tol {tolerance:g})"
    return found


def paired_ratio(one: Measured, other: Measured) -> Spread:
    """req/s of ``one`` over ``other``, one ratio per round-robin repeat (measured seconds
    apart, so drift cancels), as median and range."""
    return Spread.of([a.rps / b.rps for a, b in zip(one.runs, other.runs, strict=True)])


def verdicts(found: dict[str, Measured]) -> dict[str, Spread]:
    """The service's req/s over each floor that ran."""
    service = found["service"]
    return {key: paired_ratio(service, found[key]) for key in TARGETS if service.ok and key in found and found[key].ok}


def by_key(results: list[Measured]) -> Iterator[tuple[str, Measured]]:
    return ((m.server.key, m) for m in results)


def last_line(text: str | None) -> str:
    """The last line of an error (a traceback's exception), shortened for a table cell."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip()[:100] if lines else "no result"


def report(results: list[Measured], generator: Generator, settings: Settings) -> str:
    found = dict(by_key(results))
    floor = found["floor"] if found["floor"].ok else None
    floor_rps = floor.rps.median if floor else 0.0
    floor_cpu = Spread.of(floor.cpu_us).median if floor else 0.0
    headers = [
        "server",
        "req/s (min-max)",
        "vs floor",
        "p50 ms",
        "p99 ms",
        "server CPU us/req",
        "CPU vs floor",
        "other procs",
    ]
    rows = []
    for m in results:
        if not m.ok:
            rows.append([m.server.label, "FAILED: " + last_line(m.error), "", "", "", "", "", ""])
            continue
        cpu = Spread.of(m.cpu_us)
        rows.append(
            [
                m.server.label,
                spread(m.rps),
                ratio(m.rps.median, floor_rps),
                number(Spread.of([r.p50_ms for r in m.runs]).median),
                number(Spread.of([r.p99_ms for r in m.runs]).median),
                number(cpu.median),
                ratio(cpu.median, floor_cpu),
                f"{max(m.noise):.2f}",
            ]
        )
    title = (
        f"Small requests: POST {PATH}, {ROWS}x{COLUMNS} JSON ({len(small_request()) / 1000:.1f} KB), "
        f"1 uvicorn worker (uvloop + httptools), ORT intra-op threads {settings.threads}\n"
        f"load: {generator.name}; {settings.repeats} x {settings.seconds:g} s per server after "
        f"{settings.warmup:g} s warm-up, round-robin; median (min-max); 'vs floor' = req/s ratio; "
        f"'other procs' = most cores other processes took during a run (noise; 2 cores in all)"
    )
    lines = [title, "", render(headers, rows)]
    service = found["service"]
    if service.ok:
        lines.append("")
    for key, value in verdicts(found).items():
        target = TARGETS[key]
        verdict = "meets" if value.median >= target else "BELOW"
        cpu_ratio = Spread.of(found[key].cpu_us).median / Spread.of(service.cpu_us).median
        lines.append(
            f"service / {key} = {value.median:.2f}x req/s ({value.low:.2f}-{value.high:.2f}; {verdict} the target "
            f">= {target:.2f}x); {cpu_ratio:.2f}x by server CPU per request"
        )
    two = found.get("service_2w")
    if service.ok and two is not None and two.ok:
        scaling = two.rps.median / service.rps.median
        verdict = "meets" if scaling >= TARGET_SCALING else "BELOW"
        lines.append(
            f"2 workers / 1 worker = {scaling:.2f}x req/s ({verdict} the target >= {TARGET_SCALING:.1f}x; "
            f"the load generator shares the {os.cpu_count()} cores)"
        )
    errors = [f"{m.server.key}: {m.errors}" for m in results if m.ok and m.errors]
    if errors:
        lines.append("errors (non-2xx or socket): " + ", ".join(errors))
    return "\n".join(lines)


def two_over_one(found: dict[str, Measured]) -> float | None:
    one, two = found["service"], found.get("service_2w")
    return two.rps.median / one.rps.median if two is not None and two.ok and one.ok else None


def json(results: list[Measured], generator: Generator, settings: Settings) -> dict[str, Any]:
    found = dict(by_key(results))
    floor = found["floor"]
    floor_rps = floor.rps.median if floor.ok else None
    servers_json = {}
    for key, m in found.items():
        entry = m.json()
        if floor_rps and m.ok:
            entry["vs_floor"] = m.rps.median / floor_rps
        servers_json[key] = entry
    return {
        "generator": generator.name,
        "path": PATH,
        "body_bytes": len(small_request()),
        "seconds": settings.seconds,
        "warmup_seconds": settings.warmup,
        "repeats": settings.repeats,
        "intra_op_threads": settings.threads,
        "servers": servers_json,
        "service_over": {key: value.json() for key, value in verdicts(found).items()},
        "targets": TARGETS,
        "two_workers_over_one": two_over_one(found),
        "scaling_target": TARGET_SCALING,
    }
