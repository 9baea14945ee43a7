// The ingress's tracing, loaded before main: `node --import ./ingress/src/telemetry.ts
// ingress/src/main.ts` (the image, `make dev` and the tests run it so). Nothing is loaded unless an
// OTLP endpoint is set. Spans come from Fastify's own instrumentation (@fastify/otel: the request as
// the server span, named by its route, and the hooks that decide about it), OpenTelemetry's Node
// instrumentations (HTTP client, fetch), and our JetStream spans (nats-spans.ts).
import { tracingConfigured } from "@unmix/core/spans";

if (tracingConfigured()) {
  const { startTelemetry } = await import("@unmix/core/telemetry");
  await startTelemetry(`unmix-ingress-${process.env.ROLE ?? "all"}`, async () => {
    const [{ getNodeAutoInstrumentations }, { FastifyOtelInstrumentation }, { httpConfig, undiciConfig }] = await Promise.all([
      import("@opentelemetry/auto-instrumentations-node"),
      import("@fastify/otel"),
      import("@unmix/core/instrumentations"),
    ]);
    return [
      ...getNodeAutoInstrumentations({
        // Fastify's request span is the server span (it continues the caller's trace context):
        // the HTTP server instrumentation would add a second one, and parse every request's URL again
        "@opentelemetry/instrumentation-http": { ...httpConfig, disableIncomingRequestInstrumentation: true },
        "@opentelemetry/instrumentation-undici": undiciConfig,
        // a span per file read, name lookup or socket says nothing about a message
        "@opentelemetry/instrumentation-fs": { enabled: false },
        "@opentelemetry/instrumentation-dns": { enabled: false },
        "@opentelemetry/instrumentation-net": { enabled: false },
        // core/src/log.ts puts the trace id on every line already
        "@opentelemetry/instrumentation-pino": { enabled: false },
      }),
      new FastifyOtelInstrumentation({
        registerOnInitialization: true,
        // the hooks that decide about a request (the signature check is preValidation), not the
        // ones that only measure it afterwards: a span fewer per webhook
        instrumentHooks: ["onRequest", "preParsing", "preValidation", "preHandler"],
        ignorePaths: (route) => ["/healthz", "/readyz", "/metrics"].includes(route.url),
        requestHook: (span, req) => {
          span.updateName(`${req.method} ${req.routeOptions.url ?? "unknown route"}`);
          // the path without its query: the verification handshake's query holds the verify token
          span.setAttribute("url.path", req.url.split("?")[0] ?? "");
        },
      }),
    ];
  });
}
