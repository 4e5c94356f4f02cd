"""The start-up section measures real work: each loss's first-call request is one the service
answers with 200 (a 422 would time an error path), and the report shows what did not answer.
Nothing is timed here (``python -m bench --only startup`` is the real run)."""

from __future__ import annotations

import asyncio

import orjson

from bench import startup
from bench.asgi import lifespan, one_request
from bench.in_process import service_app
from bench.layouts import layouts
from kernels import REGISTRY


def test_every_first_call_request_is_answered() -> None:
    bodies = startup.requests()
    assert set(bodies) == {spec.name for spec in REGISTRY if layouts(spec, startup.ELEMENTS)}
    assert len(bodies) >= 40

    async def statuses() -> dict[str, tuple[int, bytes]]:
        app = service_app(1)
        async with lifespan(app):
            return {loss: await one_request(app, f"/loss/{loss}", body) for loss, body in bodies.items()}

    answers = asyncio.run(statuses())
    refused = {loss: answer[:200] for loss, (status, answer) in answers.items() if status != 200}
    assert refused == {}
    assert all(orjson.loads(answer)["count"] > 0 for _, answer in answers.values())


def test_the_report_counts_the_calls_that_failed() -> None:
    starts = [startup.Start(1.0, 1.1, 200.0), startup.Start(1.2, 1.3, 210.0)]
    cold = [startup.FirstCall("mse", 80.0, 1.0, 200), startup.FirstCall("focal", 300.0, 2.0, 422)]
    text = startup.report(startup.Measured(starts, cold, []), startup.Settings(starts=2))
    assert "1/2" in text and "298 (focal)" in text
    assert "1.20 (1.10-1.30)" in text and "205 (200-210)" in text
