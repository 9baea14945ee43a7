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
// Every action is audited (P5) with the operator's identity and its counts: an entry before it acts
// and one with the counts after; without the first, nothing is done or shown (503).
import { randomUUID } from "node:crypto";
import { findCondition } from "@unmix/api/conditions";
import { type SeparationJob, USER_LABEL } from "@unmix/api/separationjob";
import type { SeparationJobs } from "@unmix/core/kube";
import { GraphApiError, type WhatsAppClient } from "@unmix/core/whatsapp";
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { type EraseDeps, eraseUser } from "./erase.ts";
import type { UserState } from "./users.ts";

export interface AdminOptions extends EraseDeps {
  users: UserState;
  jobs: SeparationJobs;
  whatsapp: WhatsAppClient;
  now?: () => number;
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
  minProperties: 1,
} as const;

const JobsQuery = { type: "object", properties: { limit: { type: "integer", minimum: 1, maximum: 500, default: 50 } } } as const;

interface BroadcastRequest {
  text?: string;
  template?: { name: string; languageCode: string; bodyParameters?: string[] };
}

export const adminRoutes: FastifyPluginAsync<AdminOptions> = async (app, o) => {
  const now = o.now ?? Date.now;
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

  app.post<{ Body: { phone?: string; userId?: string } }>("/admin/purge", { schema: { body: PurgeBody }, config: { permission: "purge" } }, async (req) => {
    const ids = req.body.phone ? { waId: req.body.phone.replace(/\D/g, "") } : { userId: req.body.userId as string };
    const done = await audited(req, "purge");
    const erased = await eraseUser(ids, o);
    req.log.info({ by: req.body.phone ? "phone" : "userId", ...erased }, "admin purge");
    await done({ ...erased, optedOut: erased.optedOut ? 1 : 0 });
    return erased;
  });

  app.post<{ Body: BroadcastRequest }>("/admin/broadcast", { schema: { body: BroadcastBody }, config: { permission: "broadcast" } }, async (req) => {
    const { text, template } = req.body;
    const done = await audited(req, "broadcast");
    const counts = { sent: 0, skipped: 0, failed: 0, asText: 0, asTemplate: 0 };
    for await (const user of o.users.activeUsers()) {
      if (await o.users.isOptedOut({ primary: user.key, all: [user.key] })) {
        counts.skipped++;
        continue;
      }
      const to = { ...(user.waId ? { waId: user.waId } : {}), ...(user.userId ? { userId: user.userId } : {}) };
      const inWindow = now() - user.lastSeen < WINDOW_MS - WINDOW_MARGIN_MS;
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
    req.log.info(counts, "policy broadcast");
    await done(counts);
    return counts;
  });

  app.get<{ Querystring: { limit: number } }>("/admin/jobs", { schema: { querystring: JobsQuery }, config: { permission: "list" } }, async (req) => {
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
