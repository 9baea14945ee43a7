// Support and admin endpoints, on their own listener (ADMIN_HOST:ADMIN_PORT), never on the public
// webhook one, each request authenticated with the bearer token ADMIN_TOKEN:
//   POST /admin/purge      {phone} or {userId}: erase a user's data (policy P14: a child's data),
//                          exactly as their own `delete` would, without messaging them
//   POST /admin/broadcasts {text?, template?, dryRun?, idempotencyKey}: a policy-change notice (P15)
//                          to recently active users, as a durable campaign (broadcast.ts): a dry run
//                          says who would get what; a start answers {id, state} at once, the same
//                          ones again for a repeated idempotency key
//   GET  /admin/broadcasts, /admin/broadcasts/<id>: campaigns and their progress
//   GET  /admin/jobs       recent SeparationJobs with the sender's profile name (P2: shown here only),
//                          and how many could not be read (`invalid`: refused by our schema, skipped)
// Every action is audited (P5) with the operator's identity and its counts: an entry before it acts
// and one with the counts after; without the first, nothing is done or shown (503).
import { randomUUID, timingSafeEqual } from "node:crypto";
import { findCondition } from "@unmix/api/conditions";
import { type SeparationJob, USER_LABEL } from "@unmix/api/separationjob";
import type { SeparationJobs } from "@unmix/core/kube";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { type Broadcasts, CAMPAIGN_ID, type Campaign, StartRefused } from "./broadcast.ts";
import { type NoticeContent, refusal as refusalOf } from "./broadcast-plan.ts";
import { type EraseDeps, eraseUser } from "./erase.ts";
import type { UserState } from "./users.ts";

/** What an operator may do on the admin listener (the support console's virtual resource verbs). */
export type AdminVerb = "list" | "purge" | "broadcast";

export interface AdminOptions extends EraseDeps {
  token: string;
  users: UserState;
  jobs: SeparationJobs;
  broadcasts: Broadcasts;
  /**
   * Whether the request's operator may do `verb`, as a preHandler hook that replies 403 when not.
   * Default: allowed, since the shared ADMIN_TOKEN checked on every request grants every action;
   * the console's per-operator authentication (SubjectAccessReview) replaces it.
   */
  requirePermission?: (verb: AdminVerb) => (req: FastifyRequest, reply: FastifyReply) => Promise<void>;
  /**
   * Who made the request, for the audit trail. One shared ADMIN_TOKEN today, recorded as such; the
   * support console's per-operator authentication will return the operator here.
   */
  operatorOf?: (req: FastifyRequest) => string;
}

export const SHARED_TOKEN_OPERATOR = "shared-admin-token";

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

function bearerMatches(req: FastifyRequest, token: string): boolean {
  const given = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "");
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export const adminRoutes: FastifyPluginAsync<AdminOptions> = async (app, o) => {
  const permit = o.requirePermission ?? (() => async () => {});
  const operatorOf = o.operatorOf ?? (() => SHARED_TOKEN_OPERATOR);
  /** Writes the "started" entry (throws AuditUnavailable) and returns the one for the counts. */
  const audited = async (req: FastifyRequest, action: string) => {
    const id = randomUUID();
    const entry = { event: "admin", action, operator: operatorOf(req) } as const;
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

  app.addHook("onRequest", async (req, reply) => {
    if (!bearerMatches(req, o.token)) {
      req.log.warn({ path: req.routeOptions.url }, "admin request refused: bad or missing bearer token");
      return reply.code(401).header("www-authenticate", 'Bearer realm="unmix-admin"').send({ error: "unauthorized" });
    }
  });

  app.post<{ Body: { phone?: string; userId?: string } }>("/admin/purge", { schema: { body: PurgeBody }, preHandler: permit("purge") }, async (req) => {
    const ids = req.body.phone ? { waId: req.body.phone.replace(/\D/g, "") } : { userId: req.body.userId as string };
    const done = await audited(req, "purge");
    const erased = await eraseUser(ids, o);
    req.log.info({ by: req.body.phone ? "phone" : "userId", ...erased }, "admin purge");
    await done({ ...erased, optedOut: erased.optedOut ? 1 : 0 });
    return erased;
  });

  app.post<{ Body: BroadcastRequest }>("/admin/broadcasts", { schema: { body: BroadcastBody }, preHandler: permit("broadcast") }, async (req, reply) => {
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
      const { campaign, created } = await o.broadcasts.start(notice, idempotencyKey, operatorOf(req));
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

  app.get("/admin/broadcasts", { preHandler: permit("list") }, async () => ({ campaigns: (await o.broadcasts.list()).map(progress) }));

  app.get<{ Params: { id: string } }>("/admin/broadcasts/:id", { schema: { params: CampaignParams }, preHandler: permit("list") }, async (req, reply) => {
    const c = await o.broadcasts.get(req.params.id);
    return c ? progress(c) : reply.code(404).send({ error: "no such campaign" });
  });

  app.get<{ Querystring: { limit: number } }>("/admin/jobs", { schema: { querystring: JobsQuery }, preHandler: permit("list") }, async (req) => {
    const done = await audited(req, "list-jobs");
    // page by page, keeping only the newest `limit`; an invalid item is counted (and logged by the client), not fatal
    let jobs: SeparationJob[] = [];
    let invalid = 0;
    for await (const page of o.jobs.pages()) {
      invalid += page.invalid.length;
      jobs = [...jobs, ...page.items]
        .sort((a, b) => String(b.metadata.creationTimestamp ?? "").localeCompare(String(a.metadata.creationTimestamp ?? "")))
        .slice(0, req.query.limit);
    }
    await done({ jobs: jobs.length, invalid });
    return {
      invalid,
      // the profile name (P2: shown here only) is in each job's sender Secret, until the reply is out
      jobs: await Promise.all(
        jobs.map(async (j) => {
          const done = findCondition(j.status?.conditions, "Succeeded");
          return {
            name: j.metadata.name,
            createdAt: j.metadata.creationTimestamp,
            user: j.metadata.labels?.[USER_LABEL],
            profileName: (await o.jobs.sender(j.metadata.name))?.profileName ?? null,
            kind: j.spec.media.kind,
            format: j.spec.output.format,
            status: done?.status ?? "Unknown",
            reason: done?.reason ?? null,
            failure: j.status?.failure?.class ?? null,
            totalSeconds: j.status?.result?.totalSeconds ?? null,
          };
        }),
      ),
    };
  });
};

class AuditUnavailable extends Error {
  constructor(cause: unknown) {
    super(`audit entry not stored: ${(cause as Error).message}`, { cause });
    this.name = "AuditUnavailable";
  }
}
