"""``python -m bench`` (``make bench``): the service against its floors, one table per section.

1. Small requests: requests/s of a 32x10 ``POST /loss/focal`` through the service, the
   floor (bare ASGI + orjson + numpy + one onnxruntime run) and a naive FastAPI app,
   each a uvicorn subprocess under ``wrk`` (or a built-in generator).
   Two floors: the same graph, and a minimal hand-written focal graph (bench.minimal_graph).
1b. The same apps called in process through ASGI: their own CPU cost per request.
2. Large requests: latency of a 1M-element focal as V2 binary tensors and as JSON in two
   layouts, each against its floor (bare ASGI + frombuffer + ORT; bare ASGI + simdjson + ORT).
2b. gRPC: small focal requests/s over gRPC against the HTTP V2 JSON path, and 1M-element
   raw tensors over gRPC against HTTP binary tensors, one server serving both (bench.grpc).
3. Kernels: elements/s of every registered loss in process, against numpy (the floor)
   and PyTorch eager when torch is installed.
4. Peers: requests/s of lossd's V2 JSON endpoint against KServe's ModelServer and MLServer
   serving the same exported graph. Each peer runs from a venv of its own under
   bench/.peers (or $LOSSD_BENCH_PEERS); one not installed there is skipped with the reason
   unless --peers is given, which installs it (pip, about 500 MB and a few minutes each).
5. Start-up: seconds from spawning ``lossd serve`` to ready, the idle worker's RSS, and each
   loss's first call with an empty graph cache and with cached graphs (bench.startup).

``--quick`` takes about a minute, the default run two to four. ``python -m bench.breakdown``
times the small request's steps one by one (a diagnostic that follows the service's
internals).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import orjson

from bench import grpc, in_process, kernels, large_requests, layouts, peers, readme, small_requests, startup
from bench.load import generator
from bench.machine import MALLOC_ENV, Interference, idle_check, versions
from service.cli import with_allocator

QUICK_SIZES = (1_000_000,)
FULL_SIZES = (1_000_000, 10_000_000)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about one minute: shorter runs, 1M elements only")
    sections = ["http", "asgi", "large", "grpc", "kernels", "layouts", "peers", "startup"]
    parser.add_argument("--only", choices=sections, help="run one section")
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ["LOSSD_BENCH_SECONDS"]) if "LOSSD_BENCH_SECONDS" in os.environ else None,
        help="length of each load run (env LOSSD_BENCH_SECONDS; default 5, --quick 2)",
    )
    parser.add_argument("--warmup", type=float, help="warm-up load per server in seconds (default 2, --quick 1)")
    parser.add_argument("--repeats", type=int, default=3, help="load runs per server (default 3)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent keep-alive connections (default 8)")
    parser.add_argument("--generator", choices=["auto", "wrk", "builtin"], default="auto", help="default: wrk if found")
    parser.add_argument("--server-threads", type=int, default=1, help="LOSSD_INTRA_OP_THREADS of the servers")
    parser.add_argument("--threads", type=int, default=2, help="ORT intra-op and torch threads for kernels (default 2)")
    parser.add_argument(
        "--losses", default="", help="kernels, layouts, start-up: only these comma-separated losses (e.g. focal,mse)"
    )
    parser.add_argument(
        "--fused", action="store_true", help="kernels: also torch.compile's fused single pass (focal, CE, mse)"
    )
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even when it is installed")
    parser.add_argument(
        "--peers", action="store_true", help="install the peers (KServe, MLServer) into bench/.peers when missing"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON here")
    parser.add_argument(
        "--readme", type=Path, metavar="README", help="write the sections' tables into the README's bench block"
    )
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def http_section(args: argparse.Namespace, results: dict[str, Any]) -> str:
    settings = small_requests.Settings(
        seconds=args.seconds or (2.0 if args.quick else 5.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0),
        repeats=args.repeats,
        threads=args.server_threads,
    )
    with tempfile.TemporaryDirectory(prefix="lossd-bench-load-") as tmp:
        load = generator(args.generator, args.connections, Path(tmp))
        log(f"small requests: {load.name}, servers starting")
        measured = small_requests.run(load, settings)
    results["small_requests"] = small_requests.json(measured, load, settings)
    return small_requests.report(measured, load, settings)


def asgi_section(args: argparse.Namespace, results: dict[str, Any]) -> str:
    settings = in_process.Settings(threads=args.server_threads, rounds=7, requests=300 if args.quick else 1000)
    log("small requests in process: building the apps")
    measured = in_process.run(settings)
    results["in_process"] = in_process.json(measured)
    return in_process.report(measured, settings)


def large_section(args: argparse.Namespace, results: dict[str, Any]) -> str:
    settings = large_requests.Settings(repeats=args.repeats, requests=3 if args.quick else 7, threads=args.threads)
    log("large requests: servers starting")
    measured = large_requests.run(settings)
    results["large_requests"] = large_requests.json(measured, settings)
    return large_requests.report(measured, settings)


def grpc_section(args: argparse.Namespace, results: dict[str, Any]) -> str:
    settings = grpc.Settings(
        seconds=args.seconds or (2.0 if args.quick else 5.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0),
        repeats=args.repeats,
        threads=args.server_threads,
        concurrency=args.connections,
        large_requests=3 if args.quick else 7,
    )
    with tempfile.TemporaryDirectory(prefix="lossd-bench-load-") as tmp:
        load = generator(args.generator, args.connections, Path(tmp))
        log(f"gRPC against HTTP V2: {load.name}, server starting")
        measured = grpc.run(load, settings)
    results["grpc"] = measured.json()
    return grpc.report(measured, load, settings)


def kernel_section(args: argparse.Namespace, results: dict[str, Any]) -> str:
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    settings = kernels.Settings(
        sizes=sizes,
        repeats={1_000_000: 5 if args.quick else 7, 10_000_000: 5},
        threads=args.threads,
        torch=not args.no_torch,
        losses=tuple(filter(None, args.losses.split(","))),
        fused=args.fused,
    )
    log("kernels: building every graph")
    bench = kernels.Bench(settings)
    rows, floors = bench.run(log)
    version = bench.torch.VERSION if bench.torch is not None else None
    results["kernels"] = {
        "threads": settings.threads,
        "torch": version,
        "memory_floor_seconds": {str(n): f.json() for n, f in floors.items()},
        "rows": [r.json() for r in rows],
    }
    return kernels.report(rows, floors, settings, version)


def layout_section(args: argparse.Namespace, results: dict[str, Any]) -> str:
    wanted = tuple(filter(None, args.losses.split(",")))
    settings = layouts.Settings(repeats=5 if args.quick else 7, threads=args.threads, losses=wanted)
    log("layouts: every loss at 1M elements in each layout it takes")
    rows = layouts.run(settings, log)
    results["layouts"] = {"elements": settings.elements, "threads": settings.threads, "rows": [r.json() for r in rows]}
    return layouts.report(rows, settings.elements)


def peer_section(args: argparse.Namespace, results: dict[str, Any]) -> str:
    settings = peers.Settings(
        seconds=args.seconds or (2.0 if args.quick else 5.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0),
        repeats=args.repeats,
        threads=args.server_threads,
        install=args.peers,
    )
    with tempfile.TemporaryDirectory(prefix="lossd-bench-load-") as tmp:
        load = generator(args.generator, args.connections, Path(tmp))
        log(f"peers: {load.name}, servers starting")
        measured = peers.run(load, settings)
    results["peers"] = peers.json(measured, settings)
    return peers.report(measured, load, settings)


def startup_section(args: argparse.Namespace, results: dict[str, Any]) -> str:
    settings = startup.Settings(starts=3 if args.quick else 5, losses=tuple(filter(None, args.losses.split(","))))
    measured = startup.run(settings, log)
    results["startup"] = startup.json(measured)
    return startup.report(measured, settings)


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the kernels run under the allocator setting the service runs with
        with_allocator(["-m", "bench", *sys.argv[1:]])
    args = parse(argv)
    started = time.monotonic()
    found = versions()
    busy = idle_check()
    allocator = ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in MALLOC_ENV)
    print("lossd bench: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    print(f"{os.cpu_count()} cores; {allocator}; other processes kept {busy:.2f} cores busy before the run")
    results: dict[str, Any] = {
        "versions": found,
        "cores": os.cpu_count(),
        "other_cores_before": busy,
        "argv": list(sys.argv[1:] if argv is None else argv),
        "reports": {},
    }
    sections = [
        ("http", http_section),
        ("asgi", asgi_section),
        ("large", large_section),
        ("grpc", grpc_section),
        ("kernels", kernel_section),
        ("layouts", layout_section),
        ("peers", peer_section),
        ("startup", startup_section),
    ]
    for name, section in sections:
        if args.only not in (None, name):
            continue
        interference = Interference.start()
        try:
            text = section(args, results)
            results["reports"][name] = text
        except Exception as exc:  # one broken section must not hide the others
            text = f"section {name} FAILED:\n" + "".join(traceback.format_exception(exc)[-3:])
            results[f"{name}_error"] = repr(exc)
        other = interference.other_cores()
        results[f"other_cores_during_{name}"] = other
        warning = f"  (WARNING: noisy, other processes used {other:.2f} cores)" if other > 0.1 else ""
        print(f"\n{text}\nother processes kept {other:.2f} cores busy meanwhile{warning}", flush=True)
    elapsed = time.monotonic() - started
    results["seconds"] = elapsed
    print(f"\ntotal {elapsed:.0f} s")
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
        print(f"wrote {args.json}")
    if args.readme:
        readme.write(args.readme, results)
        print(f"wrote the bench block of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
