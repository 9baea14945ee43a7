// A real S3 server (MinIO built from its Go module) with SigV4 presigned URLs.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./ports.ts";
import { type ManagedProcess, spawnManaged, waitUntil } from "./processes.ts";
import { bin } from "./versions.ts";

export interface S3Server {
  endpoint: string;
  region: string;
  accessKey: string;
  secretKey: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  crash(): Promise<void>;
  restart(): Promise<void>;
}

export async function startS3(dir: string): Promise<S3Server> {
  const port = await freePort();
  const consolePort = await freePort();
  const data = join(dir, "s3-data");
  mkdirSync(data, { recursive: true });
  const accessKey = "unmix-test";
  const secretKey = "unmix-test-secret";
  let proc: ManagedProcess | undefined;
  const start = async () => {
    proc = spawnManaged({
      name: "minio",
      command: bin("minio"),
      args: ["server", data, "--address", `127.0.0.1:${port}`, "--console-address", `127.0.0.1:${consolePort}`, "--quiet"],
      dir,
      env: { MINIO_ROOT_USER: accessKey, MINIO_ROOT_PASSWORD: secretKey, MINIO_BROWSER: "off", MINIO_UPDATE: "off", MINIO_CI_CD: "1" },
    });
    const p = proc;
    await waitUntil("minio", async () => (await fetch(`http://127.0.0.1:${port}/minio/health/ready`)).ok, { process: p, timeoutMs: 90_000 });
  };
  await start();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    region: "us-east-1",
    accessKey,
    secretKey,
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
