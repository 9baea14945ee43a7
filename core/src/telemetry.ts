// The OpenTelemetry SDK for every service, started by the service's `--import` entry (e.g. `node
// --import ./ingress/src/telemetry.ts ingress/src/main.ts`) before main loads anything it
// instruments, as OpenTelemetry documents for ES modules: import-in-the-middle's loader hook is
// registered first, for the modules that need it only (everything else loads untouched), then the
// SDK starts. One NodeSDK per process exporting OTLP/HTTP, W3C trace context
// carried across NATS headers, Kubernetes annotations and the job pod's TRACEPARENT variable, so one
// message is one trace end to end. Configuration is the standard environment variables only:
// OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG).
import { register } from "node:module";
import type { Instrumentation } from "@opentelemetry/instrumentation";
import { createAddHookMessageChannel } from "import-in-the-middle";
import { register as registerInThread, supportsSyncHooks } from "import-in-the-middle/register-hooks.mjs";
import { privateExporter } from "./span-privacy.ts";

// The modules whose ES-module importers must see instrumented exports: `import { request } from
// "node:http"` binds the function as it was, so the HTTP instrumentation can only wrap it through
// the loader hook. Packages loaded with require() are patched without one.
const HOOKED = ["http", "https"];

/**
 * Registers import-in-the-middle's loader hook for the hooked modules only: in the application's
 * thread where Node supports it (module.registerHooks: no loader thread, about 20 MB less resident),
 * else on the loader thread with the message channel of OpenTelemetry's ESM guide. Returns what to
 * await once the instrumentations are enabled.
 */
function registerLoaderHook(): () => Promise<void> {
  if (supportsSyncHooks()) {
    registerInThread({ include: HOOKED });
    return async () => {};
  }
  const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel();
  register("@opentelemetry/instrumentation/hook.mjs", import.meta.url, registerOptions);
  return waitForAllMessagesAcknowledged;
}

/**
 * Starts tracing, with `serviceName` unless OTEL_SERVICE_NAME names the service. The caller checks
 * tracingConfigured() first and imports this module only then: the SDK is heavy.
 */
export async function startTelemetry(serviceName: string, instrumentations: () => Promise<Instrumentation[]>): Promise<void> {
  const hooked = registerLoaderHook();
  const [{ NodeSDK }, { OTLPTraceExporter }] = await Promise.all([import("@opentelemetry/sdk-node"), import("@opentelemetry/exporter-trace-otlp-http")]);
  const sdk = new NodeSDK({
    ...(process.env.OTEL_SERVICE_NAME ? {} : { serviceName }),
    traceExporter: privateExporter(new OTLPTraceExporter()),
    // traces only: metrics are Prometheus's (/metrics), logs are JSON lines on stdout; the SDK would
    // otherwise also export both over OTLP by default, at a cost on every request
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: await instrumentations(),
  });
  sdk.start();
  await hooked();
}
