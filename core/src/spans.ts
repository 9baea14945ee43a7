// Trace context on @opentelemetry/api alone: spans, W3C traceparent in and out. Importing this never
// loads the SDK (see telemetry.ts), so a process that exports no traces does not carry it.
import { type Context, context, propagation, type Span, SpanStatusCode, type Tracer, trace } from "@opentelemetry/api";

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
