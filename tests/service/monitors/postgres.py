"""A throwaway PostgreSQL server for tests: initdb in a temporary directory, listening on
a free port on 127.0.0.1 (its unix socket in that directory too)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.server import free_port

BINARIES = [Path("/usr/lib/postgresql/15/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]


def binaries() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    for directory in BINARIES:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def as_owner(command: list[str]) -> list[str]:
    """initdb refuses to run as root: run as the postgres user there."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def run(command: list[str]) -> None:
    subprocess.run(command, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@dataclass
class PostgresServer:
    """A running server that a test may stop and start again (same data, same port)."""

    url: str
    bin_dir: Path
    data: Path
    options: str
    log: Path

    def start(self) -> None:
        pg_ctl = str(self.bin_dir / "pg_ctl")
        run(as_owner([pg_ctl, "-D", str(self.data), "-o", self.options, "-l", str(self.log), "-w", "start"]))

    def stop(self) -> None:
        run(as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]))

    def running(self) -> bool:
        status = subprocess.run(
            as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "status"]), stdout=subprocess.DEVNULL
        )
        return status.returncode == 0


@contextmanager
def postgres_control(bin_dir: Path) -> Iterator[PostgresServer]:
    """Start a server; yield it; stop it (where still running) and remove its files."""
    directory = Path(tempfile.mkdtemp(prefix="lossd-pg-"))
    data = directory / "data"
    if os.geteuid() == 0:
        import pwd

        owner = pwd.getpwnam("postgres")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    port = free_port()
    try:
        run(as_owner([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"]))
        options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=on"
        server = PostgresServer(
            f"postgresql://postgres@127.0.0.1:{port}/postgres", bin_dir, data, options, directory / "log"
        )
        server.start()
        try:
            yield server
        finally:
            if server.running():
                server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def postgres_server(bin_dir: Path) -> Iterator[str]:
    """Start a server; yield its URL; stop it and remove its files."""
    with postgres_control(bin_dir) as server:
        yield server.url
