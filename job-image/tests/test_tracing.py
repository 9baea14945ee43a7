"""The job's spans: children of the message's TRACEPARENT, posted as OTLP/HTTP JSON, never fatal."""

import http.server
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from conftest import Media
from unmix_job.tracing import JobTrace, traces_endpoint

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    bodies: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/otlp/v1/traces" and self.headers["Content-Type"] == "application/json":
                bodies.append(json.loads(body))
                self.send_response(200)
            else:
                self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/otlp", bodies
    server.shutdown()
    server.server_close()


def spans_of(bodies: list[dict]) -> list[dict]:
    out = []
    for body in bodies:
        for rs in body["resourceSpans"]:
            service = {a["key"]: a["value"]["stringValue"] for a in rs["resource"]["attributes"]}[
                "service.name"
            ]
            for ss in rs["scopeSpans"]:
                out.extend({**s, "service": service} for s in ss["spans"])
    return out


def test_a_job_exports_its_span_and_step_spans_in_the_messages_trace(run_job, media: Media, receiver) -> None:
    url, bodies = receiver
    run = run_job(media.voice_note(3.0), "audio", "ogg-opus", "audio/ogg", OTEL_EXPORTER_OTLP_ENDPOINT=url)
    assert run.code == 0, run.stdout
    spans = spans_of(bodies)
    assert {s["service"] for s in spans} == {"unmix-job"}
    assert {s["traceId"] for s in spans} == {TRACE_ID}
    [job] = [s for s in spans if s["name"] == "unmix-job"]
    assert job["parentSpanId"] == PARENT
    assert job["status"]["code"] == 1
    steps = {s["name"]: s for s in spans if s is not job}
    assert set(steps) == {
        f"unmix-job {n}" for n in ("download", "probe", "decode", "loadModel", "separate", "encode", "upload")
    }
    for step in steps.values():
        assert step["parentSpanId"] == job["spanId"]
        assert int(job["startTimeUnixNano"]) <= int(step["startTimeUnixNano"]) <= int(step["endTimeUnixNano"])
        assert int(step["endTimeUnixNano"]) <= int(job["endTimeUnixNano"])


def test_a_failed_job_marks_its_span_as_an_error(run_job, tmp_path, receiver) -> None:
    url, bodies = receiver
    corrupt = tmp_path / "corrupt.ogg"
    corrupt.write_bytes(b"OggS" + b"\x00" * 4000)
    run = run_job(corrupt, "audio", "ogg-opus", "audio/ogg", OTEL_EXPORTER_OTLP_ENDPOINT=url)
    assert run.code == 10
    [job] = [s for s in spans_of(bodies) if s["name"] == "unmix-job"]
    assert job["status"]["code"] == 2
    assert {"key": "unmix.job.exit_code", "value": {"intValue": "10"}} in job["attributes"]


def test_an_unreachable_collector_does_not_fail_the_job(run_job, media: Media) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    run = run_job(
        media.voice_note(2.0),
        "audio",
        "ogg-opus",
        "audio/ogg",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{closed_port}",
    )
    assert run.code == 0, run.stdout
    assert "trace export failed (ignored)" in run.stdout


def test_without_traceparent_the_job_starts_its_own_trace() -> None:
    trace = JobTrace.start(None)
    assert len(trace.trace_id) == 32 and trace.trace_id.strip("0")
    assert trace.parent_span_id is None
    assert "parentSpanId" not in trace.otlp_json()["resourceSpans"][0]["scopeSpans"][0]["spans"][0]


def test_endpoint_variables() -> None:
    assert traces_endpoint({}) is None
    assert traces_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == "http://c:4318/v1/traces"
    assert (
        traces_endpoint(
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://d"}
        )
        == "http://c/x"
    )
