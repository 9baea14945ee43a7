// The ingress's configuration: every variable validated with zod at start-up. What a role does not
// use it does not require (the webhook alone needs no WhatsApp token, kubeconfig or object store).

import { MODEL_NAMES } from "@unmix/api/models";
import { ADMIN_AUDIENCE } from "@unmix/api/support";
import { env, parseConfig } from "@unmix/core/config";
import { NatsConfig } from "@unmix/core/nats-config";
import { ObjectStoreConfig } from "@unmix/core/object-store";
import { CACHE_TTL_MAX_SECONDS, CACHE_TTL_TOO_LONG } from "@unmix/core/result-cache";
import { WhatsAppConfig } from "@unmix/core/whatsapp";
import { z } from "zod";
import { MediaConfig } from "./media.ts";

export const Role = z.enum(["webhook", "worker", "all"]);
export const AdminAuth = z.enum(["kubernetes", "static-token", "off"]);
export type Role = z.infer<typeof Role>;

const DAY = 24 * 3600;

/** A comma-separated list of durations in seconds, e.g. "30,60,300". */
const secondsList = (def: string) =>
  z
    .string()
    .default(def)
    .transform((v) =>
      v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
        .map(Number),
    )
    .pipe(z.array(z.number().positive("each delay must be a positive number of seconds")).min(1));

const Base = z
  .object({
    ROLE: Role.default("all"),
    /** The Helm chart binds to the pod IP. */
    HOST: z.string().min(1).default("0.0.0.0"),
    PORT: env.port(8080),
    /** Admin endpoints (purge, broadcast, jobs) listen here, never on the public listener: localhost unless exposed on purpose. */
    ADMIN_HOST: z.string().min(1).default("127.0.0.1"),
    ADMIN_PORT: env.port(8081),
    /** How operators are checked (admin-auth.ts): Kubernetes token and access reviews, one shared ADMIN_TOKEN, or no admin listener. */
    ADMIN_AUTH: AdminAuth.default("kubernetes"),
    // empty is unset (a chart that renders the variable without a value)
    ADMIN_TOKEN: z.preprocess((v) => (v === "" ? undefined : v), z.string().min(16, "must be at least 16 characters").optional()),
    /** The audiences an operator's token must be meant for; empty: the API server's own (replayable against it). */
    ADMIN_TOKEN_AUDIENCES: z
      .string()
      .default(ADMIN_AUDIENCE)
      .transform((v) =>
        v
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean),
      ),
    /** How long a token or access review's answer is kept, and how many at most. */
    ADMIN_AUTH_CACHE_SECONDS: env.seconds(10),
    ADMIN_AUTH_CACHE_ENTRIES: env.int(1024, 1),
    /** HMAC key for user keys (the hash of a phone number or BSUID used in labels, KV keys and subjects). */
    USER_KEY_SECRET: env.secret(),
    /** HMAC key the webhook signs inbound messages with and the worker checks them with (signing.ts). */
    INBOUND_SIGNING_KEY: env.secret(),
    SHUTDOWN_TIMEOUT_SECONDS: env.seconds(25),
    LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    // JetStream layout
    INBOUND_MAX_AGE_SECONDS: env.seconds(7 * DAY),
    DEDUP_WINDOW_SECONDS: env.seconds(600),
    AUDIT_MAX_AGE_SECONDS: env.seconds(30 * DAY),
    DEADLETTER_MAX_AGE_SECONDS: env.seconds(14 * DAY),
    PROCESSED_TTL_SECONDS: env.seconds(8 * DAY).pipe(z.number().min(7 * DAY, "must outlive Meta's 7-day retry window (604800 s or more)")),
    ACTIVE_USER_TTL_SECONDS: env.seconds(30 * DAY),
  })
  .extend(NatsConfig.shape);

const Webhook = z.object({
  WHATSAPP_APP_SECRET: env.secret(),
  WHATSAPP_VERIFY_TOKEN: z.string().min(8, "must be at least 8 characters"),
  WEBHOOK_BODY_LIMIT_BYTES: env.int(3 * 1024 * 1024, 1024),
  PUBLISH_TIMEOUT_MS: env.int(5000, 100),
});

const Worker = z
  .object({
    KUBE_NAMESPACE: env.namespace(),
    /** The model the controller runs (models.ts): the result cache is looked up under its id. */
    MODEL_NAME: z.enum(MODEL_NAMES).default("htdemucs"),
    RESULT_CACHE_TTL_SECONDS: env.seconds(CACHE_TTL_MAX_SECONDS).pipe(z.number().max(CACHE_TTL_MAX_SECONDS, CACHE_TTL_TOO_LONG)),
    RATE_LIMIT_PER_HOUR: env.int(20, 1),
    WORKER_CONCURRENCY: env.int(8, 1),
    WORKER_ACK_WAIT_SECONDS: env.seconds(30).pipe(z.number().min(1)),
    WORKER_MAX_DELIVER: env.int(6, 2),
    /** Delay before each redelivery of a message whose handling failed; the last one repeats. */
    WORKER_BACKOFF_SECONDS: secondsList("5,30,120,600,1800"),
    /** The support console links each message's trace here, e.g. https://jaeger.example/trace/{traceId}. */
    TRACING_UI_URL: z
      .url()
      .refine((u) => u.includes("{traceId}"), "must contain the placeholder {traceId}")
      .optional(),
    /** The WhatsApp Business Account whose templates a broadcast's approval check reads (GET /{id}/message_templates). */
    WHATSAPP_BUSINESS_ACCOUNT_ID: z
      .string()
      .regex(/^\d{5,20}$/, "the numeric WhatsApp Business Account id")
      .optional(),
    /** Policy broadcasts: notices per second per worker (Meta's 80/s per number is shared with the replies). */
    BROADCAST_MESSAGES_PER_SECOND: z.coerce.number().positive().max(1000).default(20),
    /** Sends per recipient before it counts as failed (130429/131056 and temporary errors are retried). */
    BROADCAST_MAX_ATTEMPTS: env.int(6, 1),
    /** The longest wait before a retry (131056 waits 4^X s). */
    BROADCAST_RETRY_MAX_SECONDS: env.seconds(300).pipe(z.number().min(1)),
  })
  .extend(WhatsAppConfig.shape)
  .extend(ObjectStoreConfig.shape)
  .extend(MediaConfig.shape);

export type WebhookConfig = z.infer<typeof Webhook>;
export type WorkerConfig = z.infer<typeof Worker>;
export type IngressConfig = z.infer<typeof Base> & Partial<WebhookConfig> & Partial<WorkerConfig> & { ROLE: Role };

export const servesWebhook = (r: Role) => r === "webhook" || r === "all";
export const runsWorker = (r: Role) => r === "worker" || r === "all";

/** Parses the environment for the role it names; throws ConfigError naming each bad variable. */
export function parseIngressConfig(e: Record<string, string | undefined> = process.env): IngressConfig {
  const role = parseConfig(z.object({ ROLE: Role.default("all") }), e).ROLE;
  let schema = Base;
  if (servesWebhook(role)) schema = schema.extend(Webhook.shape) as unknown as typeof Base;
  if (runsWorker(role)) schema = schema.extend(Worker.shape) as unknown as typeof Base;
  return parseConfig(
    schema.superRefine((c, ctx) => {
      if (c.ADMIN_AUTH === "static-token" && !c.ADMIN_TOKEN)
        ctx.addIssue({ code: "custom", path: ["ADMIN_TOKEN"], message: "ADMIN_AUTH=static-token needs it" });
      if (c.ADMIN_AUTH !== "static-token" && c.ADMIN_TOKEN)
        ctx.addIssue({
          code: "custom",
          path: ["ADMIN_TOKEN"],
          message: `is set but ADMIN_AUTH is ${c.ADMIN_AUTH}: set ADMIN_AUTH=static-token to use it, or unset it`,
        });
    }),
    e,
  ) as IngressConfig;
}

export const requireWebhook = (c: IngressConfig) => c as IngressConfig & WebhookConfig;
export const requireWorker = (c: IngressConfig) => c as IngressConfig & WorkerConfig;
