"""Serve a benchmark app exactly as ``lossd serve`` serves the service.

``python -m bench.launch bench.servers:floor_app``: the same allocator setting (the
process re-executes itself as ``lossd serve`` does) and the same uvicorn configuration
(``service.cli.server_options``: access log, loop, HTTP parser, workers, log level),
from the same ``LOSSD_*`` environment.
"""

from __future__ import annotations

import sys

import uvicorn

from service.cli import checked_settings, server_options, with_allocator


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m bench.launch MODULE:FACTORY")
    with_allocator(["-m", "bench.launch", *argv])
    uvicorn.run(argv[0], **server_options(checked_settings()))


if __name__ == "__main__":
    main(sys.argv[1:])
