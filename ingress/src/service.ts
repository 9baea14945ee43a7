// Puts the ingress together for a role: the public listener (webhook and/or health), the worker and
// the admin listener, on shared clients (NATS, the API server, the object store, WhatsApp) that are
// Fastify decorators of each app. stop() drains in order: stop answering readiness, close the
// listeners (in-flight webhooks finish their publishes), let the worker finish its messages, then
// drain NATS.

import { modelId } from "@unmix/api/models";
import { k8s, kubeConfig, SeparationJobs } from "@unmix/core/kube";
import { createLogger, type Logger } from "@unmix/core/log";
import { createObjectStore, type ObjectStore } from "@unmix/core/object-store";
import { OperatorAccess } from "@unmix/core/operator-access";
import { ResultCache, whatsappMediaDeleter } from "@unmix/core/result-cache";
import { createWhatsAppClient, type WhatsAppClient } from "@unmix/core/whatsapp";
import Fastify, { type FastifyInstance, LogController } from "fastify";
import { adminRoutes } from "./admin.ts";
import { adminAuth } from "./admin-auth.ts";
import { Broadcasts } from "./broadcast.ts";
import { type IngressConfig, requireWebhook, requireWorker, runsWorker, servesWebhook } from "./config.ts";
import { consoleRoutes } from "./console.ts";
import { MessageHandler } from "./handler.ts";
import { healthRoutes } from "./health.ts";
import { Metrics } from "./metrics.ts";
import { connectNats, ensureTopology, type Nats, type Topology } from "./nats.ts";
import { UserState } from "./users.ts";
import { webhookRoutes } from "./webhook.ts";
import { Worker } from "./worker.ts";

declare module "fastify" {
  interface FastifyInstance {
    nats: Nats;
    metrics: Metrics;
    lifecycle: { shuttingDown: boolean };
  }
}

/** Clients a test or benchmark may hand in instead of the ones the configuration describes. */
export interface IngressDeps {
  logger?: Logger;
  metrics?: Metrics;
  nats?: Nats;
  kubeConfig?: k8s.KubeConfig;
  whatsapp?: WhatsAppClient;
  store?: ObjectStore;
  now?: () => number;
}

export interface Ingress {
  /** http://host:port of the public listener (webhook, health, metrics). */
  url: string;
  adminUrl?: string;
  nats: Nats;
  metrics: Metrics;
  worker?: Worker;
  users?: UserState;
  broadcasts?: Broadcasts;
  stop(): Promise<void>;
}

const S = 1000;

export function topologyOf(c: IngressConfig): Topology {
  const w = runsWorker(c.ROLE) ? requireWorker(c) : undefined;
  return {
    replicas: c.NATS_REPLICAS,
    inboundMaxAgeMs: c.INBOUND_MAX_AGE_SECONDS * S,
    duplicateWindowMs: c.DEDUP_WINDOW_SECONDS * S,
    auditMaxAgeMs: c.AUDIT_MAX_AGE_SECONDS * S,
    deadLetterMaxAgeMs: c.DEADLETTER_MAX_AGE_SECONDS * S,
    processedTtlMs: c.PROCESSED_TTL_SECONDS * S,
    activeTtlMs: c.ACTIVE_USER_TTL_SECONDS * S,
    rateLimitTtlMs: 2 * 3600 * S,
    broadcastTtlMs: 30 * 24 * 3600 * S,
    ...(w
      ? {
          consumer: {
            ackWaitMs: w.WORKER_ACK_WAIT_SECONDS * S,
            maxDeliver: w.WORKER_MAX_DELIVER,
            // redelivery after a missed ack: never sooner than the ack wait itself
            backoffMs: w.WORKER_BACKOFF_SECONDS.map((s) => Math.max(s, w.WORKER_ACK_WAIT_SECONDS) * S),
            maxAckPending: Math.max(w.WORKER_CONCURRENCY * 4, 64),
          },
        }
      : {}),
  };
}

function fastify(logger: Logger, nats: Nats, metrics: Metrics, lifecycle: { shuttingDown: boolean }): FastifyInstance {
  // request logging off: the handshake's query string holds the verify token
  const app = Fastify({
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  }) as unknown as FastifyInstance;
  app.decorate("nats", nats);
  app.decorate("metrics", metrics);
  app.decorate("lifecycle", lifecycle);
  return app;
}

const addressOf = (app: FastifyInstance) => {
  const a = app.server.address();
  if (!a || typeof a === "string") throw new Error("not listening on TCP");
  return `http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`;
};

export async function startIngress(c: IngressConfig, deps: IngressDeps = {}): Promise<Ingress> {
  const log = deps.logger ?? createLogger("unmix-ingress", { level: c.LOG_LEVEL });
  const metrics = deps.metrics ?? new Metrics({ defaultMetrics: true });
  const lifecycle = { shuttingDown: false };
  const nats =
    deps.nats ??
    (await connectNats({
      url: c.NATS_URL,
      name: `unmix-ingress-${c.ROLE}`,
      NATS_CREDS_FILE: c.NATS_CREDS_FILE,
      NATS_USER: c.NATS_USER,
      NATS_PASSWORD: c.NATS_PASSWORD,
      NATS_INBOX_PREFIX: c.NATS_INBOX_PREFIX,
      onStatus: (event) => (event === "disconnect" || event === "reconnect" ? log.warn({ event }, "NATS connection") : undefined),
    }));
  await ensureTopology(nats, topologyOf(c));
  const checks: Record<string, () => Promise<boolean>> = { nats: () => nats.ping() };

  let worker: Worker | undefined;
  let users: UserState | undefined;
  let broadcasts: Broadcasts | undefined;
  let admin: FastifyInstance | undefined;
  if (runsWorker(c.ROLE)) {
    const w = requireWorker(c);
    const kc = deps.kubeConfig ?? kubeConfig();
    const store = deps.store ?? createObjectStore(w);
    const jobs = new SeparationJobs(kc, w.KUBE_NAMESPACE, {
      onInvalid: (sj) => {
        metrics.invalidSeparationJobs.inc();
        log.warn({ sj: sj.name, problems: sj.problems }, "invalid SeparationJob skipped: our schema refuses it");
      },
    });
    const whatsapp =
      deps.whatsapp ??
      createWhatsAppClient({
        baseUrl: w.WHATSAPP_API_URL,
        version: w.WHATSAPP_API_VERSION,
        accessToken: w.WHATSAPP_ACCESS_TOKEN,
        mediaHosts: w.WHATSAPP_MEDIA_HOSTS,
        timeoutMs: 15_000,
      });
    // `delete` removes the results' copies at WhatsApp too
    const cache = new ResultCache(
      store,
      w.RESULT_CACHE_TTL_SECONDS * S,
      deps.now ? () => new Date((deps.now as () => number)()) : undefined,
      whatsappMediaDeleter(whatsapp, log),
    );
    users = new UserState(nats, { secret: c.USER_KEY_SECRET, jobsPerHour: w.RATE_LIMIT_PER_HOUR, ...(deps.now ? { now: deps.now } : {}) });
    const handler = new MessageHandler({
      whatsapp,
      store,
      cache,
      jobs,
      users,
      nats,
      metrics,
      log,
      config: {
        model: modelId(w.MODEL_NAME),
        maxMediaBytes: w.MAX_INPUT_BYTES,
        jobsPerHour: w.RATE_LIMIT_PER_HOUR,
        auditDays: Math.round(c.AUDIT_MAX_AGE_SECONDS / (24 * 3600)),
      },
    });
    worker = new Worker(
      { nats, handler, metrics, log },
      {
        concurrency: w.WORKER_CONCURRENCY,
        maxDeliver: w.WORKER_MAX_DELIVER,
        backoffMs: w.WORKER_BACKOFF_SECONDS.map((s) => s * S),
        ackWaitMs: w.WORKER_ACK_WAIT_SECONDS * S,
        signingKey: c.INBOUND_SIGNING_KEY,
      },
    );
    broadcasts = new Broadcasts(
      { nats, users, whatsapp, metrics, log, ...(deps.now ? { now: deps.now } : {}) },
      {
        perSecond: w.BROADCAST_MESSAGES_PER_SECOND,
        maxAttempts: w.BROADCAST_MAX_ATTEMPTS,
        maxRetryDelayMs: w.BROADCAST_RETRY_MAX_SECONDS * S,
        ...(w.WHATSAPP_BUSINESS_ACCOUNT_ID ? { businessAccountId: w.WHATSAPP_BUSINESS_ACCOUNT_ID } : {}),
      },
    );
    const version = kc.makeApiClient(k8s.VersionApi);
    checks.kubernetes = async () => !!(await version.getCode());
    if (c.ADMIN_AUTH !== "off") {
      admin = fastify(log, nats, metrics, lifecycle);
      await admin.register(
        adminAuth,
        c.ADMIN_AUTH === "static-token"
          ? { mode: "static-token", token: c.ADMIN_TOKEN as string }
          : {
              mode: "kubernetes",
              namespace: w.KUBE_NAMESPACE,
              access: new OperatorAccess(kc, {
                audiences: c.ADMIN_TOKEN_AUDIENCES,
                cacheSeconds: c.ADMIN_AUTH_CACHE_SECONDS,
                cacheEntries: c.ADMIN_AUTH_CACHE_ENTRIES,
              }),
            },
      );
      await admin.register(consoleRoutes);
      await admin.register(adminRoutes, {
        users,
        cache,
        jobs,
        nats,
        broadcasts,
        ...(w.TRACING_UI_URL ? { tracingUiUrl: w.TRACING_UI_URL } : {}),
      });
    }
  }

  const app = fastify(log, nats, metrics, lifecycle);
  await app.register(healthRoutes, { checks });
  if (servesWebhook(c.ROLE)) {
    const h = requireWebhook(c);
    await app.register(webhookRoutes, {
      appSecret: h.WHATSAPP_APP_SECRET,
      verifyToken: h.WHATSAPP_VERIFY_TOKEN,
      userKeySecret: c.USER_KEY_SECRET,
      signingKey: c.INBOUND_SIGNING_KEY,
      bodyLimit: h.WEBHOOK_BODY_LIMIT_BYTES,
      publishTimeoutMs: h.PUBLISH_TIMEOUT_MS,
    });
  }
  app.addHook("preClose", async () => {
    lifecycle.shuttingDown = true;
  });

  await worker?.start();
  await broadcasts?.startSending();
  // the admin listener first: /readyz (on the public one) then means both take requests
  if (admin) await admin.listen({ host: c.ADMIN_HOST, port: c.ADMIN_PORT });
  await app.listen({ host: c.HOST, port: c.PORT });
  log.info({ role: c.ROLE, url: addressOf(app), admin: admin ? addressOf(admin) : "off" }, "ingress started");

  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      lifecycle.shuttingDown = true;
      await Promise.all([app.close(), admin?.close()]);
      await Promise.all([worker?.stop(c.SHUTDOWN_TIMEOUT_SECONDS * S), broadcasts?.stop()]);
      if (!deps.nats) await nats.drain();
      log.info("ingress stopped");
    })();
    return stopped;
  };
  return {
    url: addressOf(app),
    ...(admin ? { adminUrl: addressOf(admin) } : {}),
    nats,
    metrics,
    ...(worker ? { worker } : {}),
    ...(users ? { users } : {}),
    ...(broadcasts ? { broadcasts } : {}),
    stop,
  };
}
