"""A bounded load through the load balancer: a few clients, a fixed number of requests
each, compute requests and monitor observations mixed; each request recorded with its
times and outcome. Each observation lands in a 1-second window of its own (its own
``timestamp``), so the monitor's windows say which observations the database holds."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

MONITOR = "replicas"
EPOCH = 1_700_000_000
"""Observation n is placed at EPOCH + n (a window of its own: the monitor's windows are 1 s)."""
SAMPLES = 2
"""Samples per observation request."""
COMPUTE = {"predictions": [[0.5, 1.0], [2.0, -1.0]], "targets": [[0.0, 1.0], [1.0, 0.0]]}


@dataclass
class Outcome:
    kind: str
    """"compute" or "observe"."""
    sequence: int
    """Observation requests: n (the window at EPOCH + n); compute requests: -1."""
    started: float
    ended: float
    status: int | None
    """The HTTP status; None where no response came (a transport error)."""
    error: str = ""
    """The transport error's type, where there was one."""

    @property
    def ok(self) -> bool:
        return self.status == 200


class Load:
    """Runs ``clients`` clients sending ``per_client`` requests each (every ``observe_every``
    one an observation), paced by ``pause`` seconds; calls ``at`` once ``trigger``
    requests have finished (from that client's thread: the others keep sending)."""

    observations = itertools.count()  # one sequence for every Load: windows never repeat

    def __init__(self, url: str, clients: int, per_client: int, observe_every: int, pause: float) -> None:
        self.url, self.clients, self.per_client = url, clients, per_client
        self.observe_every, self.pause = observe_every, pause
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()

    def run(self, trigger: int, at: Callable[[], None]) -> list[Outcome]:
        fired = threading.Event()

        def client(index: int) -> None:
            with httpx.Client(base_url=self.url, timeout=30.0) as http:
                for n in range(self.per_client):
                    outcome = self.send(http, (n + index) % self.observe_every == 0)
                    with self.lock:
                        self.outcomes.append(outcome)
                        due = len(self.outcomes) >= trigger and not fired.is_set()
                        if due:
                            fired.set()
                    if due:
                        at()
                    time.sleep(self.pause)

        with ThreadPoolExecutor(self.clients) as pool:
            for future in [pool.submit(client, i) for i in range(self.clients)]:
                future.result()
        assert fired.is_set(), f"the trigger ({trigger}) is beyond the load ({len(self.outcomes)})"
        return self.outcomes

    def send(self, http: httpx.Client, observe: bool) -> Outcome:
        sequence = next(self.observations) if observe else -1
        started = time.monotonic()
        try:
            if observe:
                body = {"predictions": [[1.0], [3.0]], "targets": [[0.0], [0.0]], "timestamp": EPOCH + sequence}
                response = http.post(f"/monitors/{MONITOR}/observations", json=body)
                assert response.status_code != 200 or response.json()["accepted"] == SAMPLES, response.text
            else:
                response = http.post("/loss/mse", json=COMPUTE)
        except httpx.TransportError as exc:
            return Outcome(
                "observe" if observe else "compute", sequence, started, time.monotonic(), None, type(exc).__name__
            )
        return Outcome("observe" if observe else "compute", sequence, started, time.monotonic(), response.status_code)


def failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if not o.ok]


def answered(outcomes: list[Outcome], kind: str) -> int:
    return sum(o.ok and o.kind == kind for o in outcomes)
