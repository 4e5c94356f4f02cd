"""OpenTelemetry traces of the data plane, opt-in (LOSSD_OTEL_ENDPOINT or the standard
``OTEL_*`` variables).

A traced request gets a server span, the child of the caller's W3C ``traceparent`` when it
sends one, with three children: ``decode`` (body to arrays and checks), ``kernel`` (the
onnxruntime run) and ``encode`` (the reply). They are made after the reply from the times
the data plane keeps anyway (``service.stats.CLOCK``), so tracing adds nothing to the
request's own path. Off, nothing of OpenTelemetry is imported, and a request pays one check
of ``TRACER``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from service.settings import Settings

TRACER: Any = None
"""This process's tracer while tracing is on; None while it is off."""
_provider: TracerProvider | None = None
_EPOCH_OFFSET = 0
"""time.time_ns() - perf_counter_ns(): the data plane's clock is perf_counter."""

STANDARD = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(settings: Settings) -> bool:
    """Tracing is on when LOSSD_OTEL_ENDPOINT is set, or when the standard variables ask for
    OTLP traces, unless OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none say no."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").lower()
    if exporter == "none":
        return False
    return bool(settings.otel_endpoint) or exporter == "otlp" or any(os.environ.get(name) for name in STANDARD)


def start(settings: Settings, exporter: SpanExporter | None = None) -> None:
    """Turn tracing on for this process (each worker calls it): spans are batched and sent by
    OTLP over HTTP, or to ``exporter`` (tests)."""
    global TRACER, _provider, _EPOCH_OFFSET
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from service import __version__

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES over these.
    resource = Resource.create({"service.name": "lossd", "service.version": __version__})
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_endpoint
        traces = f"{endpoint.rstrip('/')}/v1/traces" if endpoint else None  # None: the exporter reads OTEL_*
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces)))
    _EPOCH_OFFSET = time.time_ns() - time.perf_counter_ns()
    _provider, TRACER = provider, provider.get_tracer("lossd")


def stop() -> None:
    """Send what is batched and turn tracing off."""
    global TRACER, _provider
    if _provider is not None:
        _provider.shutdown()
    _provider = TRACER = None


def _ns(seconds: float) -> int:
    return _EPOCH_OFFSET + int(seconds * 1e9)


def record(
    name: str,
    carrier: Mapping[str, str],
    start: float,
    kernel: tuple[float, float],
    end: float,
    attributes: Mapping[str, Any],
) -> None:
    """One request's spans, from its perf_counter times; ``kernel`` is the (start, end) of the
    latest run on the request's thread (it ran the kernel when that starts after ``start``)."""
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind, StatusCode, set_span_in_context

    parent = propagate.extract(carrier)
    span = TRACER.start_span(name, context=parent, kind=SpanKind.SERVER, start_time=_ns(start), attributes=attributes)
    inside = set_span_in_context(span)
    kernel_start, kernel_end = kernel
    if start <= kernel_start <= kernel_end <= end:
        for part, begin, finish in (("decode", start, kernel_start), ("kernel", kernel_start, kernel_end)):
            TRACER.start_span(part, context=inside, start_time=_ns(begin)).end(end_time=_ns(finish))
        TRACER.start_span("encode", context=inside, start_time=_ns(kernel_end)).end(end_time=_ns(end))
    if attributes.get("http.response.status_code", 0) >= 500 or attributes.get("rpc.grpc.status_code", 0) == 13:
        span.set_status(StatusCode.ERROR)
    span.end(end_time=_ns(end))


def http_carrier(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The W3C trace headers of an ASGI request."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in (b"traceparent", b"tracestate")}
