// The controller's HTTP client for the API server: JSON requests and streaming watches over one
// keep-alive agent of node:https (no TLS handshake per request, and none of the ~27 MB that loading
// the undici package costs), a count of every request by verb (for metrics and the benchmark), and
// errors that carry the API's Status.
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { KubeConnection } from "./connection.ts";

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

/** The HTTP status of a failed call (undefined for an error that is not the API server's answer). */
export function statusCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "number" ? code : undefined;
}

export const isNotFound = (err: unknown) => statusCode(err) === 404;

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
  const server = new URL(conn.server);
  const tls = server.protocol === "https:";
  // watches hold a connection each (three informers); the rest share a small pool, and a burst of
  // requests queues for it rather than opening (and paying for) a TLS connection per request
  const pool = { keepAlive: true, keepAliveMsecs: 30_000, maxSockets: 24, maxFreeSockets: 8 };
  const agent = tls
    ? new HttpsAgent({
        ...pool,
        ...(conn.ca ? { ca: conn.ca } : {}),
        ...(conn.cert ? { cert: conn.cert } : {}),
        ...(conn.key ? { key: conn.key } : {}),
        ...(conn.insecureSkipTlsVerify ? { rejectUnauthorized: false } : {}),
        ...(conn.tlsServerName ? { servername: conn.tlsServerName } : {}),
      })
    : new HttpAgent(pool);
  const send = tls ? httpsRequest : httpRequest;
  const prefix = server.pathname.replace(/\/+$/, "");
  const count = (verb: string) => {
    requests.total++;
    requests.byVerb[verb] = (requests.byVerb[verb] ?? 0) + 1;
    for (const l of listeners) l(verb);
  };
  const headers = async (extra: Record<string, string> = {}) => {
    const auth = await conn.authorization();
    return { accept: "application/json", "user-agent": "unmix-controller/0.1", ...(auth ? { authorization: auth } : {}), ...extra };
  };
  /** One HTTP exchange; resolves with the response once its headers arrived. */
  const exchange = (method: string, path: string, hdrs: Record<string, string>, body: string | undefined, signal: AbortSignal) =>
    new Promise<IncomingMessage>((resolve, reject) => {
      const req = send(
        { protocol: server.protocol, hostname: server.hostname, port: server.port, path: prefix + path, method, headers: hdrs, agent, signal },
        resolve,
      );
      req.on("error", reject);
      req.end(body);
    });
  const readAll = async (res: IncomingMessage) => {
    res.setEncoding("utf8");
    let text = "";
    for await (const chunk of res) text += chunk;
    return text;
  };

  return {
    connection: conn,
    requests,
    onRequest: (l) => listeners.push(l),
    async request<T>(method: string, path: string, o: { body?: unknown; contentType?: string; signal?: AbortSignal } = {}): Promise<T> {
      count(method === "GET" && /[?&]limit=/.test(path) ? "list" : method.toLowerCase());
      const body = o.body === undefined ? undefined : JSON.stringify(o.body);
      const hdrs = await headers(
        body !== undefined ? { "content-type": o.contentType ?? "application/json", "content-length": String(Buffer.byteLength(body)) } : {},
      );
      const res = await exchange(method, path, hdrs, body, o.signal ?? AbortSignal.timeout(60_000));
      const text = await readAll(res);
      const status = res.statusCode ?? 0;
      if (status < 200 || status >= 300) throw new KubeApiError(status, text, `${method} ${path.split("?")[0]}`);
      return (text ? JSON.parse(text) : undefined) as T;
    },
    async watch(path, query, onEvent, o) {
      count("watch");
      const ctrl = new AbortController();
      const abort = () => ctrl.abort(o.signal.reason);
      if (o.signal.aborted) abort();
      o.signal.addEventListener("abort", abort, { once: true });
      let timer: NodeJS.Timeout | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => ctrl.abort(new DOMException(`no watch event for ${o.inactivityMs} ms`, "TimeoutError")), o.inactivityMs);
        timer.unref();
      };
      try {
        arm();
        const res = await exchange("GET", `${path}?${new URLSearchParams({ ...query, watch: "true" })}`, await headers(), undefined, ctrl.signal);
        if (res.statusCode !== 200) throw new KubeApiError(res.statusCode ?? 0, await readAll(res).catch(() => ""), `watch ${path}`);
        res.setEncoding("utf8");
        let buffered = "";
        for await (const chunk of res) {
          arm();
          buffered += chunk as string;
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
        if (ctrl.signal.aborted) throw ctrl.signal.reason;
      } catch (err) {
        if (ctrl.signal.aborted) throw ctrl.signal.reason ?? err;
        throw err;
      } finally {
        clearTimeout(timer);
        o.signal.removeEventListener("abort", abort);
      }
    },
    async close() {
      agent.destroy();
    },
  };
}
