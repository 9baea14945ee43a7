// The ingress's tracing, loaded before main: `node --import ./ingress/src/telemetry.ts
// ingress/src/main.ts` (the image, `make dev` and the tests run it so). Nothing is loaded unless an
// OTLP endpoint is set. Spans come from OpenTelemetry's Node instrumentations (HTTP server and
// client, fetch, pino…), Fastify's own (@fastify/otel: the route and every hook), and our JetStream
// spans (nats-spans.ts).
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
        "@opentelemetry/instrumentation-http": httpConfig,
        "@opentelemetry/instrumentation-undici": undiciConfig,
        // a span per file read, name lookup or socket says nothing about a message
        "@opentelemetry/instrumentation-fs": { enabled: false },
        "@opentelemetry/instrumentation-dns": { enabled: false },
        "@opentelemetry/instrumentation-net": { enabled: false },
      }),
      new FastifyOtelInstrumentation({
        registerOnInitialization: true,
        ignorePaths: (route) => ["/healthz", "/readyz", "/metrics"].includes(route.url),
        requestHook: (span, req) => span.updateName(`fastify ${req.method} ${req.routeOptions.url ?? req.url}`),
      }),
    ];
  });
}
