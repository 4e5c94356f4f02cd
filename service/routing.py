"""The route table of the data plane's POST endpoints: compute, composite, V2 infer and
monitor observations. Built by ``create_app`` once the configured composites are registered;
each entry carries its handler, its metrics and its OpenAPI operation, and the same table
drives the raw-ASGI dispatch (FastAPI's routing costs about as much as a small request's whole
computation) and the served document. Everything else is FastAPI's."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio.to_thread
import orjson
from anyio import CapacityLimiter
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from kernels import memory
from kernels.spec import LossSpec
from service import metrics, rest, stats, tracing, v2
from service.errors import Kind, ServiceError
from service.limits import busy, read_body
from service.lookup import loss_named, model_named
from service.monitors.faults import storage_error
from service.monitors.ingest import find, observe
from service.monitors.labels import label, predict
from service.problems import refuse, render, routing_error
from service.responses import problems, v2_errors
from service.schemas import camel

log = logging.getLogger("lossd.routing")
Headers = list[tuple[bytes, bytes]]
Reply = tuple[bytes, Headers]
Handler = Callable[[Any, Scope, bytes], Reply]
"""(app state, scope, body) -> (body, headers) of a 200; errors are raised as ServiceError."""
Result = tuple[Reply, tuple[float, float]]
JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
OFF_LOOP_BYTES = 1 << 20
"""Bodies this large are decoded and computed in a worker thread, so that a burst of large
requests leaves the event loop free for health probes, scrapes and small requests (a small
request stays on the loop: the hand-off would cost more than its computation)."""
NO_RUN = (0.0, 0.0)
"""The kernel times of a request that ran no kernel (it failed first)."""
RELEASE_BYTES = 8 << 20
"""After a body of this size, free heap pages go back to the system shortly
(kernels.memory.release_soon): its arrays and copies otherwise stay in the worker's heap."""


@dataclass(frozen=True)
class Route:
    handler: Handler
    metrics: metrics.RouteMetrics | None
    """None where nothing is counted: a path that names no loss, monitor observations."""
    offload: Callable[[Any], bool] = lambda state: False
    """Run the handler in the threadpool (it waits on a network, e.g. PostgreSQL)."""
    failure: str = "compute this request"
    """What the server failed to do, for the 500 of a bug or a failed dependency."""
    stats: stats.ModelStats | None = None
    """The model whose statistics count these requests (Triton's statistics extension); None
    where nothing is counted. Such handlers run on the event loop's thread (not offloaded)."""


@dataclass(frozen=True)
class Template:
    """Paths ``prefix + name + suffix``, one route per name (made on demand)."""

    prefix: str
    suffix: str
    route: Callable[[str], Route]

    def match(self, path: str) -> Route | None:
        if path.startswith(self.prefix) and path.endswith(self.suffix):
            name = path[len(self.prefix) : len(path) - len(self.suffix)]
            if name and "/" not in name:
                return self.route(name)
        return None


class RouteTable:
    def __init__(self, exact: dict[str, Route], templates: Iterable[Template], paths: dict[str, Any]) -> None:
        self.exact, self.templates = exact, tuple(templates)
        self.paths = paths
        """The OpenAPI paths of these routes."""

    def match(self, path: str) -> Route | None:
        route = self.exact.get(path)
        if route is not None:
            return route
        for template in self.templates:
            found = template.match(path)
            if found is not None:
                return found
        return None


# --- handlers ------------------------------------------------------------------------------------


def rest_loss(spec: LossSpec) -> Handler:
    def handle(state: Any, scope: Scope, body: bytes) -> Reply:
        rest.check_content_type(scope["headers"])
        return rest.compute(state.runtime, spec, body, state.settings.max_elements), JSON_HEADERS

    return handle


def rest_composite(state: Any, scope: Scope, body: bytes) -> Reply:
    rest.check_content_type(scope["headers"])
    return rest.compute_composite(state.runtime, body, state.settings.max_elements), JSON_HEADERS


def v2_infer(spec: LossSpec) -> Handler:
    def handle(state: Any, scope: Scope, body: bytes) -> Reply:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        settings = state.settings
        return v2.infer(state.runtime, spec, body, headers, settings.max_elements, settings.max_body_bytes)

    return handle


def observations(name: str) -> Handler:
    def handle(state: Any, scope: Scope, body: bytes) -> Reply:
        rest.check_content_type(scope["headers"])
        monitor = find(state.monitors, name)
        settings = state.settings
        result = observe(state.runtime, state.monitors, monitor, body, settings.max_elements, settings.max_segments)
        return orjson.dumps(result), JSON_HEADERS

    return handle


def predictions(name: str) -> Handler:
    def handle(state: Any, scope: Scope, body: bytes) -> Reply:
        rest.check_content_type(scope["headers"])
        monitor = find(state.monitors, name)
        return orjson.dumps(predict(state.monitors, monitor, body, state.settings.max_elements)), JSON_HEADERS

    return handle


def labels(name: str) -> Handler:
    def handle(state: Any, scope: Scope, body: bytes) -> Reply:
        rest.check_content_type(scope["headers"])
        monitor = find(state.monitors, name)
        settings = state.settings
        result = label(state.runtime, state.monitors, monitor, body, settings.max_elements, settings.max_segments)
        return orjson.dumps(result), JSON_HEADERS

    return handle


def unknown(lookup: Callable[[str], LossSpec]) -> Callable[[str], Route]:
    """A route for a name that is not a loss: it answers not found with the close matches."""

    def route(name: str) -> Route:
        def handle(state: Any, scope: Scope, body: bytes) -> Reply:
            lookup(name)
            raise AssertionError(f"{name!r} names a loss without a route")

        return Route(handle, None)

    return route


# --- the table -----------------------------------------------------------------------------------

LOSS_ERRORS = {400: "Malformed JSON.", 413: "Too many elements.", 415: "The body is not sent as JSON."}
NOT_CONFIGURED = {409: "The loss needs something the operator has not configured."}
INFER_ERRORS = v2_errors(
    {
        400: "An invalid request; the error says what is wrong.",
        404: "No model of that name.",
        409: "The loss needs something the operator has not configured.",
        413: "Too many elements.",
        415: "An unsupported Content-Encoding.",
    }
)
NAME = [{"in": "path", "name": "name", "required": True, "schema": {"title": "Name", "type": "string"}}]


def described(responses: dict[int | str, dict[str, Any]]) -> dict[str, Any]:
    """Responses keyed as OpenAPI keys them: status codes as strings."""
    return {str(status): response for status, response in responses.items()}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def ok(model: str, description: str = "Successful Response") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(model)}}}


def ref(model: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model}"}


def loss_operation(spec: LossSpec) -> dict[str, Any]:
    errors = {**LOSS_ERRORS, **(NOT_CONFIGURED if spec.configured else {}), 422: "Invalid input; `field` names it."}
    return {
        "tags": ["compute"],
        "summary": spec.card.title,
        "description": f"{spec.card.title}. {spec.card.summary}",
        "operationId": f"compute_{spec.name}_loss_{spec.name}_post",
        "requestBody": json_body(ref(f"{camel(spec.name)}Request")),
        "responses": {"200": ok("LossResponse"), **described(problems(errors))},
    }


COMPOSITE_OPERATION = {
    "tags": ["compute"],
    "summary": "Weighted sum of catalog losses",
    "description": "A weighted sum of catalog losses over shared inputs, computed as one graph (cached by the\n"
    "terms' structure). The response adds each term's own reduced value under ``terms``.",
    "operationId": "composite_loss_loss_composite_post",
    "requestBody": json_body(ref("CompositeRequest")),
    "responses": {
        "200": ok("CompositeResponse"),
        **described(
            problems({**LOSS_ERRORS, 422: "Invalid composition or input; `field` names it (e.g. terms[1].loss)."})
        ),
    },
}
INFER_OPERATION = {
    "tags": ["open inference protocol"],
    "summary": "Infer",
    "description": "Inputs are the loss's inputs (plus optional ``weights``); params and ``reduction``\n"
    "go in the request ``parameters``; outputs are ``loss``, ``per_sample`` and\n"
    "``gradient_<input>``. The binary tensor data extension is supported both ways.",
    "operationId": "infer_v2_models__name__infer_post",
    "parameters": NAME,
    "requestBody": json_body(ref("InferRequest")),
    "responses": {
        "200": ok(
            "InferResponse",
            "JSON, or with binary outputs a JSON header of Inference-Header-Content-Length bytes followed by the "
            "tensors.",
        ),
        **described(INFER_ERRORS),
    },
}
OBSERVATIONS_OPERATION = {
    "tags": ["monitors"],
    "summary": "Post Observations",
    "description": "Record a batch: per-sample losses from the monitor's kernel, committed before the 200.",
    "operationId": "post_observations_monitors__name__observations_post",
    "parameters": NAME,
    "requestBody": json_body(
        {
            "type": "object",
            "description": "The monitor's loss inputs (as for POST /loss/{name}), optional `weights`, "
            "`timestamp` (RFC 3339 or epoch seconds; default now) which picks the window, and `tags` (the "
            "monitor's segment keys; a key left out is null) which pick the segment.",
            "properties": {
                "timestamp": {"anyOf": [{"type": "string"}, {"type": "number"}]},
                "tags": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
            },
        }
    ),
    "responses": {
        "200": ok("Accepted"),
        **described(
            problems({**LOSS_ERRORS, 404: "No monitor of that name.", 422: "Invalid input; `field` names it."})
        ),
    },
}


MONITOR_ERRORS = {**LOSS_ERRORS, 404: "No monitor of that name.", 422: "Invalid input; `field` names it."}
ID_CONFLICT = {409: "An id is given twice with other content, or waits with other content; `id` names it."}
PREDICTIONS_OPERATION = {
    "tags": ["monitors"],
    "summary": "Post Predictions",
    "description": "Store predictions by id until their labels arrive (at most the monitor's label_ttl_seconds), "
    "committed before the 200. A repeated id with the same content is accepted once.",
    "operationId": "post_predictions_monitors__name__predictions_post",
    "parameters": NAME,
    "requestBody": json_body(ref("PredictionsRequest")),
    "responses": {"200": ok("PredictionsAccepted"), **described(problems({**MONITOR_ERRORS, **ID_CONFLICT}))},
}
LABELS_OPERATION = {
    "tags": ["monitors"],
    "summary": "Post Labels",
    "description": "Join targets to stored predictions by id: each matched sample is computed by the monitor's "
    "kernel and recorded in its prediction's window and segment, and its prediction deleted, in one transaction.",
    "operationId": "post_labels_monitors__name__labels_post",
    "parameters": NAME,
    "requestBody": json_body(ref("LabelsRequest")),
    "responses": {"200": ok("LabelsMatched"), **described(problems({**MONITOR_ERRORS, **ID_CONFLICT}))},
}


def build(specs: Iterable[LossSpec]) -> RouteTable:
    """Every loss (named composites included) under REST and V2, ad-hoc composites, and monitor
    observations."""
    exact = {"/loss/composite": Route(rest_composite, metrics.RouteMetrics("composite", "rest"))}
    paths: dict[str, Any] = {"/loss/composite": {"post": COMPOSITE_OPERATION}}
    for spec in specs:
        counted = stats.of(spec.name)
        rest_route = Route(rest_loss(spec), metrics.RouteMetrics(spec.name, "rest"), stats=counted)
        for name in (spec.name, *spec.aliases):
            exact[f"/loss/{name}"] = rest_route
        paths[f"/loss/{spec.name}"] = {"post": loss_operation(spec)}
        infer = Route(v2_infer(spec), metrics.RouteMetrics(spec.name, "v2"), stats=counted)
        exact[f"/v2/models/{spec.name}/infer"] = exact[f"/v2/models/{spec.name}/versions/1/infer"] = infer
    paths["/v2/models/{name}/infer"] = {"post": INFER_OPERATION}
    paths["/monitors/{name}/observations"] = {"post": OBSERVATIONS_OPERATION}
    paths["/monitors/{name}/predictions"] = {"post": PREDICTIONS_OPERATION}
    paths["/monitors/{name}/labels"] = {"post": LABELS_OPERATION}
    templates = [
        Template(
            "/monitors/",
            "/observations",
            lambda name: Route(observations(name), None, network_store, "record these observations"),
        ),
        Template(
            "/monitors/",
            "/predictions",
            lambda name: Route(predictions(name), None, network_store, "store these predictions"),
        ),
        Template("/monitors/", "/labels", lambda name: Route(labels(name), None, network_store, "record these labels")),
        Template("/loss/", "", unknown(loss_named)),
        Template("/v2/models/", "/infer", unknown(model_named)),
        Template("/v2/models/", "/versions/1/infer", unknown(model_named)),
    ]
    return RouteTable(exact, templates, dict(sorted(paths.items())))


def observations_route(name: str) -> Route:
    return Route(observations(name), None, offload=network_store, failure="record these observations")


def network_store(state: Any) -> bool:
    return bool(state.monitors.waits_on_network)


def compute_threads() -> CapacityLimiter:
    """Threads for work off the loop (one per core: onnxruntime and numpy release the GIL);
    made in the app's lifespan, on its event loop."""
    return CapacityLimiter(os.cpu_count() or 1)


def internal(route: Route) -> ServiceError:
    """A bug or a failed dependency, not the client's fault (logged with its traceback)."""
    return ServiceError(Kind.INTERNAL, "Internal Server Error", f"the server failed to {route.failure}")


# --- dispatch ------------------------------------------------------------------------------------


async def off_loop(call: Callable[[], Result], threads: CapacityLimiter, receive: Receive) -> Result | None:
    """``call`` in a worker thread, or None when the client disconnects before a thread takes
    it: a request that waits its turn behind others is dropped when its client gives up. Once
    it runs it finishes (a thread cannot be stopped midway); what it raises is raised here."""
    outcome: list[Result | BaseException] = []
    async with anyio.create_task_group() as group:

        async def disconnect() -> None:
            # The body is read: the next message is the disconnect (or the end of the response).
            if (await receive())["type"] == "http.disconnect":
                group.cancel_scope.cancel()

        async def compute() -> None:
            try:
                outcome.append(await anyio.to_thread.run_sync(call, limiter=threads))
            except Exception as exc:  # raised below, outside the task group (which would wrap it)
                outcome.append(exc)
            group.cancel_scope.cancel()  # stop waiting for a disconnect

        group.start_soon(disconnect)  # first: a client already gone is seen before a thread is taken
        group.start_soon(compute)
    if not outcome:
        return None
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def run(handler: Handler, state: Any, scope: Scope, body: bytes) -> tuple[Reply, tuple[float, float]]:
    """The handler's reply, and the latest kernel run of the thread it ran on (read there:
    the clock is per thread, and a large request runs on a worker thread)."""
    try:
        reply = handler(state, scope, body)
    finally:
        if len(body) >= RELEASE_BYTES:
            memory.release_soon()
    return reply, (stats.CLOCK.kernel_start, stats.CLOCK.kernel_end)


class Slots(Protocol):
    """The requests in flight of the app (service.app.LossdApp), under LOSSD_MAX_CONCURRENCY."""

    in_flight: int
    max_concurrency: int


async def answer(
    state: Any, route: Route, scope: Scope, receive: Receive, send: Send, max_body: int, slots: Slots | None = None
) -> None:
    """One request of the table: read the body under the limit, take a slot (the body is
    complete: a slow upload holds none), run the handler, record metrics."""
    if scope["method"] != "POST":
        await routing_error(scope["path"], HTTPException(405, headers={"Allow": "POST"}))(scope, receive, send)
        return
    try:
        body = await read_body(receive, scope, max_body)
    except ServiceError as error:
        await refuse(scope, send, error)
        return
    if body is None:  # the client went away
        return
    if slots is not None:
        if slots.in_flight >= slots.max_concurrency:
            await refuse(scope, send, busy(slots.max_concurrency))
            return
        slots.in_flight += 1
    try:
        await respond(state, route, scope, receive, send, body)
    finally:
        if slots is not None:
            slots.in_flight -= 1


async def respond(state: Any, route: Route, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
    start = time.perf_counter()
    metrics.IN_FLIGHT.inc()
    try:
        call = functools.partial(run, route.handler, state, scope, body)
        if route.offload(state) or len(body) >= OFF_LOOP_BYTES:
            reply = await off_loop(call, state.compute_threads, receive)
            if reply is None:  # the client went away before its turn: nothing was computed
                return
            (payload, headers), kernel = reply
        else:
            (payload, headers), kernel = call()
        status = 200
    except Exception as exc:
        kernel = NO_RUN
        failure = exc if isinstance(exc, ServiceError) else storage_error(exc)
        if failure is None:
            log.exception("%s %s failed", scope["method"], scope["path"])
            failure = internal(route)
        elif not isinstance(exc, ServiceError):
            log.warning("%s %s: %s (%s)", scope["method"], scope["path"], failure.detail, exc)
        status, payload, media_type = render(scope["path"], failure)
        headers = [(b"content-type", media_type.encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in failure.headers.items()]
    finally:
        metrics.IN_FLIGHT.dec()
    end = time.perf_counter()
    if tracing.TRACER is not None:
        attributes = {"http.request.method": "POST", "url.path": scope["path"], "http.response.status_code": status}
        tracing.record(f"POST {scope['path']}", tracing.http_carrier(scope["headers"]), start, kernel, end, attributes)
    if route.metrics is not None:
        route.metrics.record(status, end - start, len(body), len(payload))
    counted = route.stats
    if counted is not None:
        if status == 200:
            counted.success(start, end, *kernel)
        else:
            counted.failure(start, end)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
