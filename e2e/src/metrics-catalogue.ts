// The metrics catalogue (docs/metrics.md) as data, the Prometheus text exposition parsed into
// families, and the metric names a PromQL expression reads: what observability.test.ts compares.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./stack/versions.ts";

export const CATALOGUE_FILE = join(REPO_ROOT, "docs/metrics.md");

export interface CatalogueEntry {
  /** A metric name, or a prefix ending in `*` for prom-client's default metrics. */
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "default";
  labels: string[];
  components: string[];
}

/** The rows of the catalogue's table: `| `name` | type | `a`, `b` | component | meaning |`. */
export function readCatalogue(file = CATALOGUE_FILE): CatalogueEntry[] {
  const rows = readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.startsWith("| `"));
  return rows.map((row) => {
    const [name = "", type = "", labels = "", components = ""] = row
      .split("|")
      .map((c) => c.trim())
      .slice(1);
    const names = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string);
    return {
      name: names(name)[0] ?? "",
      type: type as CatalogueEntry["type"],
      labels: names(labels),
      components: components.split(",").map((c) => c.trim()),
    };
  });
}

/** The catalogue entry a metric name falls under: its own row, else a default-metrics prefix row. */
export function catalogued(catalogue: CatalogueEntry[], name: string): CatalogueEntry | undefined {
  return catalogue.find((e) => e.name === name) ?? catalogue.find((e) => e.name.endsWith("*") && name.startsWith(e.name.slice(0, -1)));
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
  /** OpenMetrics exemplar labels (e.g. trace_id), when the sample carries one. */
  exemplar?: Record<string, string>;
}

export interface Family {
  name: string;
  type: string;
  samples: Sample[];
}

/** `a="x",b="y\"z"` → { a: "x", b: 'y"z' }; returns the labels and where the closing brace is. */
function parseLabels(text: string, from: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = from;
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/y;
  for (;;) {
    if (text[i] === "}") return { labels, end: i };
    re.lastIndex = i;
    const m = re.exec(text);
    if (!m) throw new Error(`bad labels at ${i}: ${text}`);
    labels[m[1] as string] = (m[2] as string).replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    i = re.lastIndex;
  }
}

const SUFFIXES = ["_bucket", "_sum", "_count", "_total", "_created", "_info", "_gcount", "_gsum"];

/**
 * Families of the Prometheus text format 0.0.4 or OpenMetrics (whose counter families are named
 * without `_total`: they are reported here with it, as the 0.0.4 format and PromQL name them).
 */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) {
      const [, name = "", t = ""] = type;
      families.set(name, { name: t === "counter" && !name.endsWith("_total") ? `${name}_total` : name, type: t, samples: [] });
      continue;
    }
    if (line.startsWith("#") || !line.trim()) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0] ?? "";
    let labels: Record<string, string> = {};
    let rest = line.slice(name.length);
    if (rest.startsWith("{")) {
      const parsed = parseLabels(rest, 1);
      labels = parsed.labels;
      rest = rest.slice(parsed.end + 1);
    }
    const sample: Sample = { name, labels, value: Number(rest.trim().split(/\s+/)[0]) };
    const ex = rest.indexOf("# {");
    if (ex >= 0) sample.exemplar = parseLabels(rest, ex + 3).labels;
    const family =
      families.get(name) ?? families.get(SUFFIXES.reduce((n, s) => (n.endsWith(s) && families.has(n.slice(0, -s.length)) ? n.slice(0, -s.length) : n), name));
    if (!family) throw new Error(`a sample without a # TYPE line: ${line}`);
    family.samples.push(sample);
  }
  return new Map([...families.values()].map((f) => [f.name, f]));
}

/** Label names of a family's series, without the ones the format adds (`le` of histogram buckets). */
export function labelNames(family: Family): string[] {
  const names = new Set<string>();
  for (const s of family.samples) for (const k of Object.keys(s.labels)) if (!(k === "le" && family.type === "histogram")) names.add(k);
  return [...names].sort();
}

const PROMQL_WORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"]);

/**
 * The metric names a PromQL expression reads (its series selectors): strings, label matchers,
 * ranges, grouping clauses, function names and keywords are not metric names.
 */
export function promqlMetrics(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names = new Set<string>();
  for (const m of bare.matchAll(/(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    const [, name = "", call] = m;
    if (call || PROMQL_WORDS.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return [...names].sort();
}

/** The catalogue entry a series name in a query reads: its own, or its histogram's (`_bucket`, `_sum`, `_count`). */
export function queried(catalogue: CatalogueEntry[], series: string): CatalogueEntry | undefined {
  const histogram = catalogue.find((e) => e.type === "histogram" && series.replace(/_(bucket|sum|count)$/, "") === e.name);
  return catalogue.find((e) => e.name === series) ?? histogram;
}
