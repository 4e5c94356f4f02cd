"""``python -m bench.breakdown``: where a small request's time goes, step by step, in process.

The focal 32x10 request of ``bench`` through the floor's steps and through the service's
(``service.rest.compute`` and the helpers it calls), each step timed alone on warm
inputs, best of several rounds. A diagnostic for the numbers ``python -m bench`` prints;
it calls the service's internals directly, so mypy checks it against them.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from time import perf_counter
from typing import Any

import numpy as np
import orjson
import uvloop

from bench.asgi import ASGIApp, lifespan, seconds_per_request
from bench.in_process import service_app
from bench.payload import PATH, small_request
from bench.servers import FocalKernel, floor_app, response_body
from bench.table import number, render

Step = Callable[[], object]
MAX_ELEMENTS = 50_000_000
"""LOSSD_MAX_ELEMENTS's default."""


def best_seconds(step: Step, rounds: int, calls: int) -> float:
    step()
    best = float("inf")
    for _ in range(rounds):
        start = perf_counter()
        for _ in range(calls):
            step()
        best = min(best, (perf_counter() - start) / calls)
    return best


class AsgiStep:
    """Requests to an app, timed inside the event loop (no per-call loop entry)."""

    def __init__(self, app: ASGIApp, loop: uvloop.Loop) -> None:
        self.app, self.loop = app, loop

    def best_seconds(self, rounds: int, calls: int) -> float:
        body = small_request()
        return min(
            self.loop.run_until_complete(seconds_per_request(self.app, PATH, body, calls)) for _ in range(rounds)
        )


def service_steps(threads: int) -> list[tuple[str, Step | None]]:
    """The service's compute path for the focal request, piece by piece."""
    from kernels import REGISTRY
    from kernels.feeds import to_graph
    from kernels.runtime import Runtime
    from service import arrays, metrics, rest
    from service.compute import Computation, evaluate

    def check_range(*args: Any) -> bool:
        arrays.check_range(*args)
        return True

    body = small_request()
    spec = REGISTRY.get("focal")
    assert spec is not None
    runtime = Runtime(REGISTRY, "cpu", threads)
    numeric = rest.numeric_fields(spec)
    # What the service's own parse gives: its numeric fields already float64 ndarrays.
    data = rest.parse_json(body, numeric, MAX_ELEMENTS)
    request: Any = rest.validate_envelope(spec, data)
    params = request.params
    values = {i.name: getattr(request, i.name) for i in spec.inputs}
    batch = arrays.decode_inputs(spec, params, values, np.float32, MAX_ELEMENTS)
    weights = arrays.decode_weights(None, batch.count, np.float32, True)
    kernel = runtime.kernel(spec, params, "float32", False)
    names = kernel.outputs
    laid_out = to_graph(kernel.layouts, batch.arrays)
    loss = runtime.run(kernel, params, laid_out, weights, True, names)[0]
    feed = dict(laid_out)
    for name in kernel.param_names:
        feed[name] = np.asarray(getattr(params, name), dtype=np.float32)
    feed.update(weights=weights, mean=np.array(True))
    lists = orjson.loads(body)
    predictions = np.asarray(lists["predictions"], np.float32)
    inputs = list(values.items())
    checked = list(batch.arrays.values())
    response = {"loss": loss[()], "reduction": "mean", "count": batch.count, "dtype": "float32"}
    recorded = metrics.RouteMetrics("focal", "rest")
    computation = Computation(params, values, None, "mean", "float32", False)

    return [
        ("rest.compute() total", lambda: rest.compute(runtime, spec, body, MAX_ELEMENTS)),
        ("  parse_json (simdjson, arrays into buffers)", lambda: rest.parse_json(body, numeric, MAX_ELEMENTS)),
        ("  envelope: pydantic model_validate", lambda: rest.validate_envelope(spec, data)),
        ("  compute.evaluate total", lambda: evaluate(runtime, spec, computation, MAX_ELEMENTS)),
        ("    decode_inputs total", lambda: arrays.decode_inputs(spec, params, values, np.float32, MAX_ELEMENTS)),
        ("      to_array x2 (float64 -> float32)", lambda: [arrays.to_array(k, v, np.float32) for k, v in inputs]),
        ("      bind_shapes", lambda: arrays.bind_shapes(spec.inputs, batch.arrays)),
        (
            "      range checks x2 (check_range)",
            lambda: [check_range("x", a, 0.0, 1.0, "x") for a in checked],
        ),
        ("    check_params", lambda: arrays.check_params(params, np.float32)),
        ("    decode_weights (np.ones)", lambda: arrays.decode_weights(None, 32, np.float32, True)),
        ("    runtime.kernel (GraphKey lookup)", lambda: runtime.kernel(spec, params, "float32", False)),
        ("    runtime.compute total", lambda: runtime.compute(kernel, params, batch.arrays, weights, True)),
        ("      session.run alone", lambda: kernel.session.run(names, feed)),
        ("    np.isfinite(loss)", lambda: np.isfinite(loss[()])),
        ("  metrics: record one request", lambda: recorded.record(200, 1e-4, 6400, 100)),
        ("  response: orjson.dumps", lambda: orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)),
        ("(reference) orjson.loads of the body", lambda: orjson.loads(body)),
        ("(reference) np.asarray of one 32x10 list", lambda: np.asarray(lists["predictions"], np.float32)),
        ("(reference) predictions.min() + max()", lambda: (predictions.min(), predictions.max())),
    ]


def floor_steps(threads: int) -> list[tuple[str, Step | None]]:
    body = small_request()
    data = orjson.loads(body)
    kernel = FocalKernel(threads)
    lists = (data["predictions"], data["targets"])
    predictions, targets = (np.asarray(x, np.float32) for x in lists)
    loss = kernel.loss(predictions, targets)
    return [
        ("  orjson.loads", lambda: orjson.loads(body)),
        (
            "  np.asarray x2",
            lambda: [np.asarray(x, np.float32) for x in lists],
        ),
        ("  feed + session.run", lambda: kernel.loss(predictions, targets)),
        ("  response: orjson.dumps", lambda: response_body(loss, 32)),
    ]


def in_sequence(threads: int, calls: int) -> list[list[str]]:
    """``rest.compute``'s stages timed inside the flow, each request parsed afresh: means, which
    run above the best-of-rounds figures of the steps timed alone (fresh arrays, a cold cache)."""
    from kernels import REGISTRY
    from kernels.runtime import Runtime
    from service import rest
    from service.compute import Computation, evaluate

    spec = REGISTRY.get("focal")
    assert spec is not None
    runtime, body, numeric = Runtime(REGISTRY, "cpu", threads), small_request(), rest.numeric_fields(spec)
    stages = ["parse_json", "envelope", "Computation", "compute.evaluate", "response"]
    spent = dict.fromkeys(stages, 0.0)

    def one() -> None:
        marks = [perf_counter()]
        data = rest.parse_json(body, numeric, MAX_ELEMENTS)
        marks.append(perf_counter())
        envelope: Any = rest.validate_envelope(spec, data)
        marks.append(perf_counter())
        values = {i.name: getattr(envelope, i.name) for i in spec.inputs}
        request = Computation(envelope.params, values, envelope.weights, envelope.reduction, envelope.dtype, False)
        marks.append(perf_counter())
        result = evaluate(runtime, spec, request, MAX_ELEMENTS)
        marks.append(perf_counter())
        response = {"loss": result.loss[()], "reduction": request.reduction, "count": result.count, "dtype": "float32"}
        orjson.dumps(response, option=rest.JSON_OPTIONS)
        marks.append(perf_counter())
        for stage, (begin, end) in zip(stages, itertools.pairwise(marks), strict=True):
            spent[stage] += end - begin

    for _ in range(calls):  # warm-up
        one()
    spent.update(dict.fromkeys(stages, 0.0))
    for _ in range(calls):
        one()
    rows = [[f"  {stage}", number(seconds / calls * 1e6)] for stage, seconds in spent.items()]
    return [["rest.compute stages, in sequence", number(sum(spent.values()) / calls * 1e6)], *rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds per step; the best counts (default 15)")
    parser.add_argument("--calls", type=int, default=500, help="calls per round (default 500)")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (default 1, as served)")
    args = parser.parse_args(argv)

    loop = uvloop.new_event_loop()
    floor = floor_app(args.threads)
    service = service_app(args.threads)
    with_apps = [(floor, "floor app via ASGI (no HTTP)"), (service, "service app via ASGI (no HTTP)")]
    contexts = [lifespan(app) for app, _ in with_apps]
    for context in contexts:
        loop.run_until_complete(context.__aenter__())
    try:
        fast = fast_path(service)
        whole: list[tuple[str, Step | AsgiStep | None]] = [(label, AsgiStep(app, loop)) for app, label in with_apps]
        whole.append(("  service fast path alone, FastAPI stack skipped", AsgiStep(fast, loop) if fast else None))
        steps: list[tuple[str, Step | AsgiStep | None]] = [
            ("FLOOR", None),
            whole[0],
            *floor_steps(args.threads),
            ("SERVICE", None),
            *whole[1:],
            *service_steps(args.threads),
        ]
        rows = []
        floor_total = 0.0
        for label, step in steps:
            if label.isupper():
                rows.append([label, "", ""])
                continue
            if step is None:
                rows.append([label, "n/a", ""])
                continue
            if isinstance(step, AsgiStep):
                seconds = step.best_seconds(args.rounds, args.calls)
            else:
                seconds = best_seconds(step, args.rounds, args.calls)
            floor_total = floor_total or seconds
            rows.append([label, number(seconds * 1e6), f"{seconds / floor_total:.2f}"])
    finally:
        for context in reversed(contexts):
            loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()
    print(f"Small request (focal 32x10) step by step, best of {args.rounds} x {args.calls} calls, warm inputs")
    print(render(["step", "us", "/ floor app"], rows))
    calls = args.rounds * args.calls
    print(f"\nThe same stages inside one flow, means over {calls} requests (each parsed afresh)")
    print(render(["stage", "us"], in_sequence(args.threads, calls)))
    return 0


def fast_path(service: ASGIApp) -> ASGIApp | None:
    """The service's data-plane dispatch called directly, without FastAPI's routing and middleware."""
    from service import routing
    from service.app import LossdApp

    if not isinstance(service, LossdApp):
        return None
    route, state = service.routes_table.match(PATH), service.state
    assert route is not None, f"{PATH} is not a data-plane route"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await routing.answer(state, route, scope, receive, send, service.max_body)

    return app


if __name__ == "__main__":
    sys.exit(main())
