"""The ``lossd`` command: ``lossd serve``, ``lossd export DIR`` and ``lossd prebuild``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.settings import Settings

# glibc's dynamic mmap threshold makes every multi-MB request body page-fault anew
# (4.6x slower end to end for 1M-element binary requests). Fixing it also fixes the trim
# threshold at 128 KiB: the heap's free top then went back to the system after each request
# and the next body's pages were faulted in again (an 8 MB body read in 33-60 ms instead of
# 5-6). Free memory above 32 MiB is still returned, and after a body of 8 MiB or more all of
# it (service.routing). glibc reads both at process start.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "33554432"}


def with_allocator(argv: list[str]) -> None:
    """Re-execute this interpreter with ``argv`` unless the allocator is already set as
    ``MALLOC_ENV`` says (glibc reads it at process start)."""
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()) and not os.environ.get("LOSSD_NO_REEXEC"):
        os.environ.update(MALLOC_ENV)
        os.environ["LOSSD_NO_REEXEC"] = "1"
        os.execv(sys.executable, [sys.executable, *argv])


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's configuration for ``lossd serve``: the bench's floors run with exactly
    these (``bench.launch``), so a floor never gains from a setting the service lacks."""
    return {
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        "loop": "uvloop",
        "http": "service.protocol:LimitedHttpToolsProtocol",
        "timeout_graceful_shutdown": 30,
    }


def serve(args: argparse.Namespace) -> None:
    overrides = {"host": args.host, "port": args.port, "workers": args.workers, "provider": args.provider}
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"LOSSD_{name.upper()}"] = str(value)
    with_allocator(["-m", "service.cli", "serve"])

    import tempfile

    import uvicorn

    # Each worker records its metrics in files here; /metrics merges them. Set before the
    # app, and so prometheus_client, is first imported (checked_settings imports it).
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="lossd-metrics-"))
    settings = checked_settings()
    check_database(settings)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it with the handler it
    # found installed: make that one a no-op, so a requested stop exits with status 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run("service.app:create_app", **server_options(settings))


def checked_settings() -> Settings:
    """The settings, with configured feature models loaded once to check them: a bad
    configuration stops here with one clear line (exit status 1), not a traceback."""
    from pydantic import ValidationError

    from kernels.features import FeatureModelError
    from service.app import configured_resources
    from service.composite import register_configured
    from service.settings import Settings

    try:
        settings = Settings()
        configured_resources(settings)
        register_configured(settings.composites)  # also for `export`: their graphs are written too
    except ValidationError as exc:
        problems = "; ".join(f"LOSSD_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        sys.exit(f"lossd: invalid configuration: {problems}")
    except (FeatureModelError, ValueError) as exc:
        sys.exit(f"lossd: invalid configuration: {exc}")
    return settings


def check_database(settings: Settings) -> None:
    """A SQLite monitor database that cannot be opened or written (a read-only or missing
    directory) stops start-up with one line. PostgreSQL is not required at start: readiness
    answers 503 until it can be reached."""
    import sqlite3

    from service.monitors.store import open_store

    url = settings.database_url
    if url is not None and not url.startswith("sqlite:///"):
        return
    where = url or str(settings.data_dir / "monitors.sqlite3")
    try:
        open_store(url, settings.data_dir).close()
    except (sqlite3.Error, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        sys.exit(
            f"lossd: cannot open the monitor database {where}: {reason} (set LOSSD_DATA_DIR or LOSSD_DATABASE_URL)"
        )


def export(args: argparse.Namespace) -> None:
    from kernels import REGISTRY
    from kernels.runtime import export as export_graphs
    from service.app import configured_resources

    settings = checked_settings()
    manifest = export_graphs(REGISTRY, Path(args.directory), configured_resources(settings))
    print(f"wrote {manifest}")


def prebuild(args: argparse.Namespace) -> None:
    from kernels import REGISTRY
    from kernels.cache import GraphCache
    from kernels.runtime import prebuild as prebuild_graphs

    settings = checked_settings()
    if settings.graph_cache is None:
        sys.exit("lossd prebuild: LOSSD_GRAPH_CACHE is empty; set it to the directory to fill")
    cache = GraphCache(settings.graph_cache)
    try:
        built = prebuild_graphs(REGISTRY, cache)
    except OSError as exc:
        sys.exit(f"lossd prebuild: {exc}")
    print(f"built {built} graphs into {cache.directory}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lossd", description="Loss functions as a service.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve the HTTP API (settings from LOSSD_* too)")
    serve_parser.add_argument("--host", help="bind address (LOSSD_HOST, default 127.0.0.1)")
    serve_parser.add_argument("--port", type=int, help="port (LOSSD_PORT, default 8000)")
    serve_parser.add_argument("--workers", type=int, help="worker processes (LOSSD_WORKERS, default 1)")
    serve_parser.add_argument("--provider", choices=["auto", "cpu", "cuda"], help="LOSSD_PROVIDER, default auto")
    serve_parser.set_defaults(run=serve)
    export_parser = commands.add_parser(
        "export", help="write every graph as .onnx plus a manifest (perceptual: per LOSSD_FEATURE_MODELS entry)"
    )
    export_parser.add_argument("directory", help="target directory (a model repository: LOSSD_MODEL_REPOSITORY)")
    export_parser.set_defaults(run=export)
    prebuild_parser = commands.add_parser(
        "prebuild", help="build every graph into LOSSD_GRAPH_CACHE now, so no request waits for one"
    )
    prebuild_parser.set_defaults(run=prebuild)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
