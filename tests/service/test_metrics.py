"""GET /metrics: Prometheus text exposition, correct with several workers."""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.server import running_server

FOCAL = {"predictions": [[0.2, 0.7]], "targets": [[0, 1]]}
ROUNDS, PER_ROUND, WAIT_FOR_BOTH = 400, 16, 180.0
"""The two-worker test's load: rounds of requests, each on its own connection, 8 at a time,
until both workers have answered some (at most ROUNDS rounds, WAIT_FOR_BOTH seconds)."""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def count(text: str, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples(text).items() if n == name and labels.items() <= dict(ls).items())


def test_requests_are_counted_by_loss_protocol_and_status(client: TestClient) -> None:
    before = client.get("/metrics").text
    for _ in range(3):
        assert client.post("/loss/focal", json=FOCAL).status_code == 200
    assert client.post("/loss/focal", json={"predictions": [[2.0]], "targets": [[1]]}).status_code == 422
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    ok = {"loss": "focal", "protocol": "rest", "status": "200"}
    assert count(text, "lossd_requests_total", **ok) - count(before, "lossd_requests_total", **ok) == 3
    bad = {"loss": "focal", "protocol": "rest", "status": "422"}
    assert count(text, "lossd_requests_total", **bad) - count(before, "lossd_requests_total", **bad) == 1
    for histogram in ("lossd_request_duration_seconds", "lossd_kernel_duration_seconds"):
        assert count(text, f"{histogram}_count", loss="focal") > count(before, f"{histogram}_count", loss="focal")
    assert count(text, "lossd_request_size_bytes_count", protocol="rest") >= 4
    assert ("lossd_requests_in_flight", ()) in samples(text)


def served_by_worker(directory: Path) -> dict[int, float]:
    """mse requests answered 200, per worker process: each worker writes its counters to its
    own ``counter_<pid>.db`` in the multiprocess directory (only non-zero counts)."""
    served: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        merged = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
        total = sum(
            s.value
            for family in merged
            for s in family.samples
            if s.name == "lossd_requests_total" and s.labels.get("loss") == "mse" and s.labels.get("status") == "200"
        )
        if total:
            served[int(path.stem.removeprefix("counter_"))] = total
    return served


def parent_pid(pid: int) -> int:
    """From /proc/<pid>/stat: "pid (comm) state ppid ..." (comm may hold spaces)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def test_two_workers_report_every_request(tmp_path: Path) -> None:
    """Requests on fresh connections (each its own client, ``Connection: close``), several at
    once, until both workers have answered some (bounded rounds); then every scrape, on a
    fresh connection whichever worker takes it, reports exactly the total."""
    env = {"LOSSD_WORKERS": "2", "LOSSD_INTRA_OP_THREADS": "1", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    body = {"predictions": [[1.0]], "targets": [[0.0]]}
    with running_server(env) as server, ThreadPoolExecutor(8) as pool:

        def post(_: int) -> int:
            response = httpx.post(f"{server.url}/loss/mse", json=body, headers={"Connection": "close"})
            return response.status_code

        sent, deadline = 0, time.monotonic() + WAIT_FOR_BOTH
        for _ in range(ROUNDS):  # /health answers once one worker is up: the other may still be starting
            assert list(pool.map(post, range(PER_ROUND))) == [200] * PER_ROUND
            sent += PER_ROUND
            served = served_by_worker(tmp_path)
            if len(served) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(served) == 2, f"after {sent} requests on fresh connections, served by {served}"
        assert sum(served.values()) == sent
        assert all(parent_pid(pid) == server.pid for pid in served), "counts from processes other than the workers"
        for _ in range(6):
            text = httpx.get(f"{server.url}/metrics", headers={"Connection": "close"}).text
            assert count(text, "lossd_requests_total", loss="mse", status="200") == sent
            assert count(text, "lossd_kernel_duration_seconds_count", loss="mse") == sent
            assert count(text, "lossd_request_duration_seconds_count", loss="mse", protocol="rest") == sent
