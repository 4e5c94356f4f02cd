"""A server's processes as /proc shows them: its uvicorn workers and their resident memory."""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` that are still there."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited while we looked
            continue
        # The command name is in parentheses and may hold spaces: the fields follow the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def command_line(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def workers(pid: int) -> list[int]:
    """The processes that serve requests: uvicorn's spawned workers when it runs several, else
    ``pid`` itself (one worker runs in the main process)."""
    spawned = [child for child in children(pid) if "spawn_main" in command_line(child)]
    return spawned or [pid]


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (VmRSS), 0 when it has gone."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def workers_rss(pid: int) -> int:
    """Resident memory of all of a server's workers together."""
    return sum(rss_bytes(worker) for worker in workers(pid))
