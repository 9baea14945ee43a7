"""One OpenTelemetry span for the job and one per step, through the OpenTelemetry SDK.

The job is a child of the message's trace (TRACEPARENT, set by the controller, read by the SDK's
W3C propagator), so a trace backend shows the pod's work under the same trace id as the webhook,
the worker and the controller. The SDK reads the standard variables itself: the endpoint
(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, or OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, OTLP/HTTP
protobuf), OTEL_SERVICE_NAME (default here: unmix-job), OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER
and its _ARG. Without an endpoint the SDK is not even imported. Spans never carry an error's message
(it could hold a presigned URL, a credential): an error is its status and its exception type. The
export is flushed within FLUSH_TIMEOUT_SECONDS before exit; a failed one is logged and ignored:
tracing never fails or holds up a job.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .logs import log

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.trace import Span, Tracer

SERVICE_NAME = "unmix-job"
SCOPE_NAME = "unmix_job"
FLUSH_TIMEOUT_SECONDS = 3.0
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")

# (name, start, end in ns since the epoch, exception type or None): manifest.StepTimer.spans
Step = tuple[str, int, int, str | None]


def enabled(env: Mapping[str, str]) -> bool:
    """Tracing is on when an OTLP endpoint is set (and the SDK is not disabled)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name, "").strip() for name in _ENDPOINTS)


def start(env: Mapping[str, str], traceparent: str | None) -> JobTrace | None:
    """Starts the job's span, child of TRACEPARENT (a new trace without a valid one); None, with
    nothing imported, when tracing is off. Never raises."""
    if not enabled(env):
        return None
    try:
        return JobTrace(env, traceparent)
    except Exception as err:
        log(f"tracing off (could not start): {type(err).__name__}")
        return None


class JobTrace:
    def __init__(self, env: Mapping[str, str], traceparent: str | None) -> None:
        # Imported here, only when an endpoint is set: the SDK and protobuf cost import time that
        # a job without a collector (DeepFilterNet3 on a CPU node) should not pay.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        for name in _PROTOCOLS:
            protocol = env.get(name, "").strip()
            if protocol and protocol != "http/protobuf":
                log(f"{name}={protocol} is not supported: the job sends http/protobuf")
                break
        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the default name.
        from_env = OTELResourceDetector().detect().attributes
        resource = Resource.create({"service.name": SERVICE_NAME, **from_env})
        # The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based, always on). No exit
        # hook: flush() bounds the export, the SDK's own hook would wait up to 30 s.
        self._provider: TracerProvider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self._exporter = _Reporting(OTLPSpanExporter())
        self._processor: BatchSpanProcessor = BatchSpanProcessor(self._exporter)
        self._provider.add_span_processor(self._processor)
        self._tracer: Tracer = self._provider.get_tracer(SCOPE_NAME)
        self._parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent or ""})
        self._job: Span = self._tracer.start_span(SERVICE_NAME, context=self._parent, kind=SpanKind.INTERNAL)

    def finish(
        self,
        steps: Sequence[Step],
        exit_code: int,
        error_type: str | None,
        attributes: Mapping[str, str | int | float | bool],
    ) -> None:
        """Ends the job's span with one child span per step, and exports them all. Never raises."""
        try:
            from opentelemetry.trace import SpanKind, set_span_in_context

            inside = set_span_in_context(self._job)
            for name, start_ns, end_ns, step_error in steps:
                span = self._tracer.start_span(
                    f"{SERVICE_NAME} {name}", context=inside, kind=SpanKind.INTERNAL, start_time=start_ns
                )
                _set_outcome(span, step_error, failed=step_error is not None)
                span.end(end_time=end_ns)
            self._job.set_attributes({"unmix.job.exit_code": exit_code, **attributes})
            _set_outcome(self._job, error_type, failed=exit_code != 0)
            self._job.end()
        except Exception as err:
            log(f"trace export failed (ignored): {type(err).__name__}")
        self.flush()

    def flush(self) -> None:
        """Sends what was recorded, waiting at most FLUSH_TIMEOUT_SECONDS (the SDK's shutdown would
        wait up to 30 s); an export still running then is abandoned: its retries are stopped, and
        its threads are daemons, so the process exits anyway."""
        flushing = threading.Thread(target=self._processor.shutdown, name="trace-flush", daemon=True)
        flushing.start()
        flushing.join(FLUSH_TIMEOUT_SECONDS)
        if flushing.is_alive():
            self._exporter.shutdown()
        outcome = self._exporter.outcome
        if not self._job.get_span_context().trace_flags.sampled:
            return  # not sampled (OTEL_TRACES_SAMPLER, or TRACEPARENT's flags): nothing to send
        if outcome is None:
            waited = f"{FLUSH_TIMEOUT_SECONDS:g} s"
            log(f"trace export failed (ignored): the collector did not take the spans within {waited}")
        elif outcome != "ok":
            log(f"trace export failed (ignored): {outcome}")


def _set_outcome(span: Span, error_type: str | None, failed: bool) -> None:
    from opentelemetry.trace import Status, StatusCode

    if not failed:
        span.set_status(Status(StatusCode.OK))
        return
    # The type only: an exception's message could hold a presigned URL or personal data.
    kind = error_type or "error"
    span.set_attribute("error.type", kind)
    span.add_event("exception", {"exception.type": kind})
    span.set_status(Status(StatusCode.ERROR, kind))


class _Reporting:
    """Wraps the OTLP exporter to learn the export's outcome (the SDK only logs it)."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self.outcome: str | None = None  # "ok", or why not; None while nothing was answered
        self._shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self._inner.export(spans)
        except Exception as err:
            self.outcome = type(err).__name__
            return SpanExportResult.FAILURE
        ok = result == SpanExportResult.SUCCESS
        if self.outcome in (None, "ok"):
            self.outcome = "ok" if ok else "the collector did not accept the spans (see stderr)"
        return result

    def shutdown(self) -> None:
        if not self._shut:
            self._shut = True
            self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)
