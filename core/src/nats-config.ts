// How a service reaches NATS: the server URLs and its own credentials. The chart gives each
// component a user with only the permissions it needs (charts/unmix/README.md), so a pod without
// them can neither publish an inbound message nor read one. Shared by the ingress and the controller.
import { readFileSync } from "node:fs";
import { type ConnectionOptions, credsAuthenticator } from "nats";
import { z } from "zod";
import { env } from "./config.ts";

export const NatsConfig = z.object({
  NATS_URL: z.string().min(1).default("nats://127.0.0.1:4222").describe("comma-separated server URLs"),
  /** A NATS credentials file (JWT + nkey seed), when the server uses decentralised JWT auth. */
  NATS_CREDS_FILE: z.string().min(1).optional(),
  /** This component's user and password (the chart's per-component users); both or neither. */
  NATS_USER: z.string().min(1).optional(),
  NATS_PASSWORD: z.string().min(8, "must be at least 8 characters").optional(),
  /** Where this component's replies come (nats-permissions.ts: each user may read its own inbox only). */
  NATS_INBOX_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .default("_INBOX"),
  /** Replicas of every stream and bucket (1 on a single server, 3 on a cluster). */
  NATS_REPLICAS: env.int(1, 1),
});
export type NatsConfig = z.infer<typeof NatsConfig>;

export type NatsIdentity = Pick<NatsConfig, "NATS_CREDS_FILE" | "NATS_USER" | "NATS_PASSWORD"> & { NATS_INBOX_PREFIX?: string };

/** The authentication part of the client's connection options, and its inbox. */
export function natsAuth(c: NatsIdentity): Partial<ConnectionOptions> {
  const inbox = c.NATS_INBOX_PREFIX ? { inboxPrefix: c.NATS_INBOX_PREFIX } : {};
  if (c.NATS_CREDS_FILE) return { ...inbox, authenticator: credsAuthenticator(readFileSync(c.NATS_CREDS_FILE)) };
  if ((c.NATS_USER === undefined) !== (c.NATS_PASSWORD === undefined)) throw new Error("NATS_USER and NATS_PASSWORD go together");
  return { ...inbox, ...(c.NATS_USER ? { user: c.NATS_USER, pass: c.NATS_PASSWORD as string } : {}) };
}
