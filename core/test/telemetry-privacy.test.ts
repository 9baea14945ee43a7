// What leaves the process in spans and on /metrics: an error that quotes a phone number or a
// message id is exported masked, as in the logs; a scraper asking for OpenMetrics gets the
// exemplars that link a latency bucket to its trace, and any other gets the Prometheus text as before.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { exposition, histogramWithExemplars } from "@unmix/core/metrics-exposition";
import { privateExporter } from "@unmix/core/span-privacy";
import { Counter, Registry } from "prom-client";

describe("spans leave the process scrubbed", () => {
  test("an exception recorded on a span loses the number and the message id it quoted", async () => {
    const sink = new InMemorySpanExporter();
    const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: privateExporter(sink) })] });
    const span = provider.getTracer("test").startSpan("unmix.worker.handle", { attributes: { "unmix.note": "from +4917623456789" } });
    const err = new Error("could not reply to 4917623456789 quoting wamid.HBgLNDkxNzYyMzQ1Njc4ORUCABIYFDNBMEI=");
    span.recordException(err);
    span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
    span.end();
    await provider.forceFlush();
    const [exported] = sink.getFinishedSpans();
    assert.ok(exported);
    const text = JSON.stringify({ attributes: exported.attributes, events: exported.events, status: exported.status });
    for (const secret of ["4917623456789", "wamid."]) assert.ok(!text.includes(secret), `${secret} in ${text}`);
    assert.equal(exported.status.message, "could not reply to 49********789 quoting [message id]");
    assert.equal(exported.events[0]?.attributes?.["exception.message"], "could not reply to 49********789 quoting [message id]");
    assert.equal(exported.attributes["unmix.note"], "from 49********789");
  });
});

describe("/metrics", () => {
  const registry = new Registry();
  const requests = new Counter({ name: "unmix_webhook_requests_total", help: "requests", labelNames: ["outcome"], registers: [registry] });
  const latency = histogramWithExemplars(registry, { name: "unmix_webhook_request_seconds", help: "latency", labelNames: ["outcome"], buckets: [0.01, 0.1] });
  requests.inc({ outcome: "ok" });
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const exemplar: Record<string, string> = { trace_id: traceId, span_id: "00f067aa0ba902b7" };
  latency.observe({ labels: { outcome: "ok" }, value: 0.05, exemplarLabels: exemplar });

  test("asked for OpenMetrics, the slow bucket names the trace of its observation", async () => {
    const { contentType, body } = await exposition(registry, "application/openmetrics-text; version=1.0.0,text/plain;q=0.5");
    assert.match(contentType, /^application\/openmetrics-text/);
    assert.match(
      body,
      new RegExp(`^unmix_webhook_request_seconds_bucket\\{le="0.1",outcome="ok"\\} 1 # \\{trace_id="${traceId}",span_id="00f067aa0ba902b7"\\} 0.05 `, "m"),
    );
    assert.match(body, /^unmix_webhook_requests_total\{outcome="ok"\} 1$/m);
    assert.match(body, /# EOF\n$/);
  });

  test("any other scraper gets the Prometheus text format, counters named as ever, also after an OpenMetrics scrape", async () => {
    await exposition(registry, "application/openmetrics-text");
    const { contentType, body } = await exposition(registry, "text/plain");
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
    assert.match(body, /^# TYPE unmix_webhook_requests_total counter$/m);
    assert.match(body, /^unmix_webhook_requests_total\{outcome="ok"\} 1$/m);
    assert.ok(!body.includes("trace_id"), "no exemplar in the Prometheus format");
  });
});
