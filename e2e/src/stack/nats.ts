// Real NATS with JetStream on a file store, restartable on the same port and store (crash tests).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./ports.ts";
import { type Restartable, restartable, spawnManaged, waitUntil } from "./processes.ts";
import { bin } from "./versions.ts";

export interface NatsServer extends Restartable {
  url: string;
  monitorUrl: string;
}

export async function startNats(dir: string): Promise<NatsServer> {
  const port = await freePort();
  const monitor = await freePort();
  const store = join(dir, "jetstream");
  mkdirSync(store, { recursive: true });
  const server = await restartable(async () => {
    const proc = spawnManaged({
      name: "nats-server",
      command: bin("nats-server"),
      args: ["-a", "127.0.0.1", "-p", String(port), "-m", String(monitor), "-js", "-sd", store],
      dir,
    });
    await waitUntil("nats-server", async () => (await fetch(`http://127.0.0.1:${monitor}/healthz?js-enabled-only=true`)).ok, { process: proc });
    return proc;
  });
  return { ...server, url: `nats://127.0.0.1:${port}`, monitorUrl: `http://127.0.0.1:${monitor}` };
}
