"""Large requests are computed off the event loop: while one is being computed, health and
small requests are answered."""

import threading
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from service import rest, routing

LARGE = 200_000  # elements per input: a JSON body above routing.OFF_LOOP_BYTES


def test_a_large_request_leaves_the_loop_free(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()
    held: list[bool] = []
    compute = rest.compute

    def slow(runtime: Any, spec: Any, body: bytes, max_elements: int) -> bytes:
        if len(body) >= routing.OFF_LOOP_BYTES:  # the large request waits until the others are answered
            started.set()
            held.append(release.wait(timeout=60))
        return compute(runtime, spec, body, max_elements)

    monkeypatch.setattr(rest, "compute", slow)
    values = np.linspace(0.0, 1.0, LARGE).round(6).tolist()
    large = {"predictions": values, "targets": values}
    assert len(orjson.dumps(large)) >= routing.OFF_LOOP_BYTES
    answers: list[int] = []
    worker = threading.Thread(target=lambda: answers.append(client.post("/loss/mse", json=large).status_code))
    worker.start()
    try:
        assert started.wait(timeout=60), "the large request never reached its computation"
        assert client.get("/health").status_code == 200
        small = client.post("/loss/mse", json={"predictions": [1.0], "targets": [0.0]})
        assert small.status_code == 200 and small.json()["loss"] == 1.0
    finally:
        release.set()
        worker.join(timeout=120)
    assert held == [True], "the large request was released by its timeout: the loop was blocked"
    assert answers == [200]


def test_concurrent_scrapes_share_one_read(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from service import metrics as service_metrics
    from service.routes import metrics

    reads, release = [], threading.Event()
    exposition = service_metrics.exposition

    def counted(*collectors: Any) -> tuple[bytes, str]:
        reads.append(1)
        release.wait(timeout=60)
        return exposition(*collectors)

    monkeypatch.setattr(metrics, "exposition", counted)
    bodies: list[bytes] = []
    scrapers = [threading.Thread(target=lambda: bodies.append(client.get("/metrics").content)) for _ in range(5)]
    for scraper in scrapers:
        scraper.start()
    for _ in range(6000):
        if reads:
            break
        threading.Event().wait(0.01)
    threading.Event().wait(3.0)  # the other four scrapes arrive while the first read is held
    release.set()
    for scraper in scrapers:
        scraper.join(timeout=60)
    assert len(bodies) == 5 and len(set(bodies)) == 1
    assert len(reads) == 1, f"{len(reads)} reads of the database for 5 concurrent scrapes"
    assert len(client.get("/metrics").content) > 0 and len(reads) == 2  # a later scrape reads afresh


def test_a_large_request_counts_its_kernel_run_in_the_statistics(client: TestClient) -> None:
    """Its kernel runs on a worker thread: the statistics still see that run."""

    def infer_ns() -> int:
        entry = client.get("/v2/models/mse/stats").json()["model_stats"][0]
        return int(entry["inference_stats"]["compute_infer"]["ns"])

    values = np.linspace(0.0, 1.0, LARGE).round(6).tolist()
    client.post("/loss/mse", json={"predictions": [1.0], "targets": [0.0]})  # a kernel run on the loop's thread
    before = infer_ns()
    assert client.post("/loss/mse", json={"predictions": values, "targets": values}).status_code == 200
    assert infer_ns() > before
