// Trace context for reconciles, on @opentelemetry/api alone: the SDK (@unmix/core/telemetry's
// startTelemetry) is loaded by main only when an OTLP endpoint is configured, so a controller that
// does not export traces does not carry the SDK and its instrumentations in memory.
import { context, propagation, type Span, SpanStatusCode, trace } from "@opentelemetry/api";

const tracer = trace.getTracer("unmix-controller");

/** The W3C traceparent of the active span, or undefined when not tracing. */
export function currentTraceparent(): string | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

/** The trace id of a W3C traceparent, for log lines when no SDK is running. */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  return /^[\da-f]{2}-([\da-f]{32})-[\da-f]{16}-[\da-f]{2}$/.exec(traceparent ?? "")?.[1];
}

/** Runs `fn` in a span whose parent is `traceparent` (the message's trace). */
export async function inSpan<T>(name: string, traceparent: string | undefined, attributes: Record<string, string>, fn: (span: Span) => Promise<T>): Promise<T> {
  const parent = traceparent ? propagation.extract(context.active(), { traceparent }) : context.active();
  return tracer.startActiveSpan(name, { attributes }, parent, async (span) => {
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
