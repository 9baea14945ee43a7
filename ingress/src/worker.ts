// The message worker: a durable JetStream pull consumer ("worker" on UNMIX_INBOUND) shared by every
// replica, so it scales out by running more of them. Each message is acknowledged explicitly after
// it was handled; a failure is retried after the next delay of WORKER_BACKOFF_SECONDS, up to
// WORKER_MAX_DELIVER deliveries; then the message goes to the dead-letter stream (counted, visible,
// never silently dropped). Messages whose handler never returned (a crashed or hung replica) reach
// max_deliver on the server; its MAX_DELIVERIES advisory moves them to the dead-letter stream too.
// Meta redelivers for up to 7 days, longer than JetStream's duplicate window: a processed-ids bucket
// (hash of the wamid, TTL ≥ 7 days) drops those late copies.
// Only what the webhook signed is handled (signing.ts): anything else is dead-lettered, audited and
// counted, and nobody gets a reply. Each message's audit entries (received before it is handled,
// handled with the outcome after) must be stored before it is acknowledged: a refused write means a
// redelivery, never a message without its entries (core/src/audit.ts).

import { context } from "@opentelemetry/api";
import { auditable } from "@unmix/core/audit";
import type { Logger } from "@unmix/core/log";
import { scrubText } from "@unmix/core/privacy";
import { inSpan, tracer } from "@unmix/core/spans";
import { InboundMessage, messageRef, ReceiptMessage } from "./envelope.ts";
import type { MessageHandler, Outcome } from "./handler.ts";
import { type Metrics, typeLabel } from "./metrics.ts";
import { BUCKETS, HEADERS, type JsMsg, type KV, maxDeliveriesAdvisory, type Nats, STREAMS, type Subscription, subjects, WORKER_CONSUMER } from "./nats.ts";
import { processSpan } from "./nats-spans.ts";
import { SIGNATURE_HEADER, verifyInbound } from "./signing.ts";

export interface WorkerOptions {
  concurrency: number;
  maxDeliver: number;
  /** Delay before redelivery n (1-based) is backoffMs[n-1]; the last one repeats. */
  backoffMs: number[];
  ackWaitMs: number;
  /** INBOUND_SIGNING_KEY: the key the webhook signs inbound messages with. */
  signingKey: string;
  /**
   * How long a handler may keep a message to itself by telling JetStream it is still working
   * (default 2 minutes); after that the ack wait runs out and the message is redelivered, so a
   * hung handler cannot hold a message forever.
   */
  keepAliveMaxMs?: number;
}

export interface WorkerDeps {
  nats: Nats;
  handler: MessageHandler;
  metrics: Metrics;
  log: Logger;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Tries to move a message the server gave up on (5, 10, 15, 20 s apart). */
const DEAD_LETTER_ATTEMPTS = 5;

export class Worker {
  private readonly d: WorkerDeps;
  private readonly o: WorkerOptions;
  private readonly inFlight = new Set<Promise<void>>();
  private stopping = false;
  private loop?: Promise<void>;
  private messages?: { stop(): void };
  private advisories?: Subscription;
  private processed?: KV;

  constructor(d: WorkerDeps, o: WorkerOptions) {
    this.d = d;
    this.o = o;
  }

  async start(): Promise<void> {
    this.processed = await this.d.nats.kv(BUCKETS.processed);
    // every replica listens, one (queue group) moves each given-up message
    this.advisories = this.d.nats.nc.subscribe(maxDeliveriesAdvisory(STREAMS.inbound, WORKER_CONSUMER), {
      queue: "unmix-deadletter",
      callback: (err, msg) => {
        if (err) return;
        const advisory = msg.json<{ stream_seq: number; deliveries: number }>();
        // no advisory comes again for it: retry a few times (e.g. the audit stream refused its entry)
        const attempt = (n: number): void =>
          void this.deadLetterBySeq(advisory.stream_seq, advisory.deliveries).catch((e) => {
            this.d.log.error({ err: scrubError(e), seq: advisory.stream_seq, attempt: n }, "could not move a message to the dead-letter stream");
            if (n < DEAD_LETTER_ATTEMPTS && !this.stopping) setTimeout(() => attempt(n + 1), 5000 * n).unref();
          });
        attempt(1);
      },
    });
    const consumer = await this.d.nats.js.consumers.get(STREAMS.inbound, WORKER_CONSUMER);
    this.loop = (async () => {
      while (!this.stopping) {
        try {
          const messages = await consumer.consume({ max_messages: this.o.concurrency });
          this.messages = messages;
          for await (const msg of messages) {
            if (this.stopping) {
              msg.nak(); // give it back at once to a replica that keeps running
              continue;
            }
            while (this.inFlight.size >= this.o.concurrency) await Promise.race(this.inFlight);
            const work = processSpan(msg, WORKER_CONSUMER, () => this.process(msg)).finally(() => this.inFlight.delete(work));
            this.inFlight.add(work);
          }
        } catch (err) {
          if (this.stopping) break;
          this.d.log.warn({ err }, "consuming stopped; starting again");
          await sleep(1000);
        }
      }
    })();
  }

  /** Stops pulling, hands back what was pulled but not started, and waits for the rest to finish. */
  async stop(timeoutMs = 25_000): Promise<void> {
    this.stopping = true;
    this.messages?.stop();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([Promise.all([this.loop, ...this.inFlight]), deadline]);
    clearTimeout(timer);
    this.advisories?.unsubscribe();
  }

  private delayFor(deliveryCount: number): number {
    const list = this.o.backoffMs;
    return list[Math.min(deliveryCount, list.length) - 1] ?? 1000;
  }

  private async process(msg: JsMsg): Promise<void> {
    const { metrics, log } = this.d;
    const started = performance.now();
    metrics.inFlight.inc();
    // redeliveries include their back-off: only the first delivery measures the queue
    if (msg.info.deliveryCount === 1) metrics.queueWait.observe(Math.max(0, Date.now() - msg.info.timestampNanos / 1e6) / 1000);
    // tell JetStream we are still at it, well inside the ack wait (for a bounded time)
    const keepAliveUntil = Date.now() + (this.o.keepAliveMaxMs ?? 120_000);
    const keepAlive = setInterval(
      () => (Date.now() < keepAliveUntil ? msg.working() : clearInterval(keepAlive)),
      Math.max(250, Math.floor(this.o.ackWaitMs / 3)),
    );
    let type = "other";
    let ref = "";
    try {
      const msgId = msg.headers?.get(HEADERS.msgId) || undefined;
      const signature = verifyInbound(this.o.signingKey, msg.subject, msgId, msg.data, msg.headers?.get(SIGNATURE_HEADER) || undefined);
      if (signature !== "valid") {
        // not from our webhook: never handled, never answered
        log.warn({ seq: msg.seq, signature }, "inbound message not signed by the webhook: dead-lettered");
        await this.deadLetter(msg, `${signature} inbound message`, signature);
        msg.term();
        return;
      }
      if (msg.subject === subjects.receipts) {
        type = "receipt";
        await this.confirmReply(msg);
        return;
      }
      let m: InboundMessage;
      try {
        m = InboundMessage.parse(JSON.parse(msg.string()));
      } catch (err) {
        // retrying cannot fix a message that does not parse
        await this.deadLetter(msg, `malformed: ${(err as Error).message}`, "malformed");
        msg.term();
        return;
      }
      type = typeLabel(m.type);
      ref = messageRef(m.id);
      const processed = this.processed as KV;
      const seen = await processed.get(ref);
      if (seen && seen.operation === "PUT") {
        // JetStream's redelivery after a crash between recording and acknowledging: its entry may be
        // missing (written at most once: deduplicated). Meta's late copies are first deliveries.
        if (msg.info.redelivered) await this.d.nats.audit({ event: "handled", ref, outcome: seen.string(), type });
        metrics.handled.inc({ type, outcome: "redelivery_dropped" });
        await msg.ackAck();
        return;
      }
      await this.d.nats.audit({ event: "received", ref, type, ...auditable(m.timestamp) });
      const outcome: Outcome = await inSpan(
        tracer("unmix-ingress"),
        "unmix.worker.handle",
        context.active(),
        { "unmix.message.ref": ref, "unmix.message.type": type },
        () => this.d.handler.handle(m, ref),
      );
      await processed.put(ref, outcome);
      await this.d.nats.audit({ event: "handled", ref, outcome, type });
      await msg.ackAck();
      metrics.handled.inc({ type, outcome });
      metrics.handleDuration.observe({ outcome }, (performance.now() - started) / 1000);
      log.debug({ ref, type, outcome }, "handled");
    } catch (err) {
      const deliveries = msg.info.deliveryCount;
      if (deliveries >= this.o.maxDeliver) {
        log.error({ ref, type, deliveries, err: scrubError(err) }, "giving up on a message after its last delivery");
        try {
          await this.deadLetter(msg, (err as Error).message, "failed");
          msg.term();
        } catch (dlErr) {
          // the server still holds it: its MAX_DELIVERIES advisory moves it later
          log.error({ ref, err: scrubError(dlErr) }, "could not dead-letter a message");
        }
      } else {
        metrics.failures.inc();
        log.warn({ ref, type, deliveries, err: scrubError(err) }, "handling failed; will retry");
        msg.nak(this.delayFor(deliveries));
      }
      metrics.handleDuration.observe({ outcome: "failed" }, (performance.now() - started) / 1000);
    } finally {
      clearInterval(keepAlive);
      metrics.inFlight.dec();
    }
  }

  /** A reply's receipt: recorded on its SeparationJob (failures are retried like any message's). */
  private async confirmReply(msg: JsMsg): Promise<void> {
    let body: unknown;
    try {
      body = JSON.parse(msg.string());
    } catch {
      body = undefined;
    }
    const r = ReceiptMessage.safeParse(body);
    if (!r.success) {
      // retrying cannot fix it
      await this.deadLetter(msg, `malformed receipt: ${r.error.message}`, "malformed");
      msg.term();
      return;
    }
    const outcome = await this.d.handler.confirmReply(r.data);
    await msg.ackAck();
    this.d.metrics.handled.inc({ type: "receipt", outcome });
    if (outcome === "recorded")
      this.d.log.info({ job: r.data.job, status: r.data.status }, "reply receipt recorded: a reply whose outcome was open is confirmed");
  }

  private async deadLetter(msg: JsMsg, reason: string, kind: string): Promise<void> {
    await this.publishDeadLetter(msg.subject, msg.data, msg.headers?.get(HEADERS.msgId) ?? String(msg.seq), msg.info.deliveryCount, reason, kind);
  }

  private async deadLetterBySeq(seq: number, deliveries: number): Promise<void> {
    const jsm = this.d.nats.jsm;
    let stored: Awaited<ReturnType<typeof jsm.streams.getMessage>>;
    try {
      stored = await jsm.streams.getMessage(STREAMS.inbound, { seq });
    } catch {
      return; // already handled (acked, terminated or moved by another replica)
    }
    await this.publishDeadLetter(
      stored.subject,
      stored.data,
      stored.header.get(HEADERS.msgId) || String(seq),
      deliveries,
      "no acknowledgement after the last delivery",
      "unacknowledged",
    );
    await jsm.streams.deleteMessage(STREAMS.inbound, seq, false).catch(() => {});
  }

  private async publishDeadLetter(subject: string, data: Uint8Array, msgId: string, deliveries: number, reason: string, kind: string): Promise<void> {
    const userKey = subject.split(".").at(-1) ?? "unknown";
    const ref = messageRef(msgId);
    const ack = await this.d.nats.publish(subjects.deadLetter(userKey), data, {
      msgId: `dead-letter.${ref}`,
      headers: { "Unmix-Reason": scrubText(reason).slice(0, 512), "Unmix-Deliveries": String(deliveries), "Unmix-Ref": ref },
    });
    if (!ack.duplicate) this.d.metrics.deadLettered.inc({ reason: kind });
    // also after a duplicate: a retry after a refused audit write must still leave its entry
    await this.d.nats.audit({ event: "dead-lettered", ref, reason: kind });
  }
}

function scrubError(err: unknown) {
  const e = err as Error;
  return { type: e?.name, message: scrubText(String(e?.message ?? err)) };
}
