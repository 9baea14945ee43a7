// pino loggers for every service: JSON lines, the active trace id on each line, and every
// phone-number-shaped string masked before it is written.
import { trace } from "@opentelemetry/api";
import { type DestinationStream, type Logger, type LoggerOptions, pino } from "pino";
import { scrubText, scrubValue } from "./privacy.ts";

export type { Logger };

export function createLogger(name: string, options: LoggerOptions = {}, destination?: DestinationStream): Logger {
  return pino(
    {
      name,
      level: process.env.LOG_LEVEL ?? "info",
      ...options,
      // known sensitive keys go entirely; anything else phone-shaped is masked below
      redact: {
        paths: ["from", "wa_id", "waId", "to", "phone", "*.from", "*.wa_id", "*.waId", "*.to", "*.phone", "sender.waId", "spec.sender"],
        censor: "[redacted]",
      },
      formatters: {
        log(record) {
          const span = trace.getActiveSpan()?.spanContext();
          const scrubbed = scrubValue(record) as Record<string, unknown>;
          return span ? { ...scrubbed, trace_id: span.traceId, span_id: span.spanId } : scrubbed;
        },
      },
      hooks: {
        logMethod(args, method) {
          const scrubbed = args.map((a) => (typeof a === "string" ? scrubText(a) : a)) as Parameters<typeof method>;
          return method.apply(this, scrubbed);
        },
      },
    },
    destination,
  );
}
