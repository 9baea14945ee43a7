// The OpenTelemetry SDK for every service, started by the service's `--import` entry (e.g. `node
// --import ./ingress/src/telemetry.ts ingress/src/main.ts`) before main loads anything it
// instruments, as OpenTelemetry documents for ES modules: import-in-the-middle's loader hook is
// registered first, told only about the modules an instrumentation hooks (everything else loads
// untouched), then the SDK starts. One NodeSDK per process exporting OTLP/HTTP, W3C trace context
// carried across NATS headers, Kubernetes annotations and the job pod's TRACEPARENT variable, so one
// message is one trace end to end. Configuration is the standard environment variables only:
// OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG).
import { register } from "node:module";
import type { Instrumentation } from "@opentelemetry/instrumentation";
import { createAddHookMessageChannel } from "import-in-the-middle";
import { privateExporter } from "./span-privacy.ts";

/**
 * Starts tracing, with `serviceName` unless OTEL_SERVICE_NAME names the service. The caller checks
 * tracingConfigured() first and imports this module only then: the SDK is heavy.
 */
export async function startTelemetry(serviceName: string, instrumentations: () => Promise<Instrumentation[]>): Promise<void> {
  const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel();
  register("@opentelemetry/instrumentation/hook.mjs", import.meta.url, registerOptions);
  const [{ NodeSDK }, { OTLPTraceExporter }] = await Promise.all([import("@opentelemetry/sdk-node"), import("@opentelemetry/exporter-trace-otlp-http")]);
  const sdk = new NodeSDK({
    ...(process.env.OTEL_SERVICE_NAME ? {} : { serviceName }),
    traceExporter: privateExporter(new OTLPTraceExporter()),
    instrumentations: await instrumentations(),
  });
  sdk.start();
  await waitForAllMessagesAcknowledged();
}
