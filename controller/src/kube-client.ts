// The controller's HTTP client for the API server: JSON requests and streaming watches over one
// shared undici Agent (keep-alive connections, not a TLS handshake per request), a count of every
// request by verb (for metrics and the benchmark), and errors that carry the API's Status.
import { Agent, fetch } from "undici";
import type { KubeConnection } from "./kube-config.ts";

export interface RequestCount {
  total: number;
  byVerb: Record<string, number>;
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

/** The Status reason of a failed call (AlreadyExists, Conflict, NotFound, …). */
export function reasonOf(err: unknown): string | undefined {
  const e = err as { code?: unknown; body?: unknown };
  if (typeof e?.code !== "number") return undefined;
  try {
    const body = typeof e.body === "string" ? JSON.parse(e.body) : e.body;
    if (body?.reason) return String(body.reason);
  } catch {
    // not a Status
  }
  return ({ 404: "NotFound", 409: "Conflict", 410: "Expired", 422: "Invalid", 429: "TooManyRequests" } as Record<number, string>)[e.code];
}
export const isNotFound = (err: unknown) => (err as { code?: number })?.code === 404;

export type WatchEventHandler = (type: string, object: unknown) => void;

export interface KubeClient {
  connection: KubeConnection;
  requests: RequestCount;
  onRequest(listener: (verb: string) => void): void;
  /** A JSON request; throws KubeApiError on a non-2xx answer. */
  request<T = unknown>(method: string, path: string, options?: { body?: unknown; contentType?: string; signal?: AbortSignal }): Promise<T>;
  /**
   * Streams a watch until the server ends it (resolves), it fails (rejects), or nothing at all
   * arrives for `inactivityMs` (rejects with a TimeoutError).
   */
  watch(path: string, query: Record<string, string>, onEvent: WatchEventHandler, o: { signal: AbortSignal; inactivityMs: number }): Promise<void>;
  close(): Promise<void>;
}

export function createKubeClient(conn: KubeConnection): KubeClient {
  const requests: RequestCount = { total: 0, byVerb: {} };
  const listeners: ((verb: string) => void)[] = [];
  const agent = new Agent({
    connect: {
      ...(conn.ca ? { ca: conn.ca } : {}),
      ...(conn.cert ? { cert: conn.cert } : {}),
      ...(conn.key ? { key: conn.key } : {}),
      ...(conn.insecureSkipTlsVerify ? { rejectUnauthorized: false } : {}),
      ...(conn.tlsServerName ? { servername: conn.tlsServerName } : {}),
      keepAlive: true,
      keepAliveInitialDelay: 30_000,
    },
    keepAliveTimeout: 30_000,
  });
  const count = (verb: string) => {
    requests.total++;
    requests.byVerb[verb] = (requests.byVerb[verb] ?? 0) + 1;
    for (const l of listeners) l(verb);
  };
  const headers = async (extra: Record<string, string> = {}) => {
    const auth = await conn.authorization();
    return { accept: "application/json", "user-agent": "unmix-controller/0.1", ...(auth ? { authorization: auth } : {}), ...extra };
  };

  return {
    connection: conn,
    requests,
    onRequest: (l) => listeners.push(l),
    async request<T>(method: string, path: string, o: { body?: unknown; contentType?: string; signal?: AbortSignal } = {}): Promise<T> {
      count(method === "GET" && /[?&]limit=/.test(path) ? "list" : method.toLowerCase());
      const res = await fetch(conn.server + path, {
        method,
        headers: await headers(o.body !== undefined ? { "content-type": o.contentType ?? "application/json" } : {}),
        body: o.body === undefined ? undefined : JSON.stringify(o.body),
        dispatcher: agent,
        signal: o.signal ?? AbortSignal.timeout(60_000),
      });
      const text = await res.text();
      if (!res.ok) throw new KubeApiError(res.status, text, `${method} ${path.split("?")[0]}`);
      return (text ? JSON.parse(text) : undefined) as T;
    },
    async watch(path, query, onEvent, o) {
      count("watch");
      const url = `${conn.server}${path}?${new URLSearchParams({ ...query, watch: "true" })}`;
      const ctrl = new AbortController();
      const abort = () => ctrl.abort(o.signal.reason);
      o.signal.addEventListener("abort", abort, { once: true });
      let timer: NodeJS.Timeout | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => ctrl.abort(new DOMException(`no watch event for ${o.inactivityMs} ms`, "TimeoutError")), o.inactivityMs);
        timer.unref();
      };
      try {
        arm();
        const res = await fetch(url, { headers: await headers(), dispatcher: agent, signal: ctrl.signal });
        if (!res.ok || !res.body) throw new KubeApiError(res.status, await res.text().catch(() => ""), `watch ${path}`);
        const decoder = new TextDecoder();
        let buffered = "";
        for await (const chunk of res.body) {
          arm();
          buffered += decoder.decode(chunk as Uint8Array, { stream: true });
          let nl = buffered.indexOf("\n");
          while (nl >= 0) {
            const line = buffered.slice(0, nl).trim();
            buffered = buffered.slice(nl + 1);
            if (line) {
              const e = JSON.parse(line) as { type: string; object: unknown };
              onEvent(e.type, e.object);
            }
            nl = buffered.indexOf("\n");
          }
        }
      } catch (err) {
        if (ctrl.signal.aborted) throw ctrl.signal.reason ?? err;
        throw err;
      } finally {
        clearTimeout(timer);
        o.signal.removeEventListener("abort", abort);
      }
    },
    close: () => agent.close(),
  };
}
