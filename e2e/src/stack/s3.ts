// A real S3 server (MinIO built from its Go module) with SigV4 presigned URLs.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./ports.ts";
import { type Restartable, restartable, spawnManaged, waitUntil } from "./processes.ts";
import { bin } from "./versions.ts";

export interface S3Server extends Restartable {
  endpoint: string;
  region: string;
  accessKey: string;
  secretKey: string;
}

export async function startS3(dir: string): Promise<S3Server> {
  const port = await freePort();
  const consolePort = await freePort();
  const data = join(dir, "s3-data");
  mkdirSync(data, { recursive: true });
  const accessKey = "unmix-test";
  const secretKey = "unmix-test-secret";
  const server = await restartable(async () => {
    const proc = spawnManaged({
      name: "minio",
      command: bin("minio"),
      args: ["server", data, "--address", `127.0.0.1:${port}`, "--console-address", `127.0.0.1:${consolePort}`, "--quiet"],
      dir,
      env: { MINIO_ROOT_USER: accessKey, MINIO_ROOT_PASSWORD: secretKey, MINIO_BROWSER: "off", MINIO_UPDATE: "off", MINIO_CI_CD: "1" },
    });
    await waitUntil("minio", async () => (await fetch(`http://127.0.0.1:${port}/minio/health/ready`)).ok, { process: proc, timeoutMs: 90_000 });
    return proc;
  });
  return { ...server, endpoint: `http://127.0.0.1:${port}`, region: "us-east-1", accessKey, secretKey };
}
