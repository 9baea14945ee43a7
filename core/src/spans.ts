// Trace context on @opentelemetry/api alone: spans, W3C traceparent in and out. Importing this never
// loads the SDK (see telemetry.ts), so a process that exports no traces does not carry it.
import { type Context, context, propagation, type Span, SpanStatusCode, TraceFlags, type Tracer, trace } from "@opentelemetry/api";

/** Whether traces are exported (the standard OTLP endpoint variables); otherwise nothing is loaded. */
export function tracingConfigured(env: Record<string, string | undefined> = process.env): boolean {
  return !!(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/** Flushes and stops the SDK the --import entry started (a no-op without one); for a clean exit. */
export async function stopTelemetry(): Promise<void> {
  const provider = trace.getTracerProvider() as { getDelegate?: () => { shutdown?: () => Promise<void> } };
  // a collector that is gone must not turn a clean shutdown into a crash
  await provider
    .getDelegate?.()
    .shutdown?.()
    .catch(() => {});
}

/**
 * The exemplar of a histogram observation: the trace and span it belongs to, when that trace is
 * sampled (else empty, and prom-client keeps no exemplar), so a slow bucket links to a trace.
 */
export function exemplar(ctx: Context = context.active()): Record<string, string> {
  const s = trace.getSpanContext(ctx);
  return s && s.traceFlags & TraceFlags.SAMPLED ? { trace_id: s.traceId, span_id: s.spanId } : {};
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
  return t.startActiveSpan(name, { attributes }, parent, (span) => endWhenSettled(span, () => fn(span)));
}

/** Awaits `fn`, records its exception (error status) on `span`, and ends `span` either way. */
export async function endWhenSettled<T>(span: Span, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
    throw err;
  } finally {
    span.end();
  }
}
