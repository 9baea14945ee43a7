#!/usr/bin/env node
// The controller's entry point: `node controller/src/main.ts`. Configuration comes from the
// environment (controller/README.md); a bad variable stops it with status 78 naming the variable.
// SIGTERM/SIGINT: stop leading, let the reconciles in flight finish, hand the lease back, exit 0.
// Losing the lease exits 1, so Kubernetes restarts the replica as a standby with empty caches.
import { loadConfigOrExit } from "@unmix/core/config";
import { createLogger } from "@unmix/core/log";
import { startTelemetry } from "@unmix/core/telemetry";
import { ControllerConfig } from "./config.ts";
import { Controller } from "./controller.ts";
import { startHttpServer } from "./http-server.ts";

const config = loadConfigOrExit(ControllerConfig);
const telemetry = startTelemetry("unmix-controller");
const log = createLogger("unmix-controller");
const controller = new Controller({ config, log });
const http = await startHttpServer({ ...config.http, registry: controller.metrics.registry, health: controller.health });
log.info({ identity: controller.identity, namespace: config.namespace, http: http.url }, "controller starting");

let exiting = false;
async function exit(code: number): Promise<never> {
  exiting = true;
  await http.close().catch(() => {});
  await telemetry.shutdown().catch(() => {});
  process.exit(code);
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    log.info({ signal }, "shutting down: draining reconciles in flight, releasing the lease");
    const force = setTimeout(() => {
      log.error("shutdown took too long; exiting");
      process.exit(1);
    }, 25_000);
    force.unref();
    void controller.stop().then(() => exit(0));
  });
}

try {
  const outcome = await controller.run();
  if (!exiting) await exit(outcome === "lost" ? 1 : 0);
} catch (err) {
  log.fatal({ err }, "controller failed");
  await exit(1);
}
