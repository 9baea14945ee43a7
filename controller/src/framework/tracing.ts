// Trace context for reconciles, on @opentelemetry/api alone: the SDK is started by the --import
// entry (src/telemetry.ts) only when an OTLP endpoint is configured, so a controller that does not
// export traces does not carry the SDK and its instrumentations in memory.
import { type Span, trace } from "@opentelemetry/api";
import { contextFromTraceparent, currentTraceparent, exemplar, inSpan as spanIn } from "@unmix/core/spans";

const tracer = trace.getTracer("unmix-controller");

export { currentTraceparent, exemplar };

/** The trace id of a W3C traceparent, for log lines when no SDK is running. */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  return /^[\da-f]{2}-([\da-f]{32})-[\da-f]{16}-[\da-f]{2}$/.exec(traceparent ?? "")?.[1];
}

/** Runs `fn` in a span whose parent is `traceparent` (the message's trace). */
export function inSpan<T>(name: string, traceparent: string | undefined, attributes: Record<string, string>, fn: (span: Span) => Promise<T>): Promise<T> {
  return spanIn(tracer, name, contextFromTraceparent(traceparent), attributes, fn);
}
