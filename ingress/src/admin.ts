// Support and admin endpoints, on their own listener (ADMIN_HOST:ADMIN_PORT), never on the public
// webhook one; each request names its operator and each route the verb it needs on unmix.dev/support
// (admin-auth.ts: Kubernetes TokenReview and SubjectAccessReview, or a shared static token):
//   POST /admin/purge      (purge) {phone} or {userId}: erase a user's data (policy P14: a child's
//                          data), exactly as their own `delete` would, without messaging them
//   POST /admin/broadcast  (broadcast) {text} and/or {template}: a policy-change notice (P15) to
//                          recently active users; inside the 24-hour window as text, outside it only
//                          as a template
//   GET  /admin/jobs       (list) recent SeparationJobs with the sender's profile name (P2: shown
//                          here only), and how many could not be read (`invalid`: refused by our
//                          schema, skipped)
//   GET  /admin/jobs/events (list) the same rows live, as server-sent events from a watch (the console)
//   POST /admin/users/lookup (purge) {phone} or {userId}: what is held about a user, as counts only
// Every action is audited (P5) with the operator's identity and its counts: an entry before it acts
// and one with the counts after; without the first, nothing is done or shown (503).
import { randomUUID } from "node:crypto";
import type { SeparationJob } from "@unmix/api/separationjob";
import type { SeparationJobs, WatchEvent } from "@unmix/core/kube";
import { GraphApiError, type WhatsAppClient } from "@unmix/core/whatsapp";
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { type EraseDeps, eraseUser, heldFor } from "./erase.ts";
import { jobRow } from "./job-rows.ts";
import type { UserState } from "./users.ts";

export interface AdminOptions extends EraseDeps {
  users: UserState;
  jobs: SeparationJobs;
  whatsapp: WhatsAppClient;
  now?: () => number;
  /** A tracing UI's URL with a `{traceId}` placeholder: the console links each message's trace. */
  tracingUiUrl?: string;
  /** How often a live stream sends a comment so proxies and port-forwards keep it open. */
  keepAliveMs?: number;
}

const WINDOW_MS = 24 * 3600_000;
/** Leave a margin: a text sent as the window closes fails with 131047. */
const WINDOW_MARGIN_MS = 10 * 60_000;

const PurgeBody = {
  type: "object",
  additionalProperties: false,
  properties: {
    phone: { type: "string", pattern: "^\\+?[0-9][0-9 ()-]{5,24}$" },
    userId: { type: "string", pattern: "^[A-Z]{2}\\.[A-Za-z0-9]{1,128}$" },
  },
  minProperties: 1,
  maxProperties: 1,
} as const;

const BroadcastBody = {
  type: "object",
  additionalProperties: false,
  properties: {
    text: { type: "string", minLength: 1, maxLength: 4096 },
    /** Count who would get what, send nothing. */
    dryRun: { type: "boolean" },
    template: {
      type: "object",
      additionalProperties: false,
      required: ["name", "languageCode"],
      properties: {
        name: { type: "string", minLength: 1, maxLength: 512 },
        languageCode: { type: "string", minLength: 2, maxLength: 16 },
        bodyParameters: { type: "array", maxItems: 20, items: { type: "string", maxLength: 1024 } },
      },
    },
  },
  anyOf: [{ required: ["text"] }, { required: ["template"] }],
} as const;

const JobsQuery = { type: "object", properties: { limit: { type: "integer", minimum: 1, maximum: 500, default: 50 } } } as const;

interface BroadcastRequest {
  dryRun?: boolean;
  text?: string;
  template?: { name: string; languageCode: string; bodyParameters?: string[] };
}

export const adminRoutes: FastifyPluginAsync<AdminOptions> = async (app, o) => {
  const now = o.now ?? Date.now;
  const rowOf = async (sj: SeparationJob) => jobRow(sj, await o.jobs.sender(sj.metadata.name), o.tracingUiUrl);
  /** Ends each open live stream; the listener's close waits for them otherwise. */
  const streams = new Set<() => void>();
  app.addHook("preClose", async () => {
    for (const end of streams) end();
  });
  /** Writes the "started" entry (throws AuditUnavailable) and returns the one for the counts. */
  const audited = async (req: FastifyRequest, action: string) => {
    const id = randomUUID();
    const entry = { event: "admin", action, operator: req.operator.username } as const;
    await o.nats.audit({ ...entry, outcome: "started" }, `${id}.started`).catch((err) => {
      throw new AuditUnavailable(err);
    });
    return (counts: Record<string, number>) => o.nats.audit({ ...entry, outcome: "done", counts }, `${id}.done`);
  };
  app.setErrorHandler((err, req, reply) => {
    if (!(err instanceof AuditUnavailable)) return reply.send(err);
    req.log.error({ err: { message: err.message } }, "admin request refused: the audit trail is unavailable");
    return reply.code(503).send({ error: "the audit trail is unavailable: nothing was done" });
  });

  app.post<{ Body: UserIds }>("/admin/users/lookup", { schema: { body: PurgeBody }, config: { permission: "purge" } }, async (req) => {
    const done = await audited(req, "lookup");
    const held = await heldFor(idsOf(req.body), o);
    await done({ ...held, optedOut: held.optedOut ? 1 : 0 });
    return held;
  });

  app.post<{ Body: UserIds }>("/admin/purge", { schema: { body: PurgeBody }, config: { permission: "purge" } }, async (req) => {
    const ids = idsOf(req.body);
    const done = await audited(req, "purge");
    // opted out as well, so a child's data does not build up again (until they send `start`)
    const erased = await eraseUser(ids, o, { optOut: true });
    req.log.info({ by: req.body.phone ? "phone" : "userId", ...erased }, "admin purge");
    await done({ ...erased, optedOut: erased.optedOut ? 1 : 0 });
    return erased;
  });

  app.post<{ Body: BroadcastRequest }>("/admin/broadcast", { schema: { body: BroadcastBody }, config: { permission: "broadcast" } }, async (req) => {
    const { text, template, dryRun = false } = req.body;
    const done = await audited(req, dryRun ? "broadcast-dry-run" : "broadcast");
    const counts = { sent: 0, skipped: 0, failed: 0, asText: 0, asTemplate: 0 };
    for await (const user of o.users.activeUsers()) {
      if (await o.users.isOptedOut({ primary: user.key, all: [user.key] })) {
        counts.skipped++;
        continue;
      }
      const to = { ...(user.waId ? { waId: user.waId } : {}), ...(user.userId ? { userId: user.userId } : {}) };
      const inWindow = now() - user.lastSeen < WINDOW_MS - WINDOW_MARGIN_MS;
      if (dryRun) {
        if (text && inWindow) counts.asText++;
        else if (template) counts.asTemplate++;
        else counts.skipped++;
        continue;
      }
      try {
        if (text && inWindow) {
          await o.whatsapp.sendText(user.phoneNumberId, to, text);
          counts.asText++;
        } else if (template) {
          await o.whatsapp.sendTemplate(user.phoneNumberId, to, template);
          counts.asTemplate++;
        } else {
          counts.skipped++; // outside the window only an approved template may be sent
          continue;
        }
        counts.sent++;
      } catch (err) {
        counts.failed++;
        req.log.warn(
          { err: err instanceof GraphApiError ? { code: err.code, kind: err.kind } : { message: (err as Error).message } },
          "broadcast message not sent",
        );
      }
    }
    req.log.info({ ...counts, dryRun }, "policy broadcast");
    await done(counts);
    return { ...counts, dryRun };
  });

  /** The newest `limit` SeparationJobs as rows, and the list's resourceVersion to watch from. */
  const newest = async (limit: number) => {
    // page by page, keeping only the newest `limit`; an invalid item is counted (and logged by the client), not fatal
    let jobs: SeparationJob[] = [];
    let invalid = 0;
    let resourceVersion: string | undefined;
    for await (const page of o.jobs.pages()) {
      resourceVersion ??= page.resourceVersion;
      invalid += page.invalid.length;
      jobs = [...jobs, ...page.items]
        .sort((a, b) => String(b.metadata.creationTimestamp ?? "").localeCompare(String(a.metadata.creationTimestamp ?? "")))
        .slice(0, limit);
    }
    // the profile name (P2: shown here only) is in each job's sender Secret, until the reply is out
    return { invalid, jobs: await Promise.all(jobs.map(rowOf)), resourceVersion };
  };

  app.get<{ Querystring: { limit: number } }>("/admin/jobs", { schema: { querystring: JobsQuery }, config: { permission: "list" } }, async (req) => {
    const done = await audited(req, "list-jobs");
    const { invalid, jobs } = await newest(req.query.limit);
    await done({ jobs: jobs.length, invalid });
    return { invalid, jobs };
  });

  // Server-sent events: `snapshot` {invalid, jobs} (as GET /admin/jobs), then `job` (a row, new or
  // changed) and `removed` {name} from a watch that starts at the snapshot's resourceVersion, so no
  // change between the two is missed. When the watch ends the stream ends; the console reconnects
  // and gets a fresh snapshot. The rows are read in the order the watch delivered them.
  app.get<{ Querystring: { limit: number } }>(
    "/admin/jobs/events",
    { schema: { querystring: JobsQuery }, config: { permission: "list" } },
    async (req, reply) => {
      const done = await audited(req, "watch-jobs");
      const snapshot = await newest(req.query.limit);
      let events = 0;
      let ended = false;
      let open: () => void = () => {};
      let queue = new Promise<void>((resolve) => {
        open = resolve;
      });
      const res = reply.raw;
      const send = (event: string, data: unknown) => {
        if (!ended) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      };
      const onEvent = (e: WatchEvent) => {
        queue = queue
          .then(async () => {
            if (e.type === "DELETED") send("removed", { name: e.sj.metadata.name });
            else send("job", await rowOf(e.sj));
            events++;
          })
          .catch((err) => req.log.warn({ err: { message: (err as Error).message } }, "console stream: a change could not be shown"));
      };
      let abort: () => void = () => {};
      const end = () => {
        if (ended) return;
        ended = true;
        streams.delete(end);
        clearInterval(keepAlive);
        abort();
        res.end();
        done({ jobs: snapshot.jobs.length, events }).catch((err) =>
          req.log.warn({ err: { message: (err as Error).message } }, "console stream: audit entry not stored"),
        );
      };
      abort = await o.jobs.watch(snapshot.resourceVersion, onEvent, () => void queue.then(end));
      const keepAlive = setInterval(() => res.write(": keep-alive\n\n"), o.keepAliveMs ?? 15_000);
      streams.add(end);
      reply.hijack();
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-content-type-options": "nosniff" });
      send("snapshot", { invalid: snapshot.invalid, jobs: snapshot.jobs });
      res.on("close", end);
      if (req.raw.socket.destroyed) end(); // the client left while the list was read
      open();
    },
  );
};

type UserIds = { phone?: string; userId?: string };
const idsOf = (b: UserIds) => (b.phone ? { waId: b.phone.replace(/\D/g, "") } : { userId: b.userId as string });

class AuditUnavailable extends Error {
  constructor(cause: unknown) {
    super(`audit entry not stored: ${(cause as Error).message}`, { cause });
    this.name = "AuditUnavailable";
  }
}
