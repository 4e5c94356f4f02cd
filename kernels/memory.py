"""Where a worker's memory goes after a large request, and how it comes back.

onnxruntime gives each session its own CPU arena and keeps it at its peak: a worker that
ran one large request through each of 14 losses held 14 peaks (measured: 164 MB idle,
2,224 MB after ten 4M-element float64 requests with gradients, kept while idle). Here every
session shares one arena that grows by what is asked for (``kSameAsRequested``), a large
run shrinks it when it ends, and glibc is asked to give its free pages back. The same ten
requests then leave the worker at 273 MB, each peaking at about 5x its payload (inputs
plus outputs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Mapping
from typing import Any

import onnxruntime as ort

LARGE_RUN_BYTES = 16 << 20
"""Runs whose feeds (inputs and params) reach this size shrink the arena when they end: below
it, keeping the memory saves the next request its page faults."""

_SAME_AS_REQUESTED = 1
_registered = threading.Lock()
_shared: list[bool] = []


def share_arena(options: ort.SessionOptions) -> ort.SessionOptions:
    """``options`` with sessions drawing on the process's one CPU arena (registered on first use)."""
    with _registered:
        if not _shared:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            # max_mem 0: unbounded (requests are bounded by LOSSD_MAX_ELEMENTS); -1: onnxruntime's defaults.
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, _SAME_AS_REQUESTED, -1, -1))
            _shared.append(True)
    options.add_session_config_entry("session.use_env_allocators", "1")
    return options


def _shrinking() -> ort.RunOptions:
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


SHRINK = _shrinking()
"""Run options that hand the arena's free chunks back when the run ends."""


def run_options(feed: Mapping[str, Any]) -> ort.RunOptions | None:
    """``SHRINK`` for a large run, else None (onnxruntime's defaults)."""
    size = sum(getattr(value, "nbytes", 0) for value in feed.values())
    return SHRINK if size >= LARGE_RUN_BYTES else None


_libc_name = ctypes.util.find_library("c")
_malloc_trim = getattr(ctypes.CDLL(_libc_name), "malloc_trim", None) if _libc_name else None


def release() -> None:
    """Give free heap pages back to the system (glibc; a no-op elsewhere). A large body's
    arrays and copies fall below the mmap threshold in pieces and stay in the heap otherwise."""
    if _malloc_trim is not None:
        _malloc_trim(0)


RELEASE_DELAY = 0.5
"""Seconds from the first ask to the release: large requests back to back reuse the heap's
pages rather than fault them in again (on this machine's VM a fault-in costs more than
copying the body), and an idle worker still hands them back within this."""
_scheduled = threading.Lock()
"""Held while a release is scheduled."""


def release_soon() -> None:
    """``release`` once, RELEASE_DELAY seconds from now, however many threads ask meanwhile."""
    if _malloc_trim is None or not _scheduled.acquire(blocking=False):
        return

    def run() -> None:
        _scheduled.release()
        release()

    timer = threading.Timer(RELEASE_DELAY, run)
    timer.daemon = True
    timer.start()
