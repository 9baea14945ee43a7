// What the controller would run with, from a rendered chart: its configuration loaded from the
// rendered ConfigMaps (the Secrets' values stand in), and the separation Job it builds from it.
import { loadControllerConfig } from "@unmix/controller/src/config.ts";
import { buildJob } from "@unmix/controller/src/separation/job-spec.ts";
import { newSj } from "@unmix/controller/test/fixtures.ts";

interface RenderedObject {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
}

function controllerConfigOf(objects: RenderedObject[]) {
  const data = (name: string) => objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === name)?.data ?? {};
  return loadControllerConfig({ ...data("unmix-common"), ...data("unmix-controller"), S3_ACCESS_KEY: "a", S3_SECRET_KEY: "b", WHATSAPP_ACCESS_TOKEN: "t" });
}

/** The Job the controller builds for a new SeparationJob under the rendered chart's configuration. */
export function renderedJob(objects: RenderedObject[]): unknown {
  return buildJob(newSj(), controllerConfigOf(objects).job, undefined);
}
