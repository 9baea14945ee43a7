// The controller's tracing, loaded before main: `node --import ./controller/src/telemetry.ts
// controller/src/main.ts` (the image, `make dev` and the tests run it so). Nothing is loaded unless
// an OTLP endpoint is set. Only the two instrumentations it has calls for, node:http (the API
// server, the object store) and fetch (the Graph API): the full auto-instrumentation set loads
// ~40 packages into a process with a 150 MB budget (README, Memory).
import { tracingConfigured } from "@unmix/core/spans";

if (tracingConfigured()) {
  const { startTelemetry } = await import("@unmix/core/telemetry");
  await startTelemetry("unmix-controller", async () => (await import("@unmix/core/instrumentations")).httpAndFetch());
}
