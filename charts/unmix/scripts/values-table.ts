// Writes the values table of charts/unmix/README.md from the `# --` comments of values.yaml, between
// the markers <!-- values:start --> and <!-- values:end -->. `--check` changes nothing and fails when
// the README is stale or a value has no description.
//   node charts/unmix/scripts/values-table.ts [--check]
import { readFileSync, writeFileSync } from "node:fs";
import { parse } from "yaml";

const chart = new URL("../", import.meta.url);
const valuesText = readFileSync(new URL("values.yaml", chart), "utf8");
const values = parse(valuesText) as Record<string, unknown>;

interface Row {
  path: string[];
  doc: string;
}

/** Documented keys, in file order: a `# -- text` comment line documents the key right below it. */
function documented(text: string): Row[] {
  const rows: Row[] = [];
  const stack: { indent: number; key: string }[] = [];
  let doc: string | undefined;
  for (const line of text.split("\n")) {
    const comment = /^\s*# --\s?(.*)$/.exec(line);
    if (comment) {
      doc = comment[1] ?? "";
      continue;
    }
    const key = /^(\s*)([A-Za-z0-9_.-]+):(\s|$)/.exec(line);
    if (!key) continue;
    const indent = (key[1] ?? "").length;
    while (stack.length && (stack.at(-1) as { indent: number }).indent >= indent) stack.pop();
    stack.push({ indent, key: key[2] as string });
    if (doc !== undefined) rows.push({ path: stack.map((s) => s.key), doc });
    doc = undefined;
  }
  return rows;
}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const get = (path: string[]) => path.reduce<unknown>((v, k) => (isMap(v) ? v[k] : undefined), values);

/** Leaves of values.yaml (a non-empty map is not a leaf) that no documented key covers. */
function undocumented(rows: Row[]): string[] {
  const covered = new Set(rows.map((r) => r.path.join(".")));
  const out: string[] = [];
  const walk = (v: unknown, path: string[]) => {
    const key = path.join(".");
    if (covered.has(key)) return;
    if (isMap(v) && Object.keys(v).length) for (const [k, child] of Object.entries(v)) walk(child, [...path, k]);
    else out.push(key);
  };
  walk(values, []);
  return out;
}

const cell = (s: string) => s.replace(/\|/g, "\\|");
function table(rows: Row[]): string {
  const lines = ["| Key | Default | Description |", "|---|---|---|"];
  for (const r of rows) {
    const v = get(r.path);
    const def = v === "" ? '`""`' : `\`${cell(JSON.stringify(v))}\``;
    lines.push(`| \`${r.path.join(".")}\` | ${def} | ${cell(r.doc)} |`);
  }
  return lines.join("\n");
}

const rows = documented(valuesText);
const missing = undocumented(rows);
const readmeUrl = new URL("README.md", chart);
const readme = readFileSync(readmeUrl, "utf8");
const start = "<!-- values:start -->";
const end = "<!-- values:end -->";
const [before, rest] = readme.split(start);
const after = rest?.split(end)[1];
if (before === undefined || after === undefined) throw new Error(`README.md needs ${start} and ${end}`);
const next = `${before}${start}\n${table(rows)}\n${end}${after}`;

if (process.argv.includes("--check")) {
  const problems = [...missing.map((m) => `values.yaml: ${m} has no "# --" description`), ...(next === readme ? [] : ["README.md: the values table is stale (run node charts/unmix/scripts/values-table.ts)"])];
  if (problems.length) {
    process.stderr.write(`${problems.join("\n")}\n`);
    process.exit(1);
  }
} else {
  if (missing.length) process.stderr.write(`undocumented: ${missing.join(", ")}\n`);
  writeFileSync(readmeUrl, next);
}
