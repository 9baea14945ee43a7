// The ingress process: ROLE=webhook (the public webhook), worker (the JetStream consumer) or all
// (both in one process). Configuration errors stop it with exit status 78 naming each variable.
// Tracing starts before this module, from `--import ./ingress/src/telemetry.ts`.
import { ConfigError } from "@unmix/core/config";
import { createLogger } from "@unmix/core/log";
import { stopTelemetry } from "@unmix/core/spans";
import { parseIngressConfig } from "./config.ts";
import { startIngress } from "./service.ts";

let config: ReturnType<typeof parseIngressConfig>;
try {
  config = parseIngressConfig(process.env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`${err.message}\n`);
  process.exit(78);
}

const log = createLogger("unmix-ingress", { level: config.LOG_LEVEL });
const ingress = await startIngress(config, { logger: log }).catch((err) => {
  log.fatal({ err }, "ingress could not start");
  process.exit(1);
});

let signals = 0;
const shutdown = (signal: string) => {
  if (++signals > 1) {
    log.warn({ signal }, "second signal: exiting now");
    process.exit(1);
  }
  log.info({ signal }, "shutting down: draining in-flight work");
  const deadline = setTimeout(
    () => {
      log.error("shutdown took too long: exiting");
      process.exit(1);
    },
    (config.SHUTDOWN_TIMEOUT_SECONDS + 5) * 1000,
  );
  deadline.unref();
  ingress
    .stop()
    .then(stopTelemetry)
    .then(() => process.exit(0))
    .catch((err) => {
      log.error({ err }, "shutdown failed");
      process.exit(1);
    });
};
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
