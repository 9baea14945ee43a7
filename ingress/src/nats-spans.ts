// JetStream spans after OpenTelemetry's messaging conventions (no maintained instrumentation covers
// the `nats` package): a PRODUCER span per publish, whose context travels in the message's headers,
// and a CONSUMER span per delivery the worker processes, its child. Subjects carry the keyed hash of
// the user, never a number; the span name uses the subject's template (unmix.inbound.{user}) so it
// stays a closed set. The message id is left out: Nats-Msg-Id is the wamid, which embeds the number.
import { context, propagation, SpanKind } from "@opentelemetry/api";
import { endWhenSettled, tracer } from "@unmix/core/spans";
import type { JsMsg, MsgHdrs } from "nats";

const t = tracer("unmix-ingress-nats");

/** unmix.inbound.u3f… → unmix.inbound.{user}; audit and receipt subjects name no user and stay as they are. */
export const subjectTemplate = (subject: string) => subject.replace(/^(unmix\.(?:inbound|deadletter))\.(?!receipts$).+$/, "$1.{user}");

const attributes = (subject: string, operation: "publish" | "process", bytes: number) => ({
  "messaging.system": "nats",
  "messaging.destination.name": subject,
  "messaging.destination.template": subjectTemplate(subject),
  "messaging.operation.name": operation,
  "messaging.operation.type": operation === "publish" ? "send" : "process",
  "messaging.message.body.size": bytes,
});

/** Runs a publish in a PRODUCER span and puts that span's trace context into the message's headers. */
export function publishSpan<T>(subject: string, bytes: number, headers: MsgHdrs, publish: () => Promise<T>): Promise<T> {
  return t.startActiveSpan(`publish ${subjectTemplate(subject)}`, { kind: SpanKind.PRODUCER, attributes: attributes(subject, "publish", bytes) }, (span) => {
    propagation.inject(context.active(), headers, { set: (h, k, v) => h.set(k, v) });
    return endWhenSettled(span, publish);
  });
}

/** Runs the processing of a delivery in a CONSUMER span, child of the context its publisher sent. */
export function processSpan<T>(msg: JsMsg, consumer: string, process: () => Promise<T>): Promise<T> {
  const parent = propagation.extract(context.active(), msg.headers, {
    get: (h, k) => h?.get(k) || undefined,
    keys: (h) => h?.keys() ?? [],
  });
  const name = `process ${subjectTemplate(msg.subject)}`;
  const attrs = { ...attributes(msg.subject, "process", msg.data.length), "messaging.consumer.group.name": consumer };
  return t.startActiveSpan(name, { kind: SpanKind.CONSUMER, attributes: attrs }, parent, (span) => endWhenSettled(span, process));
}
