"""Serve a benchmark app with the uvicorn configuration ``lossd serve`` uses.

``python -m bench.launch bench.servers:floor_app`` (host, port and log level from the
``LOSSD_*`` environment, as for the service).
"""

from __future__ import annotations

import sys

import uvicorn

from service.settings import Settings


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m bench.launch MODULE:FACTORY")
    settings = Settings()
    uvicorn.run(
        argv[0],
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=1,
        log_level=settings.log_level,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
