// How the HTTP server/client (node:http) and fetch (undici) instrumentations name their spans and what
// they leave out, shared by every service. A client span is named after what it called
// ("POST /v24.0/{id}/messages"), not a bare "POST"; a server span gets its route from the framework
// ("POST /webhook"). Probes and scrapes make no traces: they would drown the messages' traces.
import type { Span } from "@opentelemetry/api";
import type { Instrumentation } from "@opentelemetry/instrumentation";
import { HttpInstrumentation, type HttpInstrumentationConfig } from "@opentelemetry/instrumentation-http";
import { UndiciInstrumentation, type UndiciInstrumentationConfig } from "@opentelemetry/instrumentation-undici";

const UNTRACED = new Set(["/healthz", "/livez", "/readyz", "/metrics"]);

// a path segment that names one object (a media id, an object key, a hash) rather than a kind of call
const ID_SEGMENT = /\d{6,}|[\da-f]{16,}|[\w-]{33,}/i;

/** A path with its query dropped and its object ids replaced by `{id}`: a low-cardinality url.template. */
export function urlTemplate(path: string): string {
  return (path.split("?")[0] ?? "")
    .split("/")
    .map((s) => (ID_SEGMENT.test(s) ? "{id}" : s))
    .join("/");
}

function nameClientSpan(span: Span, method: string, path: string): void {
  const template = urlTemplate(path);
  span.updateName(`${method} ${template}`);
  span.setAttribute("url.template", template);
}

export const httpConfig: HttpInstrumentationConfig = {
  ignoreIncomingRequestHook: (req) => UNTRACED.has((req.url ?? "").split("?")[0] ?? ""),
  requestHook: (span, req) => {
    // the outgoing side only: an incoming request is named by its route when it answers
    if ("path" in req && typeof req.path === "string") nameClientSpan(span, req.method, req.path);
  },
  // the verification handshake's query holds the verify token
  redactedQueryParamsServer: ["hub.verify_token", "hub.challenge"],
};

/** The query with its values replaced: a media download URL's query is its short-lived key. */
const redactQuery = (query: string) => query.replace(/=[^&]*/g, "=REDACTED");

export const undiciConfig: UndiciInstrumentationConfig = {
  requestHook: (span, req) => {
    nameClientSpan(span, req.method, req.path);
    const [path, query] = req.path.split("?");
    if (query) {
      span.setAttribute("url.full", `${req.origin}${path}?${redactQuery(query)}`);
      span.setAttribute("url.query", `?${redactQuery(query)}`);
    }
  },
};

/** node:http and fetch alone, for a process that calls nothing else. */
export const httpAndFetch = (): Instrumentation[] => [new HttpInstrumentation(httpConfig), new UndiciInstrumentation(undiciConfig)];
