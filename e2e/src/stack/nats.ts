// Real NATS with JetStream on a file store, restartable on the same port and store (crash tests).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./ports.ts";
import { type ManagedProcess, spawnManaged, waitUntil } from "./processes.ts";
import { bin } from "./versions.ts";

export interface NatsServer {
  url: string;
  monitorUrl: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Hard kill (SIGKILL), as a crash would. */
  crash(): Promise<void>;
  restart(): Promise<void>;
}

export async function startNats(dir: string): Promise<NatsServer> {
  const port = await freePort();
  const monitor = await freePort();
  const store = join(dir, "jetstream");
  mkdirSync(store, { recursive: true });
  let proc: ManagedProcess | undefined;
  const start = async () => {
    proc = spawnManaged({ name: "nats-server", command: bin("nats-server"), args: ["-a", "127.0.0.1", "-p", String(port), "-m", String(monitor), "-js", "-sd", store], dir });
    const p = proc;
    await waitUntil("nats-server", async () => (await fetch(`http://127.0.0.1:${monitor}/healthz?js-enabled-only=true`)).ok, { process: p });
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    monitorUrl: `http://127.0.0.1:${monitor}`,
    start,
    stop: async () => proc?.stop(),
    crash: async () => {
      proc?.kill("SIGKILL");
      await proc?.exited;
    },
    async restart() {
      await proc?.stop();
      await start();
    },
  };
}
