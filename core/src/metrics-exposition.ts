// /metrics in the format the scraper asks for: OpenMetrics (with the exemplars that link a histogram
// bucket to a trace) when its Accept header names it, as Prometheus does with exemplar storage on;
// the Prometheus text format otherwise. prom-client renders one format per registry and renames a
// counter object when it renders OpenMetrics, so each OpenMetrics scrape renders views of the
// metrics, never the metrics themselves.
import { Histogram, type HistogramConfiguration, type Metric, type OpenMetricsContentType, Registry } from "prom-client";

export interface Exposition {
  contentType: string;
  body: string;
}

interface Renderable {
  name: string;
  help: string;
  type: string;
  get(): Promise<{ name: string }>;
  getForPromString?: () => Promise<{ name: string }>;
}

function view(m: Renderable): Metric {
  const v = {
    name: m.name,
    help: m.help,
    type: m.type,
    // prom-client strips a counter's _total from `name` and renders it from here
    get: async () => ({ ...(await (m.getForPromString ?? m.get).call(m)), name: v.name }),
  };
  return v as unknown as Metric;
}

export async function exposition(registry: Registry, accept: string | undefined): Promise<Exposition> {
  if (!accept?.includes("application/openmetrics-text")) return { contentType: registry.contentType, body: await registry.metrics() };
  const openMetrics = new Registry<OpenMetricsContentType>();
  openMetrics.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  for (const m of registry.getMetricsAsArray()) openMetrics.registerMetric(view(m as unknown as Renderable));
  return { contentType: openMetrics.contentType, body: await openMetrics.metrics() };
}

/**
 * A histogram that keeps an exemplar per bucket, on a Prometheus-format registry: prom-client only
 * accepts exemplars on OpenMetrics registries because it prints them only there; exposition()
 * renders them whenever the scraper asks for OpenMetrics.
 */
export function histogramWithExemplars<T extends string>(
  registry: Registry,
  config: Omit<HistogramConfiguration<T>, "registers" | "enableExemplars">,
): Histogram<T> {
  const h = new Histogram<T>({ ...config, enableExemplars: true, registers: [] });
  registry.registerMetric(h);
  return h;
}
