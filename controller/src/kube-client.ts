// The controller's connection to the API server: one shared HTTP dispatcher (client-node 2.0
// builds a new undici Agent, so a new TLS connection, for every request), a count of every request
// by verb (for metrics and the benchmark), and a raw JSON request for what the informers need (the
// generated clients turn times into Date objects; a watch delivers strings; the cache keeps one form).
import { k8s } from "@unmix/core/kube";
import { fetch } from "undici";

export interface RequestCount {
  total: number;
  byVerb: Record<string, number>;
}

export interface KubeClient {
  kc: k8s.KubeConfig;
  requests: RequestCount;
  /** A JSON request to the API server; throws an ApiException-like {code, body} on a non-2xx answer. */
  request<T = unknown>(method: string, path: string, options?: { body?: unknown; contentType?: string; signal?: AbortSignal }): Promise<T>;
  onRequest(listener: (verb: string) => void): void;
}

export class KubeApiError extends Error {
  readonly code: number;
  readonly body: string;
  constructor(code: number, body: string, what: string) {
    super(`${what}: HTTP ${code}${body ? ` ${body.slice(0, 300)}` : ""}`);
    this.name = "KubeApiError";
    this.code = code;
    this.body = body;
  }
}

/** Watch requests count as "watch", list-like GETs of collections as "list". */
function verbOf(method: string, url: string): string {
  const m = method.toUpperCase();
  if (m !== "GET") return m.toLowerCase();
  const u = new URL(url);
  if (u.searchParams.get("watch") === "true") return "watch";
  return "get";
}

export function createKubeClient(kc: k8s.KubeConfig): KubeClient {
  const requests: RequestCount = { total: 0, byVerb: {} };
  const listeners: ((verb: string) => void)[] = [];
  // One dispatcher for every request: TLS settings come from the kubeconfig and do not change.
  type Dispatching = { createDispatcher(cluster: unknown, options: unknown): unknown };
  const d = kc as unknown as Dispatching;
  const create = d.createDispatcher.bind(kc);
  let shared: unknown;
  let made = false;
  d.createDispatcher = (cluster, options) => {
    if (!made) {
      shared = create(cluster, options);
      made = true;
    }
    return shared;
  };
  const apply = kc.applySecurityAuthentication.bind(kc);
  kc.applySecurityAuthentication = async (ctx) => {
    const verb = verbOf(ctx.getHttpMethod().toString(), ctx.getUrl());
    requests.total++;
    requests.byVerb[verb] = (requests.byVerb[verb] ?? 0) + 1;
    for (const l of listeners) l(verb);
    await apply(ctx);
  };

  const server = () => {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("the kubeconfig has no current cluster");
    return cluster.server.replace(/\/+$/, "");
  };

  return {
    kc,
    requests,
    onRequest: (l) => listeners.push(l),
    async request<T>(method: string, path: string, o: { body?: unknown; contentType?: string; signal?: AbortSignal } = {}): Promise<T> {
      const ctx = new k8s.RequestContext(server() + path, method as k8s.HttpMethod);
      await kc.applySecurityAuthentication(ctx);
      const headers: Record<string, string> = { ...ctx.getHeaders(), accept: "application/json" };
      if (o.body !== undefined) headers["content-type"] = o.contentType ?? "application/json";
      const res = await fetch(ctx.getUrl(), {
        method,
        headers,
        body: o.body === undefined ? undefined : JSON.stringify(o.body),
        dispatcher: ctx.getDispatcher() as never,
        signal: o.signal ?? AbortSignal.timeout(60_000),
      });
      const text = await res.text();
      if (!res.ok) throw new KubeApiError(res.status, text, `${method} ${path.split("?")[0]}`);
      return (text ? JSON.parse(text) : undefined) as T;
    },
  };
}
