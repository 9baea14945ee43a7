"""One OpenTelemetry span for the job and one per step, exported as OTLP/HTTP JSON.

The job is a child of the message's trace (TRACEPARENT, set by the controller), so a trace backend
shows the pod's work under the same trace id as the webhook, the worker and the controller. Export
uses the standard variables (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, or
OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces) and only the standard library. Nothing is sent when
neither is set, and a failed export is logged and ignored: tracing never fails a job.
"""

import json
import os
import re
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

from .logs import log

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
SERVICE_NAME = "unmix-job"
EXPORT_TIMEOUT_SECONDS = 2.0
STATUS_OK = 1
STATUS_ERROR = 2
KIND_INTERNAL = 1


def _random_hex(nbytes: int) -> str:
    while True:
        value = os.urandom(nbytes).hex()
        if value.strip("0"):
            return value


@dataclass
class Span:
    name: str
    span_id: str
    parent_span_id: str | None
    start_ns: int
    end_ns: int = 0
    attributes: dict[str, str | int | float | bool] = field(default_factory=dict)
    error: str | None = None


@dataclass
class JobTrace:
    """The job's span (child of TRACEPARENT, or a new root) and its step spans."""

    trace_id: str
    parent_span_id: str | None
    job: Span
    steps: list[Span] = field(default_factory=list)

    @classmethod
    def start(cls, traceparent: str | None, name: str = SERVICE_NAME) -> "JobTrace":
        match = _TRACEPARENT.match((traceparent or "").strip().lower())
        valid = bool(match) and match.group(2).strip("0") != "" and match.group(3).strip("0") != ""
        trace_id = match.group(2) if valid and match else _random_hex(16)
        parent = match.group(3) if valid and match else None
        return cls(trace_id, parent, Span(name, _random_hex(8), parent, time.time_ns()))

    def step(self, name: str, start_ns: int, end_ns: int, error: str | None = None) -> None:
        self.steps.append(
            Span(f"{SERVICE_NAME} {name}", _random_hex(8), self.job.span_id, start_ns, end_ns, error=error)
        )

    def finish(
        self, exit_code: int, reason: str | None = None, **attributes: str | int | float | bool
    ) -> None:
        self.job.end_ns = time.time_ns()
        self.job.attributes.update({"unmix.job.exit_code": exit_code, **attributes})
        if exit_code != 0:
            self.job.error = reason or f"exit {exit_code}"

    def otlp_json(self) -> dict:
        def value(v: str | int | float | bool) -> dict:
            if isinstance(v, bool):
                return {"boolValue": v}
            if isinstance(v, int):
                return {"intValue": str(v)}
            if isinstance(v, float):
                return {"doubleValue": v}
            return {"stringValue": str(v)}

        def span(s: Span) -> dict:
            out: dict = {
                "traceId": self.trace_id,
                "spanId": s.span_id,
                "name": s.name,
                "kind": KIND_INTERNAL,
                "startTimeUnixNano": str(s.start_ns),
                "endTimeUnixNano": str(s.end_ns or time.time_ns()),
                "attributes": [{"key": k, "value": value(v)} for k, v in s.attributes.items()],
                "status": {"code": STATUS_ERROR, "message": s.error} if s.error else {"code": STATUS_OK},
            }
            if s.parent_span_id:
                out["parentSpanId"] = s.parent_span_id
            return out

        return {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": SERVICE_NAME}}]
                    },
                    "scopeSpans": [
                        {
                            "scope": {"name": "unmix_job"},
                            "spans": [span(self.job), *(span(s) for s in self.steps)],
                        }
                    ],
                }
            ]
        }


def traces_endpoint(env: Mapping[str, str]) -> str | None:
    explicit = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if explicit:
        return explicit
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return f"{base.rstrip('/')}/v1/traces" if base else None


def export(trace: JobTrace, env: Mapping[str, str]) -> bool:
    """POSTs the spans; True when the receiver accepted them. Never raises."""
    url = traces_endpoint(env)
    if not url:
        return False
    try:
        body = json.dumps(trace.otlp_json()).encode()
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=EXPORT_TIMEOUT_SECONDS) as response:
            return 200 <= response.status < 300
    except Exception as err:
        log(f"trace export failed (ignored): {type(err).__name__}: {err}")
        return False
