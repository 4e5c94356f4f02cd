"""What the run ran on, and how much of the machine other processes took meanwhile."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from service.cli import MALLOC_ENV as SERVICE_MALLOC_ENV

MALLOC_ENV: dict[str, str] = dict(SERVICE_MALLOC_ENV)
"""What ``lossd serve`` and ``make`` set: glibc's mmap and trim thresholds, read at process start."""
PACKAGES = ("numpy", "onnxruntime", "fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httptools", "orjson")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in (*PACKAGES, "torch"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def busy_seconds() -> float:
    """CPU-seconds all cores have spent not idle since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU-seconds of this process and its waited-for children (servers, wrk)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class Interference:
    """CPU that processes other than this run's took while it ran: the noise floor."""

    start_busy: float = 0.0
    start_own: float = 0.0
    start_wall: float = 0.0

    @classmethod
    def start(cls) -> Interference:
        return cls(busy_seconds(), own_seconds(), time.monotonic())

    def other_cores(self, also_ours: float = 0.0) -> float:
        """Average number of cores other processes kept busy since ``start``;
        ``also_ours``: CPU-seconds of our processes not yet waited for (a running server)."""
        wall = time.monotonic() - self.start_wall
        other = (busy_seconds() - self.start_busy) - (own_seconds() - self.start_own) - also_ours
        return max(other, 0.0) / wall if wall > 0 else 0.0


def idle_check(seconds: float = 1.0) -> float:
    """Cores other processes keep busy right now, sampled over ``seconds``."""
    probe = Interference.start()
    time.sleep(seconds)
    return probe.other_cores()
