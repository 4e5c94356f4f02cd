"""The drain an orchestrator expects: on SIGTERM, readiness turns 503 at once while requests,
in flight and new, are still served for ``LOSSD_DRAIN_SECONDS``; then uvicorn's own
graceful shutdown runs. Load balancers need those seconds to stop sending traffic."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any

import anyio.to_thread

log = logging.getLogger("lossd.lifecycle")


class Drain:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False

    def install(self) -> None:
        """Take SIGTERM over from the server that runs the app (uvicorn's handler, installed
        before the app starts, is called when the drain is over). Only in a server's main
        thread: an app run by a test client in a thread of its own keeps the signal as it is."""
        if self.seconds <= 0 or threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        stop: Any = signal.getsignal(signal.SIGTERM)

        def begin(signum: int, frame: FrameType | None) -> None:
            if self.draining:  # a second SIGTERM: stop now
                stop(signum, frame)
                return
            self.draining = True
            log.info("SIGTERM: not ready; serving for %g s more, then stopping", self.seconds)
            # Signal handlers run between bytecodes of the loop's thread: wake the loop safely.
            loop.call_soon_threadsafe(loop.call_later, self.seconds, stop, signum, None)

        if callable(stop):
            signal.signal(signal.SIGTERM, begin)


async def ready(state: Any) -> bool:
    """Readiness, as ``GET /v2/health/ready`` and gRPC's ServerReady and health service
    answer it: started, not draining, a slot free under LOSSD_MAX_CONCURRENCY (a saturated
    worker answers every loss 503, so it is not ready until one frees), and the monitor
    database reachable (PostgreSQL: a probe waits on the network, at most once a second,
    see Store.reachable)."""
    if getattr(state, "runtime", None) is None or state.drain.draining or state.saturated():
        return False
    store = state.monitors
    reachable = await anyio.to_thread.run_sync(store.reachable) if store.waits_on_network else store.reachable()
    return bool(reachable)
