"""Durability and concurrency against real servers: kill -9 during ingestion, restart on the
same database, nothing acknowledged is missing and the rollups (totals, segments, windows)
agree to the batch; two workers writing one monitor's windows at once count exactly. For
SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.server import Server, running_server
from tests.service.test_metrics import count

pytestmark = pytest.mark.server

BATCH = 50
OBSERVATION = {
    "predictions": [[float(k)] for k in range(BATCH)],  # mse per sample: k*k, exact in float32
    "targets": [[0.0]] * BATCH,
    "timestamp": "2026-11-22T08:00:00Z",
}
BATCH_SUM = float(sum(k * k for k in range(BATCH)))
WRITERS = 2
START_TIMEOUT = 300.0  # the app builds its ONNX sessions first: slow on a loaded machine


def server_env(database_url: str) -> dict[str, str]:
    return {"LOSSD_DATABASE_URL": database_url, "LOSSD_WORKERS": "2", "LOSSD_INTRA_OP_THREADS": "1"}


def post_batches(url: str, acked: list[int], slot: int, limit: int) -> None:
    """Post batches until ``limit`` or until the server is gone; count the 200s. Writer
    ``slot`` tags its batches ``writer: w<slot>``: a segment of its own."""
    body = {**OBSERVATION, "tags": {"writer": f"w{slot}"}}
    with httpx.Client(timeout=60.0) as http:
        for _ in range(limit):
            try:
                response = http.post(f"{url}/monitors/durable/observations", json=body)
            except httpx.TransportError:
                return
            assert response.status_code == 200, response.text
            acked[slot] += 1


def kill_during_ingestion(server: Server, kill_after: int) -> list[int]:
    """Writers post concurrently; the server and its workers get SIGKILL once ``kill_after``
    batches are acknowledged. Returns how many were, per writer."""
    acked = [0] * WRITERS
    writers = [threading.Thread(target=post_batches, args=(server.url, acked, i, 100_000)) for i in range(WRITERS)]
    for writer in writers:
        writer.start()
    for _ in range(6000):  # at most ~10 minutes of polling
        if sum(acked) >= kill_after or not any(w.is_alive() for w in writers):
            break
        time.sleep(0.1)
    os.killpg(server.pid, signal.SIGKILL)
    for writer in writers:
        writer.join(timeout=120)
    assert not any(w.is_alive() for w in writers)
    return acked


def totals(url: str) -> dict[str, float]:
    response = httpx.get(f"{url}/monitors/durable", timeout=60.0)
    assert response.status_code == 200, response.text
    result: dict[str, float] = response.json()["totals"]
    return result


def segment_counts(url: str) -> dict[str, int]:
    """Samples per writer's segment, from the segments' rollups."""
    response = httpx.get(f"{url}/monitors/durable/segments", timeout=60.0)
    assert response.status_code == 200, response.text
    return {s["tags"]["writer"]: s["count"] for s in response.json()["segments"]}


def window_counts(url: str, writer: str) -> tuple[int, float]:
    """Samples and their loss sum in one writer's windows, from the windows' rollups."""
    response = httpx.get(f"{url}/monitors/durable/windows", params={"tags": f"writer:{writer}"}, timeout=60.0)
    assert response.status_code == 200, response.text
    windows = response.json()["windows"]
    return sum(w["count"] for w in windows), sum(w["count"] * w["mean"] for w in windows)


def check_rollups_agree(url: str, per_writer: list[int]) -> int:
    """Each writer's segment holds exactly its batches (``per_writer``, or one more that was
    committed as the server died): totals, segments and windows agree. Returns the batches."""
    segments = segment_counts(url)
    assert sorted(segments) == [f"w{slot}" for slot in range(len(per_writer))]
    for slot, acked in enumerate(per_writer):
        count = segments[f"w{slot}"]
        assert count % BATCH == 0 and acked * BATCH <= count <= (acked + 1) * BATCH
        samples, loss_sum = window_counts(url, f"w{slot}")
        assert samples == count and loss_sum == pytest.approx(count // BATCH * BATCH_SUM, rel=1e-9)
    recorded = totals(url)
    assert recorded["count"] == sum(segments.values())
    assert recorded["mean"] == pytest.approx(BATCH_SUM / BATCH, rel=1e-12)
    return sum(segments.values()) // BATCH


def check_durability_and_concurrency(database_url: str) -> None:
    with running_server(server_env(database_url), timeout=START_TIMEOUT) as server:
        monitor = {"name": "durable", "loss": "mse", "segments": ["writer"]}
        created = httpx.post(f"{server.url}/monitors", json=monitor, timeout=60.0)
        assert created.status_code == 201, created.text
        per_writer = kill_during_ingestion(server, kill_after=40)
    assert sum(per_writer) >= 40
    with running_server(server_env(database_url), timeout=START_TIMEOUT) as server:
        # Every acknowledged batch is there; a batch committed as the server died may be too.
        batches = check_rollups_agree(server.url, per_writer)

        # Both workers write the same monitor at once: nothing lost, nothing counted twice.
        counts = [0] * 4
        writers = [threading.Thread(target=post_batches, args=(server.url, counts, i, 15)) for i in range(4)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(timeout=300)
        assert counts == [15] * 4
        segments = segment_counts(server.url)
        after = totals(server.url)
        assert after["count"] == (batches + 60) * BATCH
        assert after["mean"] == pytest.approx(BATCH_SUM / BATCH, rel=1e-12)
        for slot in range(WRITERS):  # writers 0 and 1 wrote 15 more each into their segments
            samples, _ = window_counts(server.url, f"w{slot}")
            assert samples == segments[f"w{slot}"]
        assert segments["w2"] == segments["w3"] == 15 * BATCH
        for _ in range(4):  # whichever worker answers the scrape reads the same database
            text = httpx.get(f"{server.url}/metrics", timeout=60.0).text
            labels = {"monitor": "durable", "loss": "mse"}
            series = [count(text, "lossd_monitor_observations_total", **labels, writer=f"w{w}") for w in range(4)]
            assert sum(series) == (batches + 60) * BATCH and series[2] == 15 * BATCH
            sums = [count(text, "lossd_monitor_loss_sum_total", **labels, writer=f"w{w}") for w in range(4)]
            assert sum(sums) == pytest.approx((batches + 60) * BATCH_SUM, rel=1e-12)


def test_sqlite_keeps_every_acknowledged_observation(tmp_path: Path) -> None:
    check_durability_and_concurrency(f"sqlite:///{tmp_path / 'monitors.db'}")


def test_postgresql_keeps_every_acknowledged_observation(postgres_url: str) -> None:
    check_durability_and_concurrency(postgres_url)
