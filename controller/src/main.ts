#!/usr/bin/env node
// The controller's entry point: `node controller/src/main.ts`. Configuration comes from the
// environment (controller/README.md); a bad variable stops it with status 78 naming the variable.
// SIGTERM/SIGINT: stop leading, let the reconciles in flight finish, hand the lease back, exit 0.
// Losing the lease exits 1, so Kubernetes restarts the replica as a standby with empty caches.
// Tracing starts before this module, from `--import ./controller/src/telemetry.ts`.
import { connectAuditLog } from "@unmix/core/audit";
import { loadConfigOrExit } from "@unmix/core/config";
import { createLogger } from "@unmix/core/log";
import { stopTelemetry } from "@unmix/core/spans";
import { ControllerConfig } from "./config.ts";
import { Controller } from "./controller.ts";
import { clockFromEnv } from "./framework/clock.ts";
import { startHttpServer } from "./framework/http-server.ts";
import { loadKubeConnection } from "./framework/kube/connection.ts";

const config = loadConfigOrExit(ControllerConfig);
const log = createLogger("unmix-controller");
const audit = connectAuditLog(config.nats, "unmix-controller");
const controller = new Controller({ config, log, clock: clockFromEnv(process.env, log), kube: await loadKubeConnection(), audit });
const http = await startHttpServer({ ...config.http, registry: controller.metrics.registry, health: controller.health });
log.info({ identity: controller.identity, namespace: config.namespace, http: http.url }, "controller starting");

async function exit(code: number): Promise<never> {
  await http.close().catch(() => {});
  await audit.close().catch(() => {});
  await stopTelemetry();
  process.exit(code);
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    log.info({ signal }, "shutting down: draining reconciles in flight, releasing the lease");
    // within the pod's terminationGracePeriodSeconds (30 s by default)
    setTimeout(() => {
      log.error("shutdown took too long; exiting");
      process.exit(1);
    }, 25_000).unref();
    void controller.stop();
  });
}

try {
  // resolves once stopped (after the drain and the lease release) or once leadership is lost
  const outcome = await controller.run();
  await exit(outcome === "lost" ? 1 : 0);
} catch (err) {
  log.fatal({ err }, "controller failed");
  await controller.stop().catch(() => {});
  await exit(1);
}
