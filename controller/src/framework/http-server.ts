// /metrics (Prometheus, or OpenMetrics with exemplars when the scraper asks for it), /healthz
// (liveness) and /readyz (readiness) on a small HTTP server.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exposition } from "@unmix/core/metrics-exposition";
import type { Registry } from "prom-client";

export interface Health {
  /** undefined when healthy, else why not (a stalled informer, a lost lease). */
  liveness(): string | undefined;
  readiness(): string | undefined;
}

export interface HttpServer {
  url: string;
  close(): Promise<void>;
}

export async function startHttpServer(o: { host: string; port: number; registry: Registry; health: Health }): Promise<HttpServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const answer = (problem: string | undefined) => {
      res.writeHead(problem ? 503 : 200, { "content-type": "text/plain; charset=utf-8" });
      res.end(problem ? `not ok: ${problem}\n` : "ok\n");
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405).end();
      return;
    }
    if (path === "/healthz" || path === "/livez") return answer(o.health.liveness());
    if (path === "/readyz") return answer(o.health.readiness());
    if (path === "/metrics") {
      exposition(o.registry, req.headers.accept).then(
        ({ contentType, body }) => {
          res.writeHead(200, { "content-type": contentType });
          res.end(body);
        },
        (err: Error) => {
          res.writeHead(500).end(err.message);
        },
      );
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${addr.port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
