"""``python -m bench.soak``: load and faults against ``lossd serve`` on 127.0.0.1.

a. Capacity of one worker for a small 32x10 focal request (wrk when installed), then a soak
   at a fixed rate of 80% of it: zero errors, and the workers' resident memory may grow by
   less than 50 MB.
b. SIGTERM while a 10M-element request (V2 binary) is in flight: it is answered 200, then
   the process exits with status 0.
c. Two workers, kill -9 one under load: requests due from 1 s after the kill on are all
   answered; reports whether uvicorn started a replacement worker.

Prints a table and exits 1 when a criterion fails. Bounded: about ``--duration`` plus two
server start-ups and the restart of a worker (a few minutes on a busy machine).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bench.faults import KillResult, SigtermResult, kill_one_worker, sigterm_during_large_request
from bench.load import Generator, Target, generator
from bench.machine import MALLOC_ENV
from bench.payload import PATH, small_request
from bench.process import HOST, ServerProcess
from bench.procfs import workers_rss
from bench.rate import Summary, run_fixed_rate, summarize
from bench.table import number, render

MEMORY_GROWTH_LIMIT = 50 * 2**20
LARGE_BODY_LIMIT = str(256 * 2**20)
"""The 10M-element request is 80 MB, above the default LOSSD_MAX_BODY_BYTES: raised for this run."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="soak seconds (default 60)")
    parser.add_argument("--load", type=float, default=0.8, help="soak rate as a fraction of capacity (default 0.8)")
    parser.add_argument("--capacity-seconds", type=float, default=5.0, help="capacity measurement (default 5)")
    parser.add_argument("--kill-load", type=float, default=0.4, help="rate during the kill, fraction of capacity")
    parser.add_argument("--kill-after", type=float, default=20.0, help="seconds of load after the kill (default 20)")
    parser.add_argument("--generator", choices=["auto", "wrk", "builtin"], default="auto", help="for the capacity")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def server_env(workers: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            **MALLOC_ENV,
            "LOSSD_PROVIDER": "cpu",
            "LOSSD_WORKERS": str(workers),
            "LOSSD_INTRA_OP_THREADS": "1",
            "LOSSD_LOG_LEVEL": "info",
            "LOSSD_MAX_BODY_BYTES": LARGE_BODY_LIMIT,
        }
    )
    return env


def serve(workers: int, workdir: Path) -> ServerProcess:
    argv = [sys.executable, "-m", "service.cli", "serve"]
    return ServerProcess(f"lossd-{workers}w", argv, server_env(workers), workdir / f"server-{workers}w.log")


@dataclass(frozen=True)
class Soak:
    capacity_rps: float
    capacity_errors: int
    rate: float
    result: Summary
    rss_before: int
    rss_after: int

    @property
    def growth(self) -> int:
        return self.rss_after - self.rss_before

    @property
    def ok(self) -> bool:
        return (
            self.capacity_errors == 0
            and self.result.errors == 0
            and self.result.timeouts == 0
            and (self.growth < MEMORY_GROWTH_LIMIT)
        )


def soak(server: ServerProcess, load: Generator, args: argparse.Namespace) -> Soak:
    target = Target(HOST, server.port, PATH, small_request())
    load.run(target, 2.0)  # warm-up: first-request costs, allocator arenas
    capacity = load.run(target, args.capacity_seconds)
    rate = args.load * capacity.rps
    log(f"capacity {capacity.rps:.0f} req/s ({load.name}); soak at {rate:.0f} req/s for {args.duration:.0f} s")
    before = workers_rss(server.pid)
    outcomes = run_fixed_rate(target, rate, args.duration)
    after = workers_rss(server.pid)
    return Soak(capacity.rps, capacity.errors, rate, summarize(outcomes, args.duration), before, after)


def mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def verdict(ok: bool) -> str:
    return "ok" if ok else "FAIL"


def soak_rows(result: Soak, args: argparse.Namespace) -> list[list[str]]:
    s = result.result
    return [
        ["a. capacity, 1 worker", f"{number(result.capacity_rps)} req/s, {result.capacity_errors} errors", ""],
        [
            f"a. soak {args.duration:.0f} s at {args.load:.0%}",
            f"{s.requests} requests due at {number(result.rate)}/s, answered at {number(s.rps)}/s: "
            f"{s.errors} errors, {s.timeouts} timeouts; p50 {number(s.p50_ms)} ms, p99 {number(s.p99_ms)} ms",
            verdict(s.errors == 0 and s.timeouts == 0),
        ],
        [
            "a. worker RSS before -> after",
            f"{mb(result.rss_before)} -> {mb(result.rss_after)} ({result.growth / 2**20:+.1f} MB, limit 50)",
            verdict(result.growth < MEMORY_GROWTH_LIMIT),
        ],
    ]


def sigterm_rows(result: SigtermResult) -> list[list[str]]:
    exited = "not within 60 s" if result.exited_after_answer_s is None else f"{result.exited_after_answer_s:.2f} s"
    loss = "none" if result.loss is None or math.isnan(result.loss) else f"{result.loss:.6g}"
    return [
        [
            "b. SIGTERM during 10M elements",
            f"HTTP {result.status} (loss {loss}) {result.answered_after_signal_s:.2f} s after the signal; "
            f"exit code {result.exit_code}, {exited} after the answer",
            verdict(result.ok),
        ]
    ]


def kill_rows(result: KillResult) -> list[list[str]]:
    def cell(s: Summary) -> str:
        return f"{s.requests} requests, {s.errors} errors, {s.timeouts} timeouts, p99 {number(s.p99_ms)} ms"

    if result.restarted is None:
        restart = "no replacement worker started"
    elif result.ready_after_s is None:
        restart = f"replacement [{result.restarted}] started, not serving within the watch"
    else:
        restart = f"replacement [{result.restarted}] serving {result.ready_after_s:.1f} s after the kill"
    return [
        ["c. 2 workers, before kill", cell(result.before), ""],
        [f"c. kill -9 [{result.killed}], first 1 s", cell(result.during), "(info)"],
        ["c. after the kill", cell(result.after), verdict(result.ok)],
        ["c. uvicorn restart", restart, "(info)"],
        ["c. SIGTERM after", f"exit code {result.exit_code}", verdict(result.exit_code == 0)],
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    rows: list[list[str]] = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="lossd-soak-") as tmp:
        workdir = Path(tmp)
        load = generator(args.generator, 8, workdir)
        log("a/b: starting one worker")
        with serve(1, workdir) as server:
            server.wait_ready(PATH, small_request(), timeout=180)
            soaked = soak(server, load, args)
            rows += soak_rows(soaked, args)
            log("b: SIGTERM during a 10M-element request")
            stopped = sigterm_during_large_request(server)
            rows += sigterm_rows(stopped)
            ok = ok and soaked.ok and stopped.ok
        log("c: starting two workers")
        with serve(2, workdir) as server:
            server.wait_ready(PATH, small_request(), timeout=180)
            target = Target(HOST, server.port, PATH, small_request())
            killed = kill_one_worker(server, target, args.kill_load * soaked.capacity_rps, 3.0, args.kill_after)
            server.stop()
            assert server.process is not None
            killed = replace(killed, exit_code=server.process.returncode)
            rows += kill_rows(killed)
            ok = ok and killed.ok and killed.exit_code == 0
    print(render(["check", "result", "verdict"], rows, left=2))
    print("all criteria met" if ok else "a criterion FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
