// OpenTelemetry for every service: one NodeSDK per process exporting OTLP/HTTP, W3C trace context
// carried across NATS headers, Kubernetes annotations and the job pod's TRACEPARENT variable, so one
// message is one trace end to end.
import { type Context, context, propagation, type Span, SpanStatusCode, type Tracer, trace } from "@opentelemetry/api";
import { getNodeAutoInstrumentations } from "@opentelemetry/auto-instrumentations-node";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { NodeSDK } from "@opentelemetry/sdk-node";

export interface Telemetry {
  shutdown(): Promise<void>;
}

/**
 * Starts tracing when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set; otherwise a no-op,
 * so tests and local runs without a collector pay nothing.
 */
export function startTelemetry(serviceName: string, env: Record<string, string | undefined> = process.env): Telemetry {
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT && !env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return { shutdown: async () => {} };
  const sdk = new NodeSDK({
    serviceName,
    traceExporter: new OTLPTraceExporter(),
    instrumentations: [
      getNodeAutoInstrumentations({
        "@opentelemetry/instrumentation-fs": { enabled: false },
        "@opentelemetry/instrumentation-dns": { enabled: false },
        "@opentelemetry/instrumentation-net": { enabled: false },
      }),
    ],
  });
  sdk.start();
  // a collector that is gone must not turn a clean shutdown into a crash
  return { shutdown: () => sdk.shutdown().catch(() => {}) };
}

export function tracer(name: string): Tracer {
  return trace.getTracer(name);
}

/** The W3C traceparent of `ctx` (the active context by default), or undefined when not tracing. */
export function currentTraceparent(ctx: Context = context.active()): string | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier.traceparent;
}

/** A context whose parent is the given traceparent (a no-op context when it is absent). */
export function contextFromTraceparent(traceparent: string | undefined): Context {
  if (!traceparent) return context.active();
  return propagation.extract(context.active(), { traceparent });
}

/** Runs `fn` in a span that records an exception and ends when `fn` settles. */
export async function inSpan<T>(
  t: Tracer,
  name: string,
  parent: Context,
  attributes: Record<string, string | number | boolean>,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  return t.startActiveSpan(name, { attributes }, parent, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}
