// The WhatsApp webhook (Fastify plugin): GET /webhook answers Meta's verification handshake; POST
// /webhook checks X-Hub-Signature-256 over the exact raw bytes, validates the envelope, publishes
// every message to JetStream (Nats-Msg-Id = wamid, signed for the worker: signing.ts), every status
// receipt and error to the audit stream and each reply's first confirming status to the worker
// (signed too), and answers 200 only once JetStream acknowledged all of them: 503 otherwise, so Meta
// delivers again. Nothing is touched before the signature matched.
import { timingSafeEqual } from "node:crypto";
import { context, trace } from "@opentelemetry/api";
import { ReceiptStatus } from "@unmix/api/separationjob";
import { auditable } from "@unmix/core/audit";
import { userKey } from "@unmix/core/privacy";
import { contextFromTraceparent, exemplar, inSpan, tracer } from "@unmix/core/spans";
import { verifyWebhookSignature } from "@unmix/core/whatsapp";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { EnvelopeError, type Extracted, extract, type ReceiptMessage } from "./envelope.ts";
import { typeLabel } from "./metrics.ts";
import { NatsUnavailableError, subjects } from "./nats.ts";
import { SIGNATURE_HEADER, signInbound } from "./signing.ts";

export interface WebhookOptions {
  appSecret: string;
  verifyToken: string;
  userKeySecret: string;
  /** INBOUND_SIGNING_KEY: what the worker checks each inbound message's signature with. */
  signingKey: string;
  bodyLimit: number;
  publishTimeoutMs: number;
}

const OUTCOMES: Record<number, string> = {
  200: "ok",
  400: "bad_json",
  401: "unauthorized",
  413: "too_large",
  415: "unsupported_media_type",
  422: "bad_shape",
  503: "unavailable",
};

const VerifyQuery = {
  type: "object",
  properties: {
    "hub.mode": { type: "string", maxLength: 64 },
    "hub.verify_token": { type: "string", maxLength: 1024 },
    "hub.challenge": { type: "string", maxLength: 1024 },
  },
} as const;

type VerifyRequest = FastifyRequest<{ Querystring: { "hub.mode"?: string; "hub.verify_token"?: string; "hub.challenge"?: string } }>;

const STATUSES = new Set(["sent", "delivered", "read", "failed", "played"]);

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export const webhookRoutes: FastifyPluginAsync<WebhookOptions> = async (app, o) => {
  // the exact bytes Meta signed: never parse and re-serialise before the signature is checked
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer", bodyLimit: o.bodyLimit }, (_req, body, done) => done(null, body));

  // label children resolved once per outcome, not hashed on every request
  const perOutcome = new Map<number, { count: { inc(): void }; labels: { outcome: string } }>();
  app.addHook("onResponse", async (req, reply) => {
    if (req.method !== "POST") return;
    let m = perOutcome.get(reply.statusCode);
    if (!m) {
      const outcome = OUTCOMES[reply.statusCode] ?? `http_${reply.statusCode}`;
      m = { count: app.metrics.webhookRequests.labels(outcome), labels: { outcome } };
      perOutcome.set(reply.statusCode, m);
    }
    m.count.inc();
    // the request's trace as the exemplar: a slow bucket links to a trace that shows why
    app.metrics.webhookDuration.observe({ labels: m.labels, value: reply.elapsedTime / 1000, exemplarLabels: exemplar() });
  });

  // the keyed hash of a sender, remembered for the senders seen lately (bounded)
  const keys = new Map<string, string>();
  const keyOf = (id: string) => {
    let k = keys.get(id);
    if (k === undefined) {
      if (keys.size >= 10_000) keys.clear();
      k = userKey(id, o.userKeySecret);
      keys.set(id, k);
    }
    return k;
  };

  app.get("/webhook", { schema: { querystring: VerifyQuery } }, async (req: VerifyRequest, reply) => {
    const q = req.query;
    if (
      q["hub.mode"] === "subscribe" &&
      q["hub.verify_token"] !== undefined &&
      q["hub.challenge"] !== undefined &&
      sameSecret(q["hub.verify_token"], o.verifyToken)
    ) {
      return reply.code(200).type("text/plain; charset=utf-8").send(q["hub.challenge"]);
    }
    req.log.warn("webhook verification refused");
    return reply.code(403).type("text/plain; charset=utf-8").send("verification failed");
  });

  const checkSignature = async (req: FastifyRequest, reply: FastifyReply) => {
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const header = req.headers["x-hub-signature-256"];
    if (!verifyWebhookSignature(raw, typeof header === "string" ? header : undefined, o.appSecret)) {
      req.log.warn({ signature: header === undefined ? "missing" : "wrong" }, "webhook rejected: signature does not match the body");
      return reply.code(401).type("text/plain; charset=utf-8").send("invalid signature");
    }
  };

  app.post("/webhook", { preValidation: checkSignature }, async (req, reply) => {
    let body: unknown;
    try {
      body = JSON.parse((req.body as Buffer).toString("utf8"));
    } catch {
      return reply.code(400).type("text/plain; charset=utf-8").send("body is not JSON");
    }
    let extracted: Extracted;
    try {
      extracted = extract(body);
    } catch (err) {
      if (!(err instanceof EnvelopeError)) throw err;
      req.log.warn({ issues: err.issues }, "webhook rejected: not a WhatsApp envelope");
      return reply.code(422).send({ error: "not a WhatsApp webhook", issues: err.issues });
    }
    try {
      // one span per webhook, under the request's server span, which continued the caller's trace
      // context when an edge proxy sent one (read here when no HTTP instrumentation runs); each
      // publish carries it on in the message's headers
      const header = req.headers.traceparent;
      const parent = trace.getSpan(context.active()) ? context.active() : contextFromTraceparent(typeof header === "string" ? header : undefined);
      const attributes = { "unmix.webhook.messages": extracted.messages.length, "unmix.webhook.statuses": extracted.statuses.length };
      await inSpan(tracer("unmix-ingress"), "unmix.webhook.publish", parent, attributes, () => publishAll(extracted, req));
    } catch (err) {
      if (!(err instanceof NatsUnavailableError)) throw err;
      req.log.error({ err: { message: err.message } }, "JetStream did not take the webhook: answering 503 so Meta delivers it again");
      return reply.code(503).header("retry-after", "5").type("text/plain; charset=utf-8").send("try again");
    }
    return reply.code(200).type("text/plain; charset=utf-8").send("ok");
  });

  async function publishAll(x: Extracted, req: FastifyRequest): Promise<void> {
    const { nats, metrics } = app;
    const timed = async <T>(p: Promise<T>) => {
      const end = metrics.publishDuration.startTimer();
      try {
        return await p;
      } finally {
        end();
      }
    };
    const published = x.messages.map(async (m) => {
      const key = keyOf((m.sender.waId ?? m.sender.userId) as string);
      const subject = subjects.inbound(key);
      const data = JSON.stringify(m);
      const headers = { [SIGNATURE_HEADER]: signInbound(o.signingKey, subject, m.id, data) };
      const ack = await timed(nats.publish(subject, data, { msgId: m.id, headers, timeoutMs: o.publishTimeoutMs }));
      metrics.inboundMessages.inc({ type: typeLabel(m.type), duplicate: String(ack.duplicate) });
      for (const code of m.errorCodes ?? []) metrics.webhookErrors.inc({ code: String(code) });
    });
    const receipts = x.statuses.map(async (s) => {
      await timed(
        nats.audit(
          { event: "status", ref: s.ref, status: STATUSES.has(s.status) ? s.status : "other", ...auditable(s.timestamp, s.errorCodes) },
          `${s.ref}.${s.status}`,
          { timeoutMs: o.publishTimeoutMs },
        ),
      );
      metrics.statuses.inc({ status: STATUSES.has(s.status) ? s.status : "other" });
      for (const code of s.errorCodes) metrics.webhookErrors.inc({ code: String(code) });
    });
    // a status that proves a reply went out, for the worker to record on its SeparationJob: the
    // first per job is enough (Nats-Msg-Id), so `delivered` after `sent` costs no second write
    const confirmations = x.statuses.flatMap((s) => {
      const status = ReceiptStatus.safeParse(s.status);
      if (!s.job || !status.success) return [];
      const receipt: ReceiptMessage = { v: 1, job: s.job, status: status.data, timestamp: s.timestamp };
      const data = JSON.stringify(receipt);
      const msgId = `receipt.${s.job}`;
      const headers = { [SIGNATURE_HEADER]: signInbound(o.signingKey, subjects.receipts, msgId, data) };
      return [timed(nats.publish(subjects.receipts, data, { msgId, headers, timeoutMs: o.publishTimeoutMs }))];
    });
    const errors = x.errors.map(async (e) => {
      // Meta's title is free text: only the code goes into the trail
      await timed(nats.audit({ event: "webhook-error", code: e.code }, undefined, { timeoutMs: o.publishTimeoutMs }));
      metrics.webhookErrors.inc({ code: String(e.code) });
    });
    const results = await Promise.allSettled([...published, ...receipts, ...confirmations, ...errors]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    req.log.debug({ messages: x.messages.length, statuses: x.statuses.length, errors: x.errors.length }, "webhook accepted");
  }
};
