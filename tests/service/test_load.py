"""Under load: a saturated worker is not ready, a request whose client left before its turn is
not computed, health and scrapes answer during a burst of large requests, and an error's
answer stays small whatever the request. Large requests are held in their computation
(rest.compute patched) so that the state under test lasts as long as the test needs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import anyio
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from service import rest, routing
from service.errors import LISTED

LARGE = 200_000  # elements per input: a JSON body above routing.OFF_LOOP_BYTES
SMALL = {"predictions": [1.0], "targets": [0.0]}


class Held:
    """rest.compute, held for every large body until ``release``; counts what it computed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self.computed = 0
        compute = rest.compute

        def held(runtime: Any, spec: Any, body: bytes, max_elements: int) -> bytes:
            if len(body) >= routing.OFF_LOOP_BYTES:
                self.computed += 1
                self.started.release()
                self.release.wait(timeout=120)
            return compute(runtime, spec, body, max_elements)

        monkeypatch.setattr(rest, "compute", held)

    def wait_started(self, count: int) -> None:
        for _ in range(count):
            assert self.started.acquire(timeout=120), "a large request never reached its computation"


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[Held]:
    holder = Held(monkeypatch)
    yield holder
    holder.release.set()


def large_body() -> bytes:
    values = np.linspace(0.0, 1.0, LARGE).round(6).tolist()
    body = orjson.dumps({"predictions": values, "targets": values})
    assert len(body) >= routing.OFF_LOOP_BYTES
    return body


def post_in_background(client: TestClient, body: bytes, count: int) -> tuple[list[threading.Thread], list[int]]:
    statuses: list[int] = []

    def post() -> None:
        statuses.append(
            client.post("/loss/mse", content=body, headers={"Content-Type": "application/json"}).status_code
        )

    threads = [threading.Thread(target=post) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, statuses


def test_a_saturated_worker_is_not_ready_and_refuses_with_retry_after(
    client: TestClient, held: Held, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client.app, "max_concurrency", 1)
    threads, statuses = post_in_background(client, large_body(), 1)
    held.wait_started(1)  # its body is complete and it holds the one slot
    rest_answer = client.post("/loss/mse", json=SMALL)
    assert rest_answer.status_code == 503 and rest_answer.headers["retry-after"] == "1"
    assert "LOSSD_MAX_CONCURRENCY" in rest_answer.json()["detail"]
    v2_answer = client.get("/v2/models/mse")
    assert v2_answer.status_code == 503 and "LOSSD_MAX_CONCURRENCY" in v2_answer.json()["error"]
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/health").status_code == 200
    held.release.set()
    for thread in threads:
        thread.join(timeout=120)
    assert statuses == [200]
    assert client.get("/v2/health/ready").status_code == 200
    assert client.post("/loss/mse", json=SMALL).status_code == 200


def test_health_and_scrapes_answer_while_a_burst_is_computed(client: TestClient, held: Held) -> None:
    threads, statuses = post_in_background(client, large_body(), 6)
    held.wait_started(1)
    assert client.get("/health").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert statuses == [], "the burst was answered before the probes: nothing was tested"
    held.release.set()
    for thread in threads:
        thread.join(timeout=300)
    assert statuses == [200] * 6


def test_a_request_whose_client_left_before_its_turn_is_not_computed(client: TestClient, held: Held) -> None:
    """Every compute thread is taken; the request's client disconnects after its body: it is
    dropped without its kernel running, and nothing is sent."""
    app: Any = client.app
    threads = app.state.compute_threads
    body = large_body()
    sent: list[Any] = []

    async def abandoned() -> None:
        owners = [object() for _ in range(int(threads.total_tokens))]
        for owner in owners:
            await threads.acquire_on_behalf_of(owner)
        messages = [{"type": "http.request", "body": body, "more_body": False}, {"type": "http.disconnect"}]

        async def receive() -> Any:
            if messages:
                return messages.pop(0)
            await anyio.sleep_forever()

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/loss/mse",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
        try:
            with anyio.fail_after(60):  # only a guard: before the fix it waits for a thread forever
                await app(scope, receive, send)
        finally:
            for owner in owners:
                threads.release_on_behalf_of(owner)

    assert client.portal is not None
    client.portal.call(abandoned)
    assert held.computed == 0 and sent == []
    assert client.post("/loss/mse", json=SMALL).status_code == 200


UNKNOWN = 100_000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/loss/mse", {**SMALL, "params": {f"p{i}": 0 for i in range(UNKNOWN)}}),
        ("/loss/mse", {**SMALL, **{f"p{i}": 0 for i in range(UNKNOWN)}}),
    ],
    ids=["params", "top-level"],
)
def test_many_unknown_names_give_a_small_error_that_counts_them(
    client: TestClient, path: str, body: dict[str, Any]
) -> None:
    answer = client.post(path, json=body)
    problem = answer.json()
    assert answer.status_code == 422
    assert len(problem["errors"]) == LISTED and problem["error_count"] == UNKNOWN
    assert problem["errors"][0]["message"] == "Extra inputs are not permitted"
    assert len(answer.content) < 4096


def test_many_unknown_v2_parameters_give_a_small_error_that_counts_them(client: TestClient) -> None:
    tensors = [{"name": name, "shape": [1], "datatype": "FP32", "data": [1.0]} for name in ("predictions", "targets")]
    answer = client.post(
        "/v2/models/mse/infer", json={"inputs": tensors, "parameters": {f"p{i}": 0 for i in range(UNKNOWN)}}
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == (
        f"parameter p0: Extra inputs are not permitted (and {UNKNOWN - 1} more unknown parameters)"
    )
