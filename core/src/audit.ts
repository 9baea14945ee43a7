// The audit trail (policy P5): the one definition of its stream, subjects and entry schema, used by
// the ingress (received, handled, dead-lettered, status receipts, admin actions) and the controller (job
// created, replied or failed, input deleted, result expired). An entry references a message only by
// its keyed ref (the hash of the wamid already used in logs) and holds no number, name, wamid or
// content: the schema lets through short slugs, counts and codes only. Each per-message entry has a
// deterministic JetStream message id (event + ref), so a step retried after a crash or a refused
// write appends it once; a step is never marked done before its entry was acknowledged.
import { createHash } from "node:crypto";
import { connect, type NatsConnection } from "nats";
import { z } from "zod";
import { type NatsConfig, type NatsIdentity, natsAuth } from "./nats-config.ts";

export const AUDIT_STREAM = "UNMIX_AUDIT";
export const AUDIT_SUBJECTS = "unmix.audit.>";

/** Who writes what: the chart's NATS permissions grant each component its own events only. */
export const AUDIT_EVENTS = {
  webhook: ["status", "webhook-error"],
  worker: ["received", "handled", "dead-lettered", "admin"],
  controller: ["job-created", "replied", "failed", "input-deleted", "result-expired"],
} as const;
export type AuditEvent = (typeof AUDIT_EVENTS)[keyof typeof AUDIT_EVENTS][number];
const EVENTS = Object.values(AUDIT_EVENTS).flat() as [AuditEvent, ...AuditEvent[]];

export const auditSubject = (event: AuditEvent) => `unmix.audit.${event}`;

/** A short, stable, non-reversible reference to a wamid for logs, audit entries and KV keys. */
export const messageRef = (wamid: string) => createHash("sha256").update(wamid).digest("hex").slice(0, 32);

/**
 * The ref of the message a SeparationJob was made for: its name is `sj-` + the same hash
 * (separationJobName); one made by hand under another name is referenced by the hash of that name.
 */
export const refOfSeparationJob = (name: string) => /^sj-([0-9a-f]{32})$/.exec(name)?.[1] ?? messageRef(name);

// a word, never a run of digits long enough to be a phone number
const Slug = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,63}$/i, "a short word")
  .refine((s) => !/\d{6}/.test(s), "no long runs of digits");

/**
 * An operator: a Kubernetes user name (system:serviceaccount:<ns>:<name>, an OIDC user or e-mail
 * address) or the shared token's name; no spaces (no free text) and no long runs of digits.
 */
const OperatorName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9:._@+-]{0,252}$/i, "a Kubernetes user name")
  .refine((s) => !/\d{6}/.test(s), "no long runs of digits");

const UNIX_SECONDS = /^\d{9,11}$/;

/**
 * What of Meta's timestamp and error codes an entry keeps: a plausible Unix time (else nothing) and
 * at most 20 codes, so that odd input never makes an entry the schema refuses (which would hold the
 * message back for ever).
 */
export const auditable = (timestamp: string, errorCodes: number[] = []) => ({
  ...(UNIX_SECONDS.test(timestamp) ? { timestamp } : {}),
  ...(errorCodes.length ? { errorCodes: errorCodes.slice(0, 20) } : {}),
});

export const AuditEntry = z
  .object({
    event: z.enum(EVENTS),
    at: z.iso.datetime(),
    /** messageRef of the message concerned. */
    ref: z
      .string()
      .regex(/^[0-9a-f]{32}$/)
      .optional(),
    /** What the worker did with the message (the handler's outcome), or an admin action's step. */
    outcome: Slug.optional(),
    /** The message's type (audio, video, text, …). */
    type: Slug.optional(),
    /** The message's own time (Meta's Unix seconds). */
    timestamp: z.string().regex(UNIX_SECONDS).optional(),
    /** The failure class of a failed message (crds' failure classes). */
    class: Slug.optional(),
    /** The state the reply ended in (sent, unconfirmed, failed, none), or why something was deleted. */
    reason: Slug.optional(),
    /** A status receipt's status. */
    status: Slug.optional(),
    errorCodes: z.array(z.number().int()).max(20).optional(),
    code: z.number().int().optional(),
    /** Admin actions: which one, who did it, and how many things it touched. */
    action: Slug.optional(),
    operator: OperatorName.optional(),
    counts: z.record(Slug, z.number().int().min(0)).optional(),
  })
  .strict();
export type AuditEntry = z.infer<typeof AuditEntry>;
export type AuditFields = Omit<AuditEntry, "at">;

/** A JetStream publish with a deduplication id, as each service's NATS module does it. */
export type AuditPublish = (subject: string, data: string, o: { msgId?: string }) => Promise<{ duplicate: boolean }>;

export interface AuditLog {
  /**
   * Appends an entry once JetStream acknowledged it; rejects otherwise (the caller does not mark its
   * step done). `dedupKey` defaults to the ref: one entry per message and event.
   */
  write(fields: AuditFields, dedupKey?: string): Promise<{ duplicate: boolean }>;
}

export function auditLog(publish: AuditPublish, clock: () => Date = () => new Date()): AuditLog {
  return {
    async write(fields, dedupKey = fields.ref) {
      const entry = AuditEntry.parse({ ...fields, at: clock().toISOString() });
      return await publish(auditSubject(entry.event), JSON.stringify(entry), dedupKey ? { msgId: `${entry.event}.${dedupKey}` } : {});
    },
  };
}

/**
 * The controller's connection: publishing to the audit subjects is all its NATS user may do. It
 * returns at once and connects (and reconnects) in the background: until connected, a write is
 * refused, so the step that needs it is retried with back-off while the process keeps serving its
 * health and metrics.
 */
export function connectAuditLog(
  c: Pick<NatsConfig, "NATS_URL"> & NatsIdentity,
  name: string,
  clock?: () => Date,
): AuditLog & { connected(): boolean; close(): Promise<void> } {
  let nc: NatsConnection | undefined;
  let closed = false;
  const connecting = connect({
    servers: c.NATS_URL.split(",").map((s) => s.trim()),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
    ...natsAuth(c),
  }).then(async (conn) => {
    nc = conn;
    if (closed) await conn.close();
  });
  connecting.catch(() => {}); // refused credentials: every write says so
  const log = auditLog(async (subject, data, o) => {
    if (!nc || nc.isClosed()) throw new Error("not connected to NATS");
    const ack = await nc.jetstream().publish(subject, data, { ...(o.msgId ? { msgID: o.msgId } : {}), timeout: 5000 });
    return { duplicate: ack.duplicate };
  }, clock);
  return {
    ...log,
    connected: () => !!nc && !nc.isClosed(),
    async close() {
      closed = true;
      if (nc && !nc.isClosed()) await nc.drain();
    },
  };
}
