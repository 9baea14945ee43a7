// Support and admin endpoints, on their own listener (ADMIN_HOST:ADMIN_PORT), never on the public
// webhook one; each request names its operator and each route the verb it needs on unmix.dev/support
// (admin-auth.ts: Kubernetes TokenReview and SubjectAccessReview, or a shared static token):
//   POST /admin/purge      (purge) {phone} or {userId}: erase a user's data (policy P14: a child's
//                          data), exactly as their own `delete` would, without messaging them
//   POST /admin/broadcasts (broadcast) {text?, template?, dryRun?, idempotencyKey}: a policy-change
//                          notice (P15) to recently active users, as a durable campaign (broadcast.ts):
//                          a dry run says who would get what; a start answers {id, state} at once, the
//                          same ones again for a repeated idempotency key
//   GET  /admin/broadcasts, /admin/broadcasts/<id> (list, get): campaigns and their progress
//   GET  /admin/broadcasts/templates (broadcast): the approved templates, for composing one
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
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { type Broadcasts, CAMPAIGN_ID, type Campaign, StartRefused } from "./broadcast.ts";
import { type NoticeContent, refusal as refusalOf } from "./broadcast-plan.ts";
import { type EraseDeps, eraseUser, heldFor } from "./erase.ts";
import { jobRow } from "./job-rows.ts";
import type { UserState } from "./users.ts";

export interface AdminOptions extends EraseDeps {
  users: UserState;
  jobs: SeparationJobs;
  broadcasts: Broadcasts;
  /** A tracing UI's URL with a `{traceId}` placeholder: the console links each message's trace. */
  tracingUiUrl?: string;
  /** How often a live stream sends a comment so proxies and port-forwards keep it open. */
  keepAliveMs?: number;
}

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
    /** Count who would get what, send nothing. */
    dryRun: { type: "boolean", default: false },
    /** The same key starts the same campaign once: a repeated request answers with it. */
    idempotencyKey: { type: "string", minLength: 1, maxLength: 256 },
  },
  anyOf: [{ required: ["text"] }, { required: ["template"] }],
} as const;

const CampaignParams = { type: "object", properties: { id: { type: "string", pattern: CAMPAIGN_ID.source } }, required: ["id"] } as const;

const JobsQuery = { type: "object", properties: { limit: { type: "integer", minimum: 1, maximum: 500, default: 50 } } } as const;

interface BroadcastRequest extends NoticeContent {
  dryRun: boolean;
  idempotencyKey?: string;
}

/** A campaign as the console shows it. */
const progress = (c: Campaign) => ({
  id: c.id,
  state: c.state,
  total: c.total,
  sent: c.sent,
  skipped: c.skipped,
  failed: c.failed,
  unconfirmed: c.unconfirmed,
  byKind: c.byKind,
  planned: c.planned,
  notice: c.notice,
  startedAt: c.startedAt,
  finishedAt: c.finishedAt ?? null,
});

export const adminRoutes: FastifyPluginAsync<AdminOptions> = async (app, o) => {
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

  app.post<{ Body: BroadcastRequest }>("/admin/broadcasts", { schema: { body: BroadcastBody }, config: { permission: "broadcast" } }, async (req, reply) => {
    const { dryRun, idempotencyKey, ...body } = req.body;
    const notice: NoticeContent = { ...(body.text ? { text: body.text } : {}), ...(body.template ? { template: body.template } : {}) };
    if (dryRun) {
      const done = await audited(req, "broadcast-dry-run");
      const { plan } = await o.broadcasts.plan(notice);
      const refused = await o.broadcasts.checkTemplate(notice).then(
        () => undefined,
        (err) => {
          if (err instanceof StartRefused) return err.message;
          throw err;
        },
      );
      await done({ ...plan });
      const why = refused ?? refusalOf(notice, plan);
      return {
        dryRun: true,
        total: plan.text + plan.template + plan.optedOut + plan.outsideWindow,
        byKind: { text: plan.text, template: plan.template },
        skipped: { optedOut: plan.optedOut, outsideWindow: plan.outsideWindow },
        ...(why ? { refusal: why } : {}),
      };
    }
    if (!idempotencyKey) return reply.code(400).send({ error: "a start needs an idempotencyKey (a repeated request with it starts nothing new)" });
    const done = await audited(req, "broadcast");
    try {
      const { campaign, created } = await o.broadcasts.start(notice, idempotencyKey, req.operator.username);
      await done({ ...campaign.planned, total: campaign.total, created: created ? 1 : 0 });
      req.log.info({ campaign: campaign.id, created, total: campaign.total }, "policy broadcast started");
      return reply.code(created ? 202 : 200).send({ id: campaign.id, state: campaign.state });
    } catch (err) {
      if (!(err instanceof StartRefused)) throw err;
      await done({ refused: 1 });
      req.log.warn({ reason: err.message }, "policy broadcast refused");
      return reply.code(err.status).send({ error: err.message, ...err.details });
    }
  });

  app.get("/admin/broadcasts", { config: { permission: "list" } }, async () => ({ campaigns: (await o.broadcasts.list()).map(progress) }));

  app.get("/admin/broadcasts/templates", { config: { permission: "broadcast" } }, async () => ({ templates: await o.broadcasts.templates() }));

  app.get<{ Params: { id: string } }>("/admin/broadcasts/:id", { schema: { params: CampaignParams }, config: { permission: "get" } }, async (req, reply) => {
    const c = await o.broadcasts.get(req.params.id);
    return c ? progress(c) : reply.code(404).send({ error: "no such campaign" });
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
