// Real NATS with JetStream on a file store, restartable on the same port and store (crash tests).
// It runs with authorization as production should: one user per component with the permissions of
// core/src/nats-permissions.ts (webhook, worker, controller, and `ingress` for ROLE=all), and an
// `operator` user allowed everything, for tests that look at streams the way an operator would.
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { inboxPrefix, ingressPermissions, NATS_PERMISSIONS, type NatsPermissions, natsServerAuthorization } from "@unmix/core/nats-permissions";
import { freePort } from "./ports.ts";
import { type Restartable, restartable, spawnManaged, waitUntil } from "./processes.ts";
import { bin } from "./versions.ts";

export type NatsUserName = "webhook" | "worker" | "ingress" | "controller" | "operator";

export interface NatsUser {
  user: string;
  password: string;
}

export interface NatsServer extends Restartable {
  url: string;
  monitorUrl: string;
  users: Record<NatsUserName, NatsUser>;
  /** NATS_URL, NATS_USER, NATS_PASSWORD and NATS_INBOX_PREFIX for a component (the operator gets the default inbox). */
  env(user: NatsUserName): Record<string, string>;
  /** Client connection options for a user (servers, user, pass, inboxPrefix). */
  connectOptions(user: NatsUserName): { servers: string; user: string; pass: string; inboxPrefix?: string };
}

const PERMISSIONS: Record<NatsUserName, NatsPermissions | undefined> = {
  ...NATS_PERMISSIONS,
  ingress: ingressPermissions(),
  operator: undefined,
};

export async function startNats(dir: string): Promise<NatsServer> {
  const port = await freePort();
  const monitor = await freePort();
  const store = join(dir, "jetstream");
  mkdirSync(store, { recursive: true });
  const users = Object.fromEntries(
    (Object.keys(PERMISSIONS) as NatsUserName[]).map((name) => [name, { user: name, password: randomBytes(12).toString("hex") }]),
  ) as Record<NatsUserName, NatsUser>;
  const config = join(dir, "nats.conf");
  writeFileSync(
    config,
    natsServerAuthorization(
      (Object.keys(users) as NatsUserName[]).map((name) => ({ ...users[name], ...(PERMISSIONS[name] ? { permissions: PERMISSIONS[name] } : {}) })),
    ),
    { mode: 0o600 },
  );
  const server = await restartable(async () => {
    const proc = spawnManaged({
      name: "nats-server",
      command: bin("nats-server"),
      args: ["-c", config, "-a", "127.0.0.1", "-p", String(port), "-m", String(monitor), "-js", "-sd", store],
      dir,
    });
    await waitUntil("nats-server", async () => (await fetch(`http://127.0.0.1:${monitor}/healthz?js-enabled-only=true`)).ok, { process: proc });
    return proc;
  });
  const url = `nats://127.0.0.1:${port}`;
  const inbox = (name: NatsUserName) => (name === "operator" ? undefined : inboxPrefix(name));
  return {
    ...server,
    url,
    monitorUrl: `http://127.0.0.1:${monitor}`,
    users,
    env: (name) => ({
      NATS_URL: url,
      NATS_USER: users[name].user,
      NATS_PASSWORD: users[name].password,
      ...(inbox(name) ? { NATS_INBOX_PREFIX: inbox(name) as string } : {}),
    }),
    connectOptions: (name) => ({ servers: url, user: users[name].user, pass: users[name].password, ...(inbox(name) ? { inboxPrefix: inbox(name) } : {}) }),
  };
}
