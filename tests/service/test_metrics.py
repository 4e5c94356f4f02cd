"""GET /metrics: Prometheus text exposition, correct with several workers."""

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.server import running_server

FOCAL = {"predictions": [[0.2, 0.7]], "targets": [[0, 1]]}


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


def test_two_workers_report_every_request() -> None:
    with running_server({"LOSSD_WORKERS": "2", "LOSSD_INTRA_OP_THREADS": "1"}) as server, httpx.Client() as http:
        pids = set()
        for _ in range(30):
            response = http.post(f"{server.url}/loss/mse", json={"predictions": [[1.0]], "targets": [[0.0]]})
            assert response.status_code == 200
        for _ in range(6):  # whichever worker answers the scrape sees the total
            text = http.get(f"{server.url}/metrics").text
            assert count(text, "lossd_requests_total", loss="mse", status="200") == 30
            assert count(text, "lossd_kernel_duration_seconds_count", loss="mse") == 30
            pids.add(http.get(f"{server.url}/health").headers.get("x-worker", ""))
