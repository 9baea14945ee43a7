// The last stop before spans leave the process: every string in a span's attributes, events
// (exception messages and stack traces included) and status message is scrubbed as log lines are
// (privacy.ts), so an error that quotes a phone number or a message id does not export it.
import type { Attributes, AttributeValue } from "@opentelemetry/api";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace";
import { scrubText } from "./privacy.ts";

const scrubAttribute = (v: AttributeValue | undefined): AttributeValue | undefined => {
  if (typeof v === "string") return scrubText(v);
  if (Array.isArray(v)) return v.map((x) => (typeof x === "string" ? scrubText(x) : x)) as AttributeValue;
  return v;
};

function scrubAttributes(a: Attributes | undefined): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(a ?? {})) out[k] = scrubAttribute(v);
  return out;
}

// every string scrubText would change has a run of 7 digits or a wamid: most spans have neither,
// and are exported as they are, without a copy
const SUSPECT = /\d{7}|wamid\./;
const suspect = (a: Attributes | undefined) =>
  Object.values(a ?? {}).some((v) => (typeof v === "string" ? SUSPECT.test(v) : Array.isArray(v) && v.some((x) => typeof x === "string" && SUSPECT.test(x))));

function scrubSpan(s: ReadableSpan): ReadableSpan {
  if (!SUSPECT.test(s.status.message ?? "") && !suspect(s.attributes) && !s.events.some((e) => suspect(e.attributes))) return s;
  return {
    name: s.name,
    kind: s.kind,
    spanContext: () => s.spanContext(),
    ...(s.parentSpanContext ? { parentSpanContext: s.parentSpanContext } : {}),
    startTime: s.startTime,
    endTime: s.endTime,
    status: s.status.message === undefined ? s.status : { ...s.status, message: scrubText(s.status.message) },
    attributes: scrubAttributes(s.attributes),
    links: s.links,
    events: s.events.map((e) => ({ ...e, attributes: scrubAttributes(e.attributes) })),
    duration: s.duration,
    ended: s.ended,
    resource: s.resource,
    instrumentationScope: s.instrumentationScope,
    droppedAttributesCount: s.droppedAttributesCount,
    droppedEventsCount: s.droppedEventsCount,
    droppedLinksCount: s.droppedLinksCount,
  };
}

/** Wraps an exporter so that what it sends is scrubbed. */
export function privateExporter(inner: SpanExporter): SpanExporter {
  return {
    export: (spans: ReadableSpan[], done: Parameters<SpanExporter["export"]>[1]) => inner.export(spans.map(scrubSpan), done),
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
  };
}
