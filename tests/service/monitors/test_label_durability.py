"""kill -9 during the label join, on SQLite and PostgreSQL, against real servers: every
acknowledged labels batch is recorded, none partly (a batch's join, records and deletion are
one transaction), and sending every batch again records exactly the ones that were not:
each id counted once, the totals exact."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.server import Server, running_server
from tests.service.monitors.test_durability import START_TIMEOUT, server_env
from tests.service.monitors.test_store import fresh_postgres

pytestmark = pytest.mark.server

BATCH = 50
BATCHES = 80  # label batches, split between the writers
WRITERS = 2
MONITOR = "late"
T0 = 1_795_824_000  # 2026-11-28T00:00:00Z, a window start


def ids_of(batch: int) -> list[str]:
    return [f"b{batch}-{k}" for k in range(BATCH)]


def predictions_of(batch: int) -> dict[str, object]:
    """mse per sample with targets 0: k*k, exact in float32; batches over four hourly windows,
    one segment per writer."""
    return {
        "ids": ids_of(batch),
        "predictions": [[float(k)] for k in range(BATCH)],
        "timestamp": T0 + (batch % 4) * 3600,
        "tags": {"writer": f"w{batch % WRITERS}"},
    }


def labels_of(batch: int) -> dict[str, object]:
    return {"ids": ids_of(batch), "targets": [[0.0]] * BATCH}


BATCH_SUM = float(sum(k * k for k in range(BATCH)))


def post_labels(url: str, slot: int, acked: list[int]) -> None:
    """Writer ``slot`` labels its batches in order until the server is gone; counts the 200s."""
    with httpx.Client(timeout=60.0) as http:
        for batch in range(slot, BATCHES, WRITERS):
            try:
                response = http.post(f"{url}/monitors/{MONITOR}/labels", json=labels_of(batch))
            except httpx.TransportError:
                return
            assert response.status_code == 200, response.text
            assert response.json()["matched"] == BATCH
            acked[slot] += 1


def kill_during_labels(server: Server, kill_after: int) -> list[int]:
    acked = [0] * WRITERS
    writers = [threading.Thread(target=post_labels, args=(server.url, i, acked)) for i in range(WRITERS)]
    for writer in writers:
        writer.start()
    for _ in range(6000):  # at most ~10 minutes of polling
        if sum(acked) >= kill_after or not any(w.is_alive() for w in writers):
            break
        time.sleep(0.05)
    os.killpg(server.pid, signal.SIGKILL)
    for writer in writers:
        writer.join(timeout=120)
    assert not any(w.is_alive() for w in writers)
    return acked


def recorded(url: str) -> tuple[int, dict[str, int], int]:
    """The totals' count, the count per writer's segment, and the windows' counts summed."""
    totals = httpx.get(f"{url}/monitors/{MONITOR}", timeout=60.0).json()["totals"]
    segments = httpx.get(f"{url}/monitors/{MONITOR}/segments", timeout=60.0).json()["segments"]
    windows = httpx.get(f"{url}/monitors/{MONITOR}/windows", timeout=60.0).json()["windows"]
    if totals["count"]:
        assert totals["mean"] == pytest.approx(BATCH_SUM / BATCH, rel=1e-12)
    per_writer = {s["tags"]["writer"]: s["count"] for s in segments}
    return totals["count"], per_writer, sum(w["count"] for w in windows)


def concurrent_repeats(url: str) -> int:
    """Four writers post one batch of new predictions at once; the ids they had stored."""
    accepted: list[int] = []

    def repeat() -> None:
        with httpx.Client(timeout=60.0) as http:
            answer = http.post(f"{url}/monitors/{MONITOR}/predictions", json=predictions_of(BATCHES)).json()
            assert answer["accepted"] + answer["duplicates"] == BATCH, answer
            accepted.append(answer["accepted"])

    writers = [threading.Thread(target=repeat) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert len(accepted) == 4
    return sum(accepted)


def check_label_join_survives_kill(database_url: str) -> None:
    env = server_env(database_url)
    with running_server(env, timeout=START_TIMEOUT) as server:
        monitor = {"name": MONITOR, "loss": "mse", "window_seconds": 3600, "segments": ["writer"]}
        assert httpx.post(f"{server.url}/monitors", json=monitor, timeout=60.0).status_code == 201
        for batch in range(BATCHES):
            response = httpx.post(
                f"{server.url}/monitors/{MONITOR}/predictions", json=predictions_of(batch), timeout=60
            )
            assert response.json() == {"accepted": BATCH, "duplicates": 0}, response.text
        acked = kill_during_labels(server, kill_after=16)
    assert 16 <= sum(acked) < BATCHES  # killed while labels were still being joined
    with running_server(env, timeout=START_TIMEOUT) as server:
        count, per_writer, in_windows = recorded(server.url)
        for slot, done in enumerate(acked):  # each writer's acknowledged batches, maybe one more committed as it died
            assert done * BATCH <= per_writer.get(f"w{slot}", 0) <= (done + 1) * BATCH
        assert count % BATCH == 0 and count == sum(per_writer.values()) == in_windows
        # Every batch again: the recorded ones match nothing (their predictions went with
        # their records), the others match wholly. Never a part of a batch.
        with httpx.Client(timeout=60.0) as http:
            rematched = 0
            for batch in range(BATCHES):
                answer = http.post(f"{server.url}/monitors/{MONITOR}/labels", json=labels_of(batch)).json()
                assert (answer["matched"], answer["unmatched"]) in ((BATCH, 0), (0, BATCH)), answer
                rematched += answer["matched"]
        assert rematched == BATCHES * BATCH - count
        final, per_writer, in_windows = recorded(server.url)
        assert final == in_windows == BATCHES * BATCH
        # The same predictions from four writers at once, through both workers: stored once.
        accepted = concurrent_repeats(server.url)
        assert accepted == BATCH
        answer = httpx.post(f"{server.url}/monitors/{MONITOR}/labels", json=labels_of(BATCHES), timeout=60).json()
        assert answer["matched"] == BATCH and answer["unmatched"] == 0
        assert per_writer == {f"w{slot}": BATCHES // WRITERS * BATCH for slot in range(WRITERS)}
        windows = httpx.get(f"{server.url}/monitors/{MONITOR}/windows", timeout=60.0).json()["windows"]
        assert [w["count"] for w in windows] == [BATCHES // 4 * BATCH + BATCH] + [BATCHES // 4 * BATCH] * 3
        total = sum(w["count"] * w["mean"] for w in windows)
        assert total == pytest.approx((BATCHES + 1) * BATCH_SUM, rel=1e-12)


def test_sqlite_label_join_survives_kill_9(tmp_path: Path) -> None:
    check_label_join_survives_kill(f"sqlite:///{tmp_path / 'monitors.db'}")


def test_postgresql_label_join_survives_kill_9(postgres_url: str) -> None:
    check_label_join_survives_kill(fresh_postgres(postgres_url))
