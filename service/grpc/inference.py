"""``inference.GRPCInferenceService``: the Open Inference Protocol's calls over gRPC, with
the HTTP V2 edge's behaviour (service.routes.v2 and the V2 infer route of service.routing):
API keys, the per-worker concurrency limit (shared with HTTP), metrics with
``protocol="grpc"``, Triton's statistics, and large requests computed off the event loop."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol, TypeVar

import anyio.to_thread
import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from kernels import REGISTRY, memory
from kernels.spec import LossSpec
from service import lifecycle, metrics, stats, tracing, v2
from service.auth import key_error
from service.compute import evaluate
from service.errors import Kind, ServiceError, not_found
from service.grpc import grpc_predict_v2_pb2 as pb
from service.grpc import status, tensors
from service.limits import busy
from service.lookup import model_named
from service.routing import NO_RUN, OFF_LOOP_BYTES, RELEASE_BYTES

log = logging.getLogger("lossd.grpc")
SERVICE = "inference.GRPCInferenceService"
Reply = TypeVar("Reply")


class Host(Protocol):
    """What the edge needs of the app it runs beside (service.app.LossdApp): its state
    (runtime, settings, drain, monitors, compute threads) and its requests in flight, which
    HTTP and gRPC share under one LOSSD_MAX_CONCURRENCY."""

    state: Any
    in_flight: int
    max_concurrency: int


def internal() -> ServiceError:
    return ServiceError(Kind.INTERNAL, "Internal Server Error", "the server failed to compute this request")


async def abort(context: Any, error: ServiceError) -> NoReturn:
    await context.abort(status.code(error), error.detail)
    raise AssertionError("context.abort returned")  # it raises


def model(name: str, version: str) -> LossSpec:
    spec = model_named(name)
    if version not in ("", "1"):
        raise not_found("Unknown model version", f"model {name} has version 1 only, not {version!r}", field="version")
    return spec


def run(spec: LossSpec, request: pb.ModelInferRequest, host: Host, size: int) -> tuple[bytes, tuple[float, float]]:
    """Decode, compute, encode and serialize; and the latest kernel run of the thread it ran on."""
    try:
        prepared = tensors.decode(spec, request)
        result = evaluate(host.state.runtime, spec, prepared.computation, host.state.settings.max_elements)
        answer = tensors.encode(spec, request, prepared, result).SerializeToString()
    finally:
        if size >= RELEASE_BYTES:
            memory.release_soon()
    return answer, (stats.CLOCK.kernel_start, stats.CLOCK.kernel_end)


class InferenceService:
    def __init__(self, host: Host) -> None:
        self.host = host
        settings = host.state.settings
        self.keys = [key.get_secret_value().encode() for key in settings.api_keys]
        self.metrics: dict[str, metrics.RouteMetrics] = {}

    def admit(self, context: Any) -> None:
        """An API key when keys are set (health stays open, as over HTTP)."""
        if self.keys:
            metadata = [(k.encode(), v.encode()) for k, v in context.invocation_metadata() if isinstance(v, str)]
            error = key_error(self.keys, metadata)
            if error is not None:
                raise error

    async def answer(self, context: Any, reply: Callable[[], Reply], guarded: bool = True) -> Reply:
        """A call other than infer: its reply, or its error as a status."""
        try:
            if guarded:
                self.admit(context)
            return reply()
        except ServiceError as error:
            await abort(context, error)

    # --- health and metadata ---------------------------------------------------------------

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=await lifecycle.ready(self.host.state))

    async def ModelReady(self, request: Any, context: Any) -> Any:
        def reply() -> Any:
            model(request.name, request.version)
            return pb.ModelReadyResponse(ready=True)

        return await self.answer(context, reply)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return await self.answer(
            context, lambda: json_format.ParseDict(v2.server_metadata(), pb.ServerMetadataResponse())
        )

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        def reply() -> Any:
            spec = model(request.name, request.version)
            return json_format.ParseDict(v2.model_metadata(spec), pb.ModelMetadataResponse())

        return await self.answer(context, reply)

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        def reply() -> Any:
            config = v2.model_config(model(request.name, request.version))
            return pb.ModelConfigResponse(config=json_format.ParseDict(config, pb.ModelConfig()))

        return await self.answer(context, reply)

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        def reply() -> Any:
            names = [model(request.name, request.version).name] if request.name else [s.name for s in REGISTRY]
            return json_format.ParseDict(stats.model_stats(names), pb.ModelStatisticsResponse())

        return await self.answer(context, reply)

    # --- infer -----------------------------------------------------------------------------

    def route_metrics(self, spec: LossSpec) -> metrics.RouteMetrics:
        found = self.metrics.get(spec.name)
        if found is None:
            found = self.metrics[spec.name] = metrics.RouteMetrics(spec.name, "grpc")
        return found

    async def ModelInfer(self, data: bytes, context: Any) -> bytes:
        """Takes and answers serialized messages (see ``handlers``): their sizes are the
        lengths on the wire, for free (ByteSize of a message of 8 MB costs ~15 ms), and a
        large request is parsed and its answer serialized off the event loop too."""
        host = self.host
        try:
            self.admit(context)
            if host.in_flight >= host.max_concurrency:
                raise busy(host.max_concurrency)
            request = pb.ModelInferRequest.FromString(data)
            spec = model(request.model_name, request.model_version)
        except ServiceError as refused:
            await abort(context, refused)
        except DecodeError as exc:
            await abort(context, v2.bad_request(f"the ModelInferRequest cannot be parsed: {exc}"))
        counted, route_metrics = stats.of(spec.name), self.route_metrics(spec)
        error: ServiceError | None = None
        answer, kernel = b"", NO_RUN
        start = time.perf_counter()
        host.in_flight += 1
        metrics.IN_FLIGHT.inc()
        try:
            call = functools.partial(run, spec, request, host, len(data))
            if len(data) >= OFF_LOOP_BYTES:  # as over HTTP: the loop stays free for probes and small calls
                work: Awaitable[tuple[bytes, tuple[float, float]]] = anyio.to_thread.run_sync(
                    call, limiter=host.state.compute_threads
                )
                answer, kernel = await work
            else:
                answer, kernel = call()
        except ServiceError as raised:
            error = raised
        except Exception:
            log.exception("gRPC ModelInfer %s failed", spec.name)
            error = internal()
        finally:
            host.in_flight -= 1
            metrics.IN_FLIGHT.dec()
        end = time.perf_counter()
        route_metrics.record(status.http_status(error), end - start, len(data), len(answer))
        if tracing.TRACER is not None:
            carrier = {k: v for k, v in context.invocation_metadata() or () if k in ("traceparent", "tracestate")}
            code = status.code(error).value[0] if error is not None else 0
            attributes = {"rpc.system": "grpc", "rpc.method": "ModelInfer", "rpc.grpc.status_code": code}
            tracing.record(f"ModelInfer {spec.name}", carrier, start, kernel, end, attributes)
        if error is not None:
            counted.failure(start, end)
            await abort(context, error)
        counted.success(start, end, *kernel)
        return answer


UNARY = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelConfig", "ModelStatistics")


def handlers(service: InferenceService) -> Any:
    """The service's method handlers, as the generated ``add_..._to_server`` registers them,
    except that ModelInfer takes and returns serialized messages."""
    unary = grpc.unary_unary_rpc_method_handler
    methods = {
        name: unary(
            getattr(service, name),
            request_deserializer=getattr(pb, f"{name}Request").FromString,
            response_serializer=getattr(pb, f"{name}Response").SerializeToString,
        )
        for name in UNARY
    }
    methods["ModelInfer"] = unary(service.ModelInfer)  # no (de)serializers: bytes in, bytes out
    return grpc.method_handlers_generic_handler(SERVICE, methods)
