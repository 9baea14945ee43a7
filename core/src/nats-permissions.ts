// What each component's NATS user may publish and subscribe to: the least the product needs. The
// chart gives each component its own user (charts/unmix/README.md shows the server configuration
// this renders); the local stack's NATS runs with exactly these (e2e/src/stack/nats.ts).
//   webhook     publishes inbound messages and its own audit entries; may create or update the
//               streams and buckets (the topology at start-up) but read no message
//   worker      consumes the inbound stream, key-value buckets, dead letters, its audit entries,
//               broadcast campaigns (publishes their recipients, consumes them); may not publish
//               inbound messages
//   controller  publishes its audit entries, nothing else
// Every user receives replies (acknowledgements, API answers) on its own inbox prefix only, so no
// user can read another's replies.
import { AUDIT_EVENTS, auditSubject } from "./audit.ts";

export type NatsComponent = "webhook" | "worker" | "controller";

export interface NatsPermissions {
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[]; deny?: string[] };
}

/** The inbox prefix of a component's replies (the client's inboxPrefix). */
export const inboxPrefix = (component: NatsComponent | "ingress") => `_INBOX_unmix_${component}`;

const audit = (c: keyof typeof AUDIT_EVENTS) => AUDIT_EVENTS[c].map(auditSubject);

export const NATS_PERMISSIONS: Record<NatsComponent, NatsPermissions> = {
  webhook: {
    publish: {
      allow: ["unmix.inbound.>", ...audit("webhook"), "$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.STREAM.CREATE.*", "$JS.API.STREAM.UPDATE.*"],
    },
    subscribe: { allow: [`${inboxPrefix("webhook")}.>`] },
  },
  worker: {
    publish: {
      allow: ["unmix.deadletter.>", "unmix.broadcast.>", ...audit("worker"), "$JS.API.>", "$JS.ACK.UNMIX_INBOUND.>", "$JS.ACK.UNMIX_BROADCAST.>", "$KV.>"],
      deny: ["unmix.inbound.>"],
    },
    subscribe: { allow: [`${inboxPrefix("worker")}.>`, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"] },
  },
  controller: {
    publish: { allow: audit("controller") },
    subscribe: { allow: [`${inboxPrefix("controller")}.>`] },
  },
};

/** ROLE=all runs the webhook and the worker in one process: what either may. */
export function ingressPermissions(): NatsPermissions {
  const { webhook, worker } = NATS_PERMISSIONS;
  return {
    publish: { allow: [...new Set([...webhook.publish.allow, ...worker.publish.allow])] },
    subscribe: { allow: [`${inboxPrefix("ingress")}.>`, ...worker.subscribe.allow.slice(1)] },
  };
}

/** Every user the chart and the local stack define, with its permissions and inbox prefix (charts/unmix/files/nats-permissions.json). */
export function natsUsers(): Record<NatsComponent | "ingress", NatsPermissions & { inboxPrefix: string }> {
  const withInbox = (c: NatsComponent | "ingress", p: NatsPermissions) => ({ ...p, inboxPrefix: inboxPrefix(c) });
  return {
    webhook: withInbox("webhook", NATS_PERMISSIONS.webhook),
    worker: withInbox("worker", NATS_PERMISSIONS.worker),
    controller: withInbox("controller", NATS_PERMISSIONS.controller),
    ingress: withInbox("ingress", ingressPermissions()),
  };
}

/** A nats-server `authorization` block for these users (the local stack; the chart README shows one). */
export function natsServerAuthorization(users: { user: string; password: string; permissions?: NatsPermissions }[]): string {
  const list = (xs: string[]) => `[${xs.map((x) => JSON.stringify(x)).join(", ")}]`;
  const perms = (p: NatsPermissions) =>
    `permissions: { publish: { allow: ${list(p.publish.allow)}${p.publish.deny ? `, deny: ${list(p.publish.deny)}` : ""} }, subscribe: { allow: ${list(p.subscribe.allow)} } }`;
  const lines = users.map(
    (u) => `    { user: ${JSON.stringify(u.user)}, password: ${JSON.stringify(u.password)}${u.permissions ? `, ${perms(u.permissions)}` : ""} }`,
  );
  return `authorization {\n  users: [\n${lines.join("\n")}\n  ]\n}\n`;
}
