"""The reference servers of the benchmark, as uvicorn app factories.

``floor_app``: no framework, a raw ASGI callable that does only what a focal request
needs (read the body, orjson, ``np.asarray``, one onnxruntime run of the same graph the
service runs, orjson out). ``minimal_app``: the same, with the smallest focal graph that
computes the same loss (``bench.minimal_graph``). ``naive_app``: the textbook FastAPI
endpoint, a pydantic model with ``list[list[float]]`` fields, then the same onnxruntime run.
``large_floor_app``: the floors of the large requests.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
import orjson
import simdjson
from fastapi import FastAPI
from pydantic import BaseModel

from bench.minimal_graph import focal_graph
from bench.payload import PATH
from kernels import REGISTRY
from kernels.feeds import param_feed
from kernels.graph import MEAN, WEIGHTS, GraphKey, build_model
from kernels.runtime import CPU, session_options

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def focal_key() -> GraphKey:
    """The forward graph of focal with default params, the one the service runs for the bench request."""
    spec = REGISTRY.get("focal")
    assert spec is not None
    return GraphKey("focal", spec.variant(spec.params()), "float32", False)


JSON_HEADERS = [(b"content-type", b"application/json")]


def intra_op_threads() -> int:
    return int(os.environ.get("LOSSD_INTRA_OP_THREADS", "1"))


class FocalKernel:
    """One onnxruntime session of the service's focal graph, fed as ``Runtime.run`` feeds it."""

    def __init__(self, threads: int) -> None:
        key = focal_key()
        spec = REGISTRY.get(key.loss)
        assert spec is not None
        model = build_model(spec, key).SerializeToString()
        self.session = ort.InferenceSession(model, session_options(threads), providers=[CPU])
        self.params = spec.params()
        names = {i.name for i in self.session.get_inputs()}
        self.param_names = tuple(n for n in spec.params.model_fields if n in names)

    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> np.float32:
        # The graph takes (N, features), as the service lays a (N,) request out: a view.
        rows = predictions.shape[0]
        feed: dict[str, np.ndarray] = {
            "predictions": predictions.reshape(rows, -1),
            "targets": targets.reshape(rows, -1),
        }
        for name in self.param_names:
            feed[name] = param_feed(getattr(self.params, name), False, np.float32)
        feed[WEIGHTS] = np.ones(predictions.shape[0], dtype=np.float32)
        feed[MEAN] = np.array(True)
        (loss,) = self.session.run(["loss"], feed)
        value: np.float32 = loss[()]
        return value


def response_body(loss: np.float32, count: int) -> bytes:
    body = {"loss": loss, "reduction": "mean", "count": count, "dtype": "float32"}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def respond(send: Send, status: int, body: bytes) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def frozen_heap() -> None:
    """What the service does after start-up (gc.freeze), so a floor is never slower for lack of it."""
    gc.collect()
    gc.freeze()


def bare(handle: ASGIApp) -> ASGIApp:
    """``handle`` for HTTP requests, with the lifespan protocol answered; other scopes ignored."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        elif scope["type"] == "http":
            await handle(scope, receive, send)

    return app


class Loss(Protocol):
    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> np.float32: ...


def focal_floor(kernel: Loss) -> ASGIApp:
    """Bare ASGI + orjson + numpy + one run of ``kernel``: what a focal request needs, no more."""
    frozen_heap()

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] != PATH or scope["method"] != "POST":
            await respond(send, 404, b'{"detail":"not found"}')
            return
        data = orjson.loads(await read_body(receive))
        predictions = np.asarray(data["predictions"], dtype=np.float32)
        targets = np.asarray(data["targets"], dtype=np.float32)
        loss = kernel.loss(predictions, targets)
        await respond(send, 200, response_body(loss, predictions.shape[0]))

    return bare(handle)


def floor_app(threads: int | None = None) -> ASGIApp:
    """The floor: bare ASGI + orjson + numpy + one onnxruntime run of the service's graph."""
    return focal_floor(FocalKernel(intra_op_threads() if threads is None else threads))


class MinimalKernel:
    """One onnxruntime session of the hand-written focal graph: two inputs, one output."""

    def __init__(self, threads: int) -> None:
        model = focal_graph().SerializeToString()
        self.session = ort.InferenceSession(model, session_options(threads), providers=[CPU])

    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> np.float32:
        (loss,) = self.session.run(["loss"], {"predictions": predictions, "targets": targets})
        value: np.float32 = loss[()]
        return value


def minimal_app(threads: int | None = None) -> ASGIApp:
    """The minimal floor: bare ASGI + orjson + numpy + one run of the smallest focal graph."""
    return focal_floor(MinimalKernel(intra_op_threads() if threads is None else threads))


class FocalRequest(BaseModel):
    predictions: list[list[float]]
    targets: list[list[float]]
    outputs: list[str] = ["loss"]


def naive_app(threads: int | None = None) -> FastAPI:
    """The naive service: FastAPI with a pydantic model parameter + the same onnxruntime run."""
    kernel = FocalKernel(intra_op_threads() if threads is None else threads)
    app = FastAPI()

    @app.post(PATH)
    async def focal(request: FocalRequest) -> dict[str, Any]:
        predictions = np.asarray(request.predictions, dtype=np.float32)
        targets = np.asarray(request.targets, dtype=np.float32)
        loss = kernel.loss(predictions, targets)
        return {"loss": float(loss), "reduction": "mean", "count": len(request.predictions), "dtype": "float32"}

    return app


LARGE_V2_PATH = "/floor/v2"
LARGE_JSON_PATH = "/floor/json"


def header_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"inference-header-content-length":
            return int(value)
    raise ValueError("no Inference-Header-Content-Length")


def binary_inputs(body: bytes, length: int) -> dict[str, np.ndarray]:
    """The V2 binary tensors of a request: zero-copy views of the body."""
    header, offset, arrays = orjson.loads(body[:length]), length, {}
    for tensor in header["inputs"]:
        size = tensor["parameters"]["binary_data_size"]
        arrays[tensor["name"]] = np.frombuffer(body, np.float32, size // 4, offset).reshape(tensor["shape"])
        offset += size
    return arrays


def simdjson_arrays(parser: simdjson.Parser, body: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``predictions`` and ``targets`` of a JSON body as float32 arrays: simdjson parses the
    numbers straight into one buffer per array, with no Python object per number. A nested
    array comes back flat; its length gives the rows back. Nothing of the document outlives
    this call, so ``parser`` can take the next body."""
    document = parser.parse(body)
    if not isinstance(document, simdjson.Object):
        raise ValueError("the body is not a JSON object")
    found = []
    for name in ("predictions", "targets"):
        array = document[name]
        if not isinstance(array, simdjson.Array):
            raise ValueError(f"{name} is not an array")
        flat = np.frombuffer(array.as_buffer(of_type="d"), np.float64).astype(np.float32)
        rows = len(array)
        found.append(flat if flat.size == rows else flat.reshape(rows, -1))
        del array
    del document
    return found[0], found[1]


def large_floor_app(threads: int | None = None) -> ASGIApp:
    """The floors of the large requests. ``/floor/v2``: bare ASGI, the V2 binary tensors by
    ``np.frombuffer``, one onnxruntime run of the service's focal graph. ``/floor/json``:
    read the body, simdjson-parse it into numpy buffers, the same onnxruntime run."""
    kernel = FocalKernel(intra_op_threads() if threads is None else threads)
    parser = simdjson.Parser()
    frozen_heap()

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == LARGE_V2_PATH:
            body = await read_body(receive)
            arrays = binary_inputs(body, header_length(scope))
            loss = kernel.loss(arrays["predictions"], arrays["targets"])
            outputs = [{"name": "loss", "datatype": "FP32", "shape": [], "data": [loss]}]
            await respond(send, 200, orjson.dumps({"outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY))
        elif scope["path"] == LARGE_JSON_PATH:
            predictions, targets = simdjson_arrays(parser, await read_body(receive))
            loss = kernel.loss(predictions, targets)
            await respond(send, 200, response_body(loss, predictions.shape[0]))
        else:
            await respond(send, 404, b'{"detail":"not found"}')

    return bare(handle)
