"""A full disk and a read-only data directory (issue 18, item 9), on a real tmpfs: a 507
problem+json that records nothing, a connection that stays usable, exact totals once space
is back, and one line at start-up instead of a traceback. Needs mount(8) (root): skipped,
saying so, elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import Server, running_server

BATCH = {"predictions": [1.0, 2.0, 3.0], "targets": [0.0, 0.0, 0.0]}


def mount(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip() or 'not root'})")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "disk"
    mount(target, "size=4m")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte; the filler, to delete for space again."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 1):
            try:
                while True:
                    os.write(descriptor, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(descriptor)
    return filler


def test_a_full_disk_is_a_507_that_records_nothing(small_disk: Path) -> None:
    server: Server
    with running_server({"LOSSD_DATA_DIR": str(small_disk)}) as server, httpx.Client(base_url=server.url) as client:
        assert client.post("/monitors", json={"name": "disk", "loss": "mse"}).status_code == 201
        assert client.post("/monitors/disk/observations", json=BATCH).status_code == 200
        filler = fill(small_disk)
        large = {"predictions": [1.0] * 20000, "targets": [0.0] * 20000}
        refused = client.post("/monitors/disk/observations", json=large)
        assert refused.status_code == 507, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "disk is full" in refused.json()["detail"]
        created = client.post("/monitors", json={"name": "another", "loss": "mae", "window_seconds": 60})
        assert created.status_code in (503, 507), created.text
        assert created.headers["content-type"] == "application/problem+json"
        # The same connection goes on serving.
        assert client.get("/health").status_code == 200
        filler.unlink()
        assert client.post("/monitors/disk/observations", json=BATCH).status_code == 200
        totals = client.get("/monitors/disk").json()["totals"]
        assert totals["count"] == 2 * len(BATCH["predictions"])  # the refused batch left nothing


def test_a_read_only_data_directory_stops_start_up_with_one_line(tmp_path: Path) -> None:
    target = tmp_path / "readonly"
    mount(target, "ro,size=1m")
    try:
        env = {**os.environ, "LOSSD_DATA_DIR": str(target / "data"), "LOSSD_PORT": "0", "LOSSD_GRPC_PORT": "0"}
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", "serve"], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"lossd: cannot open the monitor database {target}/data/monitors.sqlite3: Read-only file "
        "system (set LOSSD_DATA_DIR or LOSSD_DATABASE_URL)"
    ], result.stderr
