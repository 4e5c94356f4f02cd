"""``python -m bench.breakdown``: where a small request's time goes, step by step, in process.

The focal 32x10 request of ``bench`` through the floor's steps and through the service's
(``service.compute.compute`` and the helpers it calls), each step timed alone on warm
inputs, best of several rounds. A diagnostic for the numbers ``python -m bench`` prints:
it follows the service's internals by name, and a step it cannot find prints "n/a".
"""

from __future__ import annotations

import argparse
import importlib
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
    from kernels.runtime import Runtime

    compute: Any = importlib.import_module("service.compute")
    arrays: Any = importlib.import_module("service.arrays")
    body = small_request()
    spec = REGISTRY.get("focal")
    assert spec is not None
    runtime = Runtime(REGISTRY, "cpu", threads)
    data = orjson.loads(body)
    request = compute.validate_envelope(spec, data)
    params = request.params
    values = {i.name: getattr(request, i.name) for i in spec.inputs}
    batch = arrays.decode_inputs(spec, params, values, np.float32, 50_000_000)
    weights = arrays.decode_weights(None, batch.count, np.float32, True)
    kernel = runtime.kernel(spec, params, "float32", False)
    names = ["loss", "per_sample"]
    loss = runtime.run(kernel, params, batch.arrays, weights, True, names)[0]
    feed = dict(batch.arrays)
    for name in kernel.param_names:
        feed[name] = np.asarray(getattr(params, name), dtype=np.float32)
    feed.update(weights=weights, mean=np.array(True))
    predictions = np.asarray(data["predictions"], np.float32)
    inputs = list(values.items())
    checked = list(batch.arrays.values())
    response = {"loss": loss[()], "reduction": "mean", "count": batch.count, "dtype": "float32"}

    def find(module: Any, name: str, step: Callable[[Any], object]) -> Step | None:
        function = getattr(module, name, None)
        return None if function is None else lambda: step(function)

    return [
        ("compute() total", find(compute, "compute", lambda f: f(runtime, spec, body, 50_000_000))),
        ("  orjson.loads (parse_json)", find(compute, "parse_json", lambda f: f(body))),
        ("  envelope: pydantic model_validate", find(compute, "validate_envelope", lambda f: f(spec, data))),
        ("  decode_inputs total", find(arrays, "decode_inputs", lambda f: f(spec, params, values, np.float32, 10**8))),
        (
            "    np.asarray x2 (to_array)",
            find(arrays, "to_array", lambda f: [f(k, v, np.float32) for k, v in inputs]),
        ),
        ("    bind_shapes", find(arrays, "bind_shapes", lambda f: f(spec.inputs, batch.arrays))),
        (
            "    range checks x2 (check_range)",
            find(arrays, "check_range", lambda f: [f("x", a, 0.0, 1.0, "x") for a in checked]),
        ),
        (
            "  decode_weights (np.ones)",
            find(arrays, "decode_weights", lambda f: f(None, 32, np.float32, True)),
        ),
        ("  runtime.kernel (GraphKey lookup)", lambda: runtime.kernel(spec, params, "float32", False)),
        ("  runtime.run total", lambda: runtime.run(kernel, params, batch.arrays, weights, True, names)),
        ("    session.run alone", lambda: kernel.session.run(names, feed)),
        ("  np.isfinite(loss)", lambda: np.isfinite(loss[()])),
        ("  metrics: record one request", record_metrics()),
        ("  response: orjson.dumps", lambda: orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)),
        ("(reference) np.asarray of one 32x10 list", lambda: np.asarray(data["predictions"], np.float32)),
        ("(reference) predictions.min() + max()", lambda: (predictions.min(), predictions.max())),
    ]


def record_metrics() -> Step | None:
    metrics: Any = importlib.import_module("service.metrics")
    route_metrics = getattr(metrics, "RouteMetrics", None)
    if route_metrics is None:
        return None
    recorded = route_metrics("focal", "rest")
    return lambda: recorded.record(200, 1e-4, 6400)


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
    return 0


def fast_path(service: ASGIApp) -> ASGIApp | None:
    """The service's compute fast path called directly, without FastAPI's routing and middleware."""
    fastpath: Any = importlib.import_module("service.fastpath")
    routes = getattr(service, "fast_routes", None)
    if routes is None or PATH not in routes or not hasattr(fastpath, "answer"):
        return None
    route, state = routes[PATH], getattr(service, "state", None)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await fastpath.answer(state, route, scope, receive, send)

    return app


if __name__ == "__main__":
    sys.exit(main())
