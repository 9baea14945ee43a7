"""The job's spans: children of the message's TRACEPARENT, exported by the OpenTelemetry SDK as
OTLP/HTTP protobuf, never carrying a URL or an error's message, never fatal, never slow."""

import calendar
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from conftest import JobRun, Media, Store
from unmix_job import tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
STEPS = ("download", "probe", "decode", "loadModel", "separate", "encode", "upload")


@dataclass
class Received:
    path: str
    content_type: str
    body: bytes


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[Received]]]:
    """A collector: accepts OTLP/HTTP protobuf posts to any path, as an OpenTelemetry Collector would."""
    posts: list[Received] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append(Received(self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/otlp", posts
    server.shutdown()
    server.server_close()


def value(v: AnyValue) -> object:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


def attributes(kvs) -> dict[str, object]:
    return {a.key: value(a.value) for a in kvs}


def spans_of(posts: list[Received]) -> list[dict]:
    out = []
    for post in posts:
        assert post.content_type == "application/x-protobuf"
        request = ExportTraceServiceRequest.FromString(post.body)
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(
                        {
                            "service": resource["service.name"],
                            "resource": resource,
                            "scope": ss.scope.name,
                            "traceId": s.trace_id.hex(),
                            "spanId": s.span_id.hex(),
                            "parentSpanId": s.parent_span_id.hex() or None,
                            "name": s.name,
                            "kind": s.kind,
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "attributes": attributes(s.attributes),
                            "events": [(e.name, attributes(e.attributes)) for e in s.events],
                            "status": {"code": s.status.code, "message": s.status.message},
                        }
                    )
    return out


def assert_no_secrets(posts: list[Received], store: Store, *texts: str) -> None:
    """Nothing of the presigned URLs (host, path, signature), nor the given texts, in any export."""
    assert posts
    url = store.url("input")
    forbidden = [url, store.base, url.split("?", 1)[1], "X-Amz-Signature", "0123abcd", *texts]
    for post in posts:
        for text in forbidden:
            assert text.encode() not in post.body, text


def imported(run: JobRun) -> set[str]:
    return {
        line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")
    }


def test_a_job_exports_its_span_and_step_spans_in_the_messages_trace(
    run_job, media: Media, receiver, store: Store
) -> None:
    url, posts = receiver
    run = run_job(
        media.voice_note(3.0),
        "audio",
        "ogg-opus",
        "audio/ogg",
        OTEL_EXPORTER_OTLP_ENDPOINT=url,
        PYTHONPROFILEIMPORTTIME="1",
    )
    assert run.code == 0, run.stdout
    assert "trace export failed" not in run.stdout
    assert {p.path for p in posts} == {"/otlp/v1/traces"}
    spans = spans_of(posts)
    assert {s["service"] for s in spans} == {"unmix-job"}
    assert {s["scope"] for s in spans} == {"unmix_job"}
    assert {s["traceId"] for s in spans} == {TRACE_ID}
    assert {s["kind"] for s in spans} == {1}  # internal
    [job] = [s for s in spans if s["name"] == "unmix-job"]
    assert job["parentSpanId"] == PARENT
    assert job["status"]["code"] == 1
    assert job["attributes"] == {
        "unmix.job.exit_code": 0,
        "unmix.job.input_kind": "audio",
        "unmix.job.output_format": "ogg-opus",
        "unmix.job.model": "htdemucs",
    }
    steps = {s["name"]: s for s in spans if s is not job}
    assert set(steps) == {f"unmix-job {n}" for n in STEPS}
    for step in steps.values():
        assert step["parentSpanId"] == job["spanId"]
        assert step["status"]["code"] == 1
        assert job["start"] <= step["start"] <= step["end"]
        assert step["end"] <= job["end"]
    assert_no_secrets(posts, store)
    # the SDK is loaded lazily, because an endpoint is set
    assert "opentelemetry.sdk.trace" in imported(run)


def test_without_an_endpoint_the_sdk_is_not_even_imported(run_job, media: Media) -> None:
    note = media.voice_note(2.0)
    run = run_job(note, "audio", "ogg-opus", "audio/ogg", MODEL_NAME="dfn3", PYTHONPROFILEIMPORTTIME="1")
    assert run.code == 0, run.stdout
    modules = imported(run)
    assert "unmix_job.tracing" in modules
    assert not {m for m in modules if m.split(".")[0] in ("opentelemetry", "google", "requests")}


def test_a_failed_job_marks_its_span_as_an_error(run_job, tmp_path, receiver, store: Store) -> None:
    url, posts = receiver
    corrupt = tmp_path / "corrupt.ogg"
    corrupt.write_bytes(b"OggS" + b"\x00" * 4000)
    run = run_job(corrupt, "audio", "ogg-opus", "audio/ogg", OTEL_EXPORTER_OTLP_ENDPOINT=url)
    assert run.code == 10
    spans = spans_of(posts)
    [job] = [s for s in spans if s["name"] == "unmix-job"]
    assert job["status"]["code"] == 2
    assert job["attributes"]["unmix.job.exit_code"] == 10
    assert job["attributes"]["error.type"] == "BadInput"
    assert job["events"] == [("exception", {"exception.type": "BadInput"})]
    steps = {s["name"]: s for s in spans if s is not job}
    # the steps up to the failed one, which is an error too
    assert set(steps) == {"unmix-job download", "unmix-job probe"}
    assert steps["unmix-job download"]["status"]["code"] == 1
    assert steps["unmix-job probe"]["status"]["code"] == 2
    assert steps["unmix-job probe"]["attributes"]["error.type"] == "BadInput"
    # the reason goes to the termination log, not into the trace
    assert run.termination
    assert_no_secrets(posts, store, run.termination.strip())


def test_an_errors_message_never_reaches_the_trace(run_job, media: Media, receiver, store: Store) -> None:
    # A transient failure: its message is the termination log's; the trace gets the type only.
    url, posts = receiver
    store.fail["input"] = [403]
    run = run_job(media.voice_note(2.0), "audio", "ogg-opus", "audio/ogg", OTEL_EXPORTER_OTLP_ENDPOINT=url)
    assert run.code == 1
    assert run.termination and "download failed" in run.termination
    spans = spans_of(posts)
    [job] = [s for s in spans if s["name"] == "unmix-job"]
    assert job["status"] == {"code": 2, "message": "TransferError"}
    assert job["attributes"]["error.type"] == "TransferError"
    [download] = [s for s in spans if s is not job]
    assert download["name"] == "unmix-job download"
    assert download["status"] == {"code": 2, "message": "TransferError"}
    assert download["events"] == [("exception", {"exception.type": "TransferError"})]
    assert_no_secrets(posts, store, "download failed", "403", run.termination.strip())


# The exporter alone retries for this long; a job bounded by the flush's 3 s exits long before half
# of it, however busy the machine (a bound tight around 3 s would measure the machine, not the job).
EXPORTER_TIMEOUT_SECONDS = 60


def done_to_exit_seconds(run: JobRun, exited: float) -> float:
    """From the job's last step to its exit: the flush's bound, plus up to 1 s as the log's stamps
    are whole seconds, plus the interpreter's exit (with torch loaded, on busy cores)."""
    [done] = [line for line in run.stdout.splitlines() if " done: " in line]
    return exited - calendar.timegm(time.strptime(done.split()[0], "%Y-%m-%dT%H:%M:%SZ"))


@contextmanager
def closed_port() -> Iterator[int]:
    """A port nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


@contextmanager
def silent_collector() -> Iterator[int]:
    """A port that accepts connections (the kernel does) and never reads nor answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        yield silent.getsockname()[1]


@pytest.mark.parametrize(
    ("collector", "model", "logged"),
    [
        (closed_port, "htdemucs", "trace export failed (ignored)"),
        (
            silent_collector,
            "dfn3",
            "trace export failed (ignored): the collector did not take the spans within 3 s",
        ),
    ],
    ids=["unreachable", "never-answers"],
)
def test_a_collector_that_fails_does_not_fail_or_hold_up_the_job(
    run_job, media: Media, collector, model: str, logged: str
) -> None:
    with collector() as port:
        run = run_job(
            media.voice_note(2.0),
            "audio",
            "ogg-opus",
            "audio/ogg",
            MODEL_NAME=model,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_EXPORTER_OTLP_TIMEOUT=str(EXPORTER_TIMEOUT_SECONDS),
        )
        exited = time.time()
    assert run.code == 0, run.stdout
    assert logged in run.stdout
    # retries stop at the flush's bound, though the exporter would go on retrying for a minute
    assert done_to_exit_seconds(run, exited) < EXPORTER_TIMEOUT_SECONDS / 2


def start_and_finish(env: dict[str, str], traceparent: str | None) -> None:
    trace = tracing.start(env, traceparent)
    assert trace is not None
    now = time.time_ns()
    trace.finish([("download", now, now + 1000, None)], 0, None, {"unmix.job.model": "dfn3"})


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch):
    """Sets variables in this process's environment, which is what the SDK reads; returns them."""
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_SDK_DISABLED",
    ):
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> dict[str, str]:
        for name, v in values.items():
            monkeypatch.setenv(name, v)
        return values

    return set_env


@pytest.mark.parametrize("traceparent", [None, "", "garbage", "00-" + "0" * 32 + "-" + PARENT + "-01"])
def test_without_a_valid_traceparent_the_job_starts_its_own_trace(receiver, otel_env, traceparent) -> None:
    url, posts = receiver
    start_and_finish(otel_env(OTEL_EXPORTER_OTLP_ENDPOINT=url), traceparent)
    spans = spans_of(posts)
    [job] = [s for s in spans if s["name"] == "unmix-job"]
    assert len(job["traceId"]) == 32 and job["traceId"].strip("0")
    assert job["parentSpanId"] is None
    [step] = [s for s in spans if s is not job]
    assert (step["traceId"], step["parentSpanId"]) == (job["traceId"], job["spanId"])


def test_the_standard_variables_name_the_service_and_the_endpoint(receiver, otel_env) -> None:
    url, posts = receiver
    env = otel_env(
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{url}/custom/traces",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9/unused",
        OTEL_SERVICE_NAME="unmix-job-eu",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=prod",
    )
    start_and_finish(env, f"00-{TRACE_ID}-{PARENT}-01")
    assert {p.path for p in posts} == {"/otlp/custom/traces"}
    spans = spans_of(posts)
    assert {s["service"] for s in spans} == {"unmix-job-eu"}
    assert {s["resource"]["deployment.environment"] for s in spans} == {"prod"}
    assert {s["traceId"] for s in spans} == {TRACE_ID}


def test_the_sampler_variables_are_honoured(receiver, otel_env, capsys) -> None:
    url, posts = receiver
    env = otel_env(OTEL_EXPORTER_OTLP_ENDPOINT=url, OTEL_TRACES_SAMPLER="always_off")
    start_and_finish(env, f"00-{TRACE_ID}-{PARENT}-01")
    assert posts == []
    assert "trace export failed" not in capsys.readouterr().out


def test_tracing_is_on_with_an_endpoint_only() -> None:
    assert not tracing.enabled({})
    assert not tracing.enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": " "})
    assert tracing.enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"})
    assert tracing.enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/x"})
    assert not tracing.enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/", "OTEL_SDK_DISABLED": "true"})
    assert tracing.start({}, f"00-{TRACE_ID}-{PARENT}-01") is None
