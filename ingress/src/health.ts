// /healthz (the process is alive), /readyz (it can do its work: NATS and, for the worker, the API
// server answer; 503 while shutting down) and /metrics (Prometheus text, or OpenMetrics with
// exemplars when the scraper asks for it).
import { exposition } from "@unmix/core/metrics-exposition";
import type { FastifyPluginAsync } from "fastify";

export interface HealthOptions {
  /** Named readiness checks; each resolves true when its dependency answers. */
  checks: Record<string, () => Promise<boolean>>;
  timeoutMs?: number;
}

const within = (p: Promise<boolean>, ms: number) =>
  new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    p.then(
      (v) => resolve(v),
      () => resolve(false),
    ).finally(() => clearTimeout(timer));
  });

export const healthRoutes: FastifyPluginAsync<HealthOptions> = async (app, o) => {
  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async (_req, reply) => {
    if (app.lifecycle.shuttingDown) return reply.code(503).send({ status: "shutting down" });
    const names = Object.keys(o.checks);
    const results = await Promise.all(names.map((n) => within((o.checks[n] as () => Promise<boolean>)(), o.timeoutMs ?? 2000)));
    const checks = Object.fromEntries(names.map((n, i) => [n, results[i] ? "ok" : "unreachable"]));
    return reply.code(results.every(Boolean) ? 200 : 503).send({ status: results.every(Boolean) ? "ready" : "not ready", checks });
  });

  app.get("/metrics", async (req, reply) => {
    const { contentType, body } = await exposition(app.metrics.registry, req.headers.accept);
    return reply.type(contentType).send(body);
  });
};
