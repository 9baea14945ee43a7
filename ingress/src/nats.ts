// NATS JetStream behind one narrow module: the connection (reconnecting forever), the streams,
// consumer and key-value buckets the product relies on (created or updated idempotently at start-up
// by whichever process comes first), publishing with a deduplication id and headers, and the audit
// stream writer. Business rules use this, never the client library's topology calls.
import { AUDIT_STREAM, AUDIT_SUBJECTS, type AuditFields, auditLog } from "@unmix/core/audit";
import { type NatsIdentity, natsAuth } from "@unmix/core/nats-config";
import {
  AckPolicy,
  connect,
  createInbox,
  DeliverPolicy,
  DiscardPolicy,
  Events,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type KV,
  type MsgHdrs,
  type NatsConnection,
  nanos,
  headers as natsHeaders,
  type PubAck,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type Subscription,
} from "nats";
import { publishSpan } from "./nats-spans.ts";

export { NatsConfig } from "@unmix/core/nats-config";
export type { JetStreamClient, JetStreamManager, JsMsg, KV, MsgHdrs, NatsConnection, PubAck, Subscription };
export { AckPolicy, DeliverPolicy };

/** Stream names. */
export const STREAMS = {
  /** Inbound WhatsApp messages between the webhook and the worker (work queue). */
  inbound: "UNMIX_INBOUND",
  /** What happened to each message, status receipts, webhook errors, admin actions (core/src/audit.ts). */
  audit: AUDIT_STREAM,
  /** Messages the worker gave up on, kept visible for an operator. */
  deadLetter: "UNMIX_DEADLETTER",
  /** The recipients of each policy broadcast still to be sent (work queue; broadcast.ts). */
  broadcast: "UNMIX_BROADCAST",
} as const;

/** Subjects carry the keyed hash of the user, so a user's pending entries can be purged by subject. */
export const subjects = {
  inbound: (userKey: string) => `unmix.inbound.${userKey}`,
  /** Status webhooks that confirm a reply, for the worker to record on the SeparationJob (no user in them). */
  receipts: "unmix.inbound.receipts",
  deadLetter: (userKey: string) => `unmix.deadletter.${userKey}`,
  /** One recipient of a broadcast campaign; `campaign` alone (userKey "*") filters its remaining recipients. */
  broadcast: (campaign: string, userKey: string) => `unmix.broadcast.${campaign}.${userKey}`,
};

/** Key-value bucket names. */
export const BUCKETS = {
  processed: "unmix_processed",
  optOut: "unmix_optout",
  rateLimit: "unmix_ratelimit",
  active: "unmix_active",
  broadcasts: "unmix_broadcasts",
} as const;

export const WORKER_CONSUMER = "worker";
export const BROADCAST_CONSUMER = "broadcaster";

/** Headers the webhook sets on each inbound message (the trace context comes from nats-spans.ts). */
export const HEADERS = { msgId: "Nats-Msg-Id" } as const;

export interface Topology {
  replicas: number;
  /** How long an unhandled inbound message is kept (Meta redelivers for up to 7 days anyway). */
  inboundMaxAgeMs: number;
  /** JetStream's duplicate window for Nats-Msg-Id; the processed-ids bucket covers the time after it. */
  duplicateWindowMs: number;
  auditMaxAgeMs: number;
  deadLetterMaxAgeMs: number;
  processedTtlMs: number;
  activeTtlMs: number;
  rateLimitTtlMs: number;
  /** How long a broadcast campaign and its per-recipient outcomes are kept after their last change. */
  broadcastTtlMs: number;
  /** The worker's durable consumer; left as it is when absent (the webhook alone does not own it). */
  consumer?: {
    ackWaitMs: number;
    maxDeliver: number;
    /** Redelivery delays after a missed ack, in order; at most maxDeliver entries. */
    backoffMs: number[];
    maxAckPending: number;
  };
}

export interface PublishOptions {
  /** Deduplication id (Nats-Msg-Id): a second publish within the duplicate window is dropped. */
  msgId?: string;
  headers?: Record<string, string | undefined>;
  timeoutMs?: number;
}

export class NatsUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NatsUnavailableError";
  }
}

export interface Nats {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /** False while the client is disconnected (between a disconnect and a reconnect). */
  connected(): boolean;
  /** Round trip to the server and a JetStream account call; false when either fails. */
  ping(timeoutMs?: number): Promise<boolean>;
  /** Publishes to a stream and waits for its acknowledgement; fails fast while disconnected. */
  publish(subject: string, data: Uint8Array | string, o?: PublishOptions): Promise<PubAck>;
  /** Appends an entry to the audit stream once (deduplicated by event + `dedupKey`, default its ref); rejects when not stored. */
  audit(fields: AuditFields, dedupKey?: string, o?: Pick<PublishOptions, "timeoutMs">): Promise<{ duplicate: boolean }>;
  kv(bucket: string): Promise<KV>;
  /** Deletes every message of `stream` on `subject`; returns how many went. */
  purgeSubject(stream: string, subject: string): Promise<number>;
  /** How many messages `stream` holds on `subject`. */
  countSubject(stream: string, subject: string): Promise<number>;
  /** Whether `stream` holds any message on `subject` (wildcards allowed): one direct get (the stream needs allow_direct). */
  hasMessage(stream: string, subject: string): Promise<boolean>;
  /** Drains subscriptions and pending publishes, then closes. */
  drain(): Promise<void>;
  close(): Promise<void>;
}

export interface ConnectOptions extends NatsIdentity {
  url: string;
  name: string;
  /** Called on connection state changes (for logs and readiness). */
  onStatus?: (event: string, data?: unknown) => void;
}

export async function connectNats(o: ConnectOptions): Promise<Nats> {
  const nc = await connect({
    servers: o.url.split(",").map((s) => s.trim()),
    name: o.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
    // no stack capture per request: a publish acknowledgement is a request, thousands a second
    noAsyncTraces: true,
    ...natsAuth(o),
  });
  let up = true;
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === Events.Disconnect) up = false;
      if (s.type === Events.Reconnect) up = true;
      o.onStatus?.(s.type, s.data);
    }
  })().catch(() => {});
  const js = nc.jetstream();
  const jsm = await nc.jetstreamManager();
  const buckets = new Map<string, Promise<KV>>();
  const acks = ackMux(nc, o.NATS_INBOX_PREFIX);
  // Publishes requested during one turn of the event loop go out together on the next (setImmediate
  // runs after the turn's I/O callbacks): one socket write for the webhooks of many connections
  // instead of one each, for at most one loop turn of delay.
  let queued: (() => void)[] | undefined;
  const coalesce = <T>(start: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      if (!queued) {
        const batch: (() => void)[] = [];
        queued = batch;
        setImmediate(() => {
          queued = undefined;
          for (const run of batch) run();
        });
      }
      queued.push(() => start().then(resolve, reject));
    });

  const nats: Nats = {
    nc,
    js,
    jsm,
    connected: () => up && !nc.isClosed(),
    async ping(timeoutMs = 2000) {
      if (!nats.connected()) return false;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("timeout")), timeoutMs);
      });
      try {
        await Promise.race([Promise.all([nc.rtt(), jsm.getAccountInfo()]), timeout]);
        return true;
      } catch {
        return false;
      } finally {
        clearTimeout(timer);
      }
    },
    async publish(subject, data, p = {}) {
      if (!nats.connected()) throw new NatsUnavailableError("not connected to NATS");
      const h = natsHeaders();
      for (const [k, v] of Object.entries(p.headers ?? {})) if (v !== undefined) h.set(k, v);
      try {
        if (p.msgId) h.set(HEADERS.msgId, p.msgId);
        const bytes = typeof data === "string" ? Buffer.byteLength(data) : data.length;
        return await publishSpan(subject, bytes, h, () => coalesce(() => acks.publish(subject, data, h, p.timeoutMs ?? 5000)));
      } catch (err) {
        throw new NatsUnavailableError(`JetStream did not take the message: ${(err as Error).message}`, { cause: err });
      }
    },
    audit(fields, dedupKey, p) {
      return auditLog((subject, data, a) => nats.publish(subject, data, { ...p, ...a })).write(fields, dedupKey);
    },
    kv(bucket) {
      let kv = buckets.get(bucket);
      if (!kv) {
        kv = js.views.kv(bucket, { bindOnly: true });
        kv.catch(() => buckets.delete(bucket));
        buckets.set(bucket, kv);
      }
      return kv;
    },
    async purgeSubject(stream, subject) {
      return (await jsm.streams.purge(stream, { filter: subject })).purged;
    },
    async countSubject(stream, subject) {
      return (await jsm.streams.info(stream, { subjects_filter: subject })).state.subjects?.[subject] ?? 0;
    },
    async hasMessage(stream, subject) {
      // the manager has the direct API (nats.js's JetStreamManagerImpl), its interface does not say so
      const { direct } = jsm as JetStreamManager & { direct: { getMessage(s: string, q: { next_by_subj: string; seq: number }): Promise<unknown> } };
      try {
        await direct.getMessage(stream, { next_by_subj: subject, seq: 0 });
        return true;
      } catch (err) {
        if (/not found|404/i.test((err as Error).message)) return false;
        throw err;
      }
    },
    async drain() {
      if (!nc.isClosed()) await nc.drain();
      acks.close();
    },
    async close() {
      if (!nc.isClosed()) await nc.close();
      acks.close();
    },
  };
  return nats;
}

/**
 * JetStream publishes with their acknowledgements on one wildcard reply subscription. The client's
 * own js.publish makes a request object, a timer and two Error objects (stack traces) per message;
 * at thousands of webhooks a second that is most of the client's cost.
 */
function ackMux(nc: NatsConnection, inboxPrefix?: string) {
  const prefix = createInbox(inboxPrefix);
  const pending = new Map<string, { resolve: (a: PubAck) => void; reject: (e: Error) => void; deadline: number }>();
  let next = 0;
  const settle = (id: string, outcome: PubAck | Error) => {
    const p = pending.get(id);
    if (!p) return;
    pending.delete(id);
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome);
  };
  const sub = nc.subscribe(`${prefix}.*`, {
    callback: (_err, msg) => {
      const id = msg.subject.slice(prefix.length + 1);
      // no stream listens on the subject: the server answers for JetStream with a 503 status
      if (msg.headers?.hasError) return settle(id, new Error(`JetStream answered ${msg.headers.code} ${msg.headers.description}`));
      try {
        const a = JSON.parse(Buffer.from(msg.data).toString("utf8")) as {
          stream?: string;
          seq?: number;
          duplicate?: boolean;
          error?: { code: number; description: string };
        };
        if (a.error) return settle(id, new Error(`JetStream refused the message: ${a.error.code} ${a.error.description}`));
        if (typeof a.stream !== "string" || typeof a.seq !== "number") return settle(id, new Error("not a JetStream publish acknowledgement"));
        settle(id, { stream: a.stream, seq: a.seq, duplicate: a.duplicate === true });
      } catch (err) {
        settle(id, err as Error);
      }
    },
  });
  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const [id, p] of pending) if (p.deadline <= now) settle(id, new Error("no JetStream acknowledgement in time"));
  }, 100);
  sweeper.unref();
  return {
    publish(subject: string, data: Uint8Array | string, h: MsgHdrs, timeoutMs: number): Promise<PubAck> {
      const id = (++next).toString(36);
      return new Promise<PubAck>((resolve, reject) => {
        pending.set(id, { resolve, reject, deadline: Date.now() + timeoutMs });
        try {
          nc.publish(subject, data, { reply: `${prefix}.${id}`, headers: h });
        } catch (err) {
          settle(id, err as Error);
        }
      });
    },
    close() {
      clearInterval(sweeper);
      sub.unsubscribe();
      for (const id of [...pending.keys()]) settle(id, new Error("NATS connection closed"));
    },
  };
}

const DAY_MS = 24 * 3600_000;

export const defaultTopology: Topology = {
  replicas: 1,
  inboundMaxAgeMs: 7 * DAY_MS,
  duplicateWindowMs: 10 * 60_000,
  auditMaxAgeMs: 30 * DAY_MS,
  deadLetterMaxAgeMs: 14 * DAY_MS,
  processedTtlMs: 8 * DAY_MS,
  activeTtlMs: 30 * DAY_MS,
  rateLimitTtlMs: 2 * 3600_000,
  broadcastTtlMs: 30 * DAY_MS,
  consumer: { ackWaitMs: 30_000, maxDeliver: 6, backoffMs: [30_000, 60_000, 300_000, 900_000, 1_800_000], maxAckPending: 256 },
};

async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    await jsm.streams.info(cfg.name);
  } catch {
    try {
      await jsm.streams.add(cfg);
      return;
    } catch (err) {
      // another replica created it at the same moment: fall through to the update
      if (!/already in use/i.test((err as Error).message)) throw err;
    }
  }
  const { retention: _fixed, storage: _alsoFixed, ...mutable } = cfg;
  await jsm.streams.update(cfg.name, mutable);
}

/** Creates or updates every stream, the worker's durable consumer and the buckets. Safe to repeat. */
export async function ensureTopology(nats: Nats, t: Topology = defaultTopology): Promise<void> {
  const { jsm, js } = nats;
  const common = { storage: StorageType.File, num_replicas: t.replicas, discard: DiscardPolicy.Old };
  await ensureStream(jsm, {
    ...common,
    name: STREAMS.inbound,
    subjects: ["unmix.inbound.>"],
    retention: RetentionPolicy.Workqueue,
    max_age: nanos(t.inboundMaxAgeMs),
    duplicate_window: nanos(t.duplicateWindowMs),
  });
  await ensureStream(jsm, {
    ...common,
    name: STREAMS.audit,
    subjects: [AUDIT_SUBJECTS],
    retention: RetentionPolicy.Limits,
    max_age: nanos(t.auditMaxAgeMs),
    duplicate_window: nanos(Math.min(t.duplicateWindowMs, t.auditMaxAgeMs)),
  });
  await ensureStream(jsm, {
    ...common,
    name: STREAMS.deadLetter,
    subjects: ["unmix.deadletter.>"],
    retention: RetentionPolicy.Limits,
    max_age: nanos(t.deadLetterMaxAgeMs),
    duplicate_window: nanos(Math.min(t.duplicateWindowMs, t.deadLetterMaxAgeMs)),
  });
  await ensureStream(jsm, {
    ...common,
    name: STREAMS.broadcast,
    subjects: ["unmix.broadcast.>"],
    retention: RetentionPolicy.Workqueue,
    max_age: nanos(t.broadcastTtlMs),
    duplicate_window: nanos(t.duplicateWindowMs),
    // "is any recipient of this campaign left?" is one direct get by subject (broadcast.ts)
    allow_direct: true,
  });
  if (t.consumer) {
    await ensureWorkerConsumer(jsm, t.consumer);
    await ensureConsumer(jsm, STREAMS.broadcast, BROADCAST_CONSUMER, "unmix.broadcast.>", {
      // broadcast.ts bounds the attempts per recipient itself: a recipient is never dropped unrecorded
      ack_wait: nanos(30_000),
      max_deliver: -1,
      max_ack_pending: 1000,
    });
  }
  const buckets: [string, number, string][] = [
    [BUCKETS.processed, t.processedTtlMs, "hashes of the wamids already handled (drops Meta's late redeliveries)"],
    [BUCKETS.optOut, 0, "users who sent stop"],
    [BUCKETS.rateLimit, t.rateLimitTtlMs, "per-user job counts in the current window"],
    [BUCKETS.active, t.activeTtlMs, "recently active users and their reply address (policy-change notices)"],
    [BUCKETS.broadcasts, t.broadcastTtlMs, "policy broadcast campaigns and each recipient's outcome (keyed user hash, no address)"],
  ];
  for (const [bucket, ttl, description] of buckets) {
    await js.views.kv(bucket, { replicas: t.replicas, history: 1, storage: StorageType.File, ttl, description });
    // an existing bucket keeps its first settings unless told: apply the configured TTL
    const info = await jsm.streams.info(kvStream(bucket));
    if (info.config.max_age !== nanos(ttl)) await jsm.streams.update(kvStream(bucket), { max_age: nanos(ttl) });
  }
}

async function ensureWorkerConsumer(jsm: JetStreamManager, c: NonNullable<Topology["consumer"]>): Promise<void> {
  await ensureConsumer(jsm, STREAMS.inbound, WORKER_CONSUMER, "unmix.inbound.>", {
    ack_wait: nanos(c.ackWaitMs),
    max_deliver: c.maxDeliver,
    backoff: c.backoffMs.slice(0, c.maxDeliver).map(nanos),
    max_ack_pending: c.maxAckPending,
  });
}

async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  name: string,
  filter: string,
  settings: { ack_wait: number; max_deliver: number; backoff?: number[]; max_ack_pending: number },
): Promise<void> {
  try {
    await jsm.consumers.info(stream, name);
  } catch (err) {
    if (!/not found/i.test((err as Error).message)) throw err;
    try {
      await jsm.consumers.add(stream, {
        durable_name: name,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: filter,
        ...settings,
      });
      return;
    } catch (addErr) {
      // another replica created it at the same moment: fall through to the update
      if (!/already (exists|in use)/i.test((addErr as Error).message)) throw addErr;
    }
  }
  await jsm.consumers.update(stream, name, settings);
}

/** The subject a bucket stores `key` under (for purging a key with its history). */
export const kvSubject = (bucket: string, key: string) => `$KV.${bucket}.${key}`;
export const kvStream = (bucket: string) => `KV_${bucket}`;

/** The advisory JetStream publishes when a message reached the consumer's max_deliver unacknowledged. */
export const maxDeliveriesAdvisory = (stream: string, consumer: string) => `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${consumer}`;
