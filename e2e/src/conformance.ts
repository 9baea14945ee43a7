// The privacy conformance table: each data-policy promise (docs/privacy-promises.json), the code
// that keeps it, the tests named after it and their result in the last run, read from the runners'
// own JUnit reports (node's `--test-reporter=junit`, pytest's `--junitxml`). Pure: the script
// e2e/scripts/conformance.ts finds the files, runs the tests and writes the table.
import { XMLParser } from "fast-xml-parser";

export interface PolicyPromise {
  id: string;
  promise: string;
  code: { file: string; name: string }[];
  /** What the cluster's operator must provide for the promise to hold (the tests cannot check it here). */
  operator?: string;
}

export type Outcome = "passed" | "failed" | "skipped" | "not run";
export interface TestResult {
  file: string;
  name: string;
  outcome: Outcome;
}

/** `P1: …`, `P6-P7: …` and `P10, P11: …` in node; `test_P8_…` and `test_P6_P7_…` in pytest. */
const NODE_NAME = /^(P\d+(?:-P\d+)?(?:, ?P\d+(?:-P\d+)?)*): /;
const PYTEST_NAME = /^test_(P\d+(?:_P\d+)*)_/;
/** The --test-name-pattern that selects the node tests named after a promise. */
export const NODE_PATTERN = NODE_NAME.source;

/** The promise numbers a test's name claims, or none. */
export function promisesOf(testName: string): number[] {
  const label = NODE_NAME.exec(testName)?.[1] ?? PYTEST_NAME.exec(testName)?.[1]?.replaceAll("_", ", ");
  if (!label) return [];
  return label.split(/, ?/).flatMap((part) => {
    const [from, to = from] = part.split("-").map((p) => Number(p.slice(1)));
    return Array.from({ length: (to as number) - (from as number) + 1 }, (_, i) => (from as number) + i);
  });
}

/** The numbers a row of the map covers: `P6-P7` is 6 and 7. */
const numbersOf = (id: string) => promisesOf(`${id}: `);

/** Node test files: the names of the tests, each at the start of a line, that claim a promise (string literals only). */
export function nodeTestsIn(source: string): string[] {
  return [...source.matchAll(/^\s*(?:test|it)\(\s*(["'`])(P\d[^"'`]*)\1/gm)].map((m) => m[2] as string).filter((n) => NODE_NAME.test(n));
}

/** Python test files: the functions that claim a promise. */
export function pytestTestsIn(source: string): string[] {
  return [...source.matchAll(/^(?:async )?def (test_P\d\w*)\(/gm)].map((m) => m[1] as string);
}

const xml = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "", isArray: (name) => name === "testcase" || name === "testsuite" });

/**
 * Every test case of a JUnit report, anywhere in its suites. `fileOf` names the file of a case
 * (node writes a `file` attribute; pytest only a dotted classname).
 */
export function junitCases(report: string, fileOf: (c: { file?: string; classname?: string }) => string): TestResult[] {
  const out: TestResult[] = [];
  const walk = (node: unknown) => {
    if (!node || typeof node !== "object") return;
    const n = node as Record<string, unknown>;
    for (const c of (n.testcase as Record<string, unknown>[] | undefined) ?? []) {
      const outcome: Outcome = c.failure !== undefined || c.error !== undefined ? "failed" : c.skipped !== undefined ? "skipped" : "passed";
      out.push({ file: fileOf(c as { file?: string; classname?: string }), name: String(c.name), outcome });
    }
    for (const s of (n.testsuite as unknown[] | undefined) ?? []) walk(s);
    if (n.testsuites) walk(n.testsuites);
  };
  walk(xml.parse(report));
  return out;
}

export interface Row {
  promise: PolicyPromise;
  tests: TestResult[];
  outcome: Outcome | "missing";
}

/**
 * One row per promise: the tests that claim it, with their result in the reports, or "not run"
 * when a test in the sources has no result (the run stopped before it). Parametrised pytest cases
 * (`test_x[a]`) count each on their own.
 */
/**
 * Whether a run test is the declared one. A name written as a template literal (tests made in a
 * loop, `P4: ${what}: …`) stands for every name its fixed parts allow.
 */
export function sameTest(declared: string, ran: string): boolean {
  if (!declared.includes("${")) return declared === ran;
  const parts = declared.split(/\$\{[^}]*\}/).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${parts.join(".*")}$`).test(ran);
}

export function conformance(promises: PolicyPromise[], declared: { file: string; name: string }[], results: TestResult[]): Row[] {
  const base = (name: string) => name.replace(/\[.*\]$/, "");
  return promises.map((promise) => {
    const covers = new Set(numbersOf(promise.id));
    const claims = (name: string) => promisesOf(name).some((n) => covers.has(n));
    const ran = results.filter((r) => claims(r.name));
    const notRun = declared
      .filter((d) => claims(d.name) && !ran.some((r) => r.file === d.file && sameTest(d.name, base(r.name))))
      .map((d): TestResult => ({ ...d, outcome: "not run" }));
    const tests = [...ran, ...notRun];
    const outcome: Row["outcome"] =
      tests.length === 0
        ? "missing"
        : tests.some((t) => t.outcome === "failed")
          ? "failed"
          : tests.some((t) => t.outcome === "not run")
            ? "not run"
            : tests.every((t) => t.outcome === "skipped")
              ? "skipped"
              : "passed";
    return { promise, tests, outcome };
  });
}

const MARK: Record<Outcome | "missing", string> = {
  passed: "✅ passed",
  failed: "❌ failed",
  skipped: "⏭ skipped",
  "not run": "⚠️ not run",
  missing: "❌ missing",
};
const cell = (s: string) => s.replaceAll("|", "\\|").replaceAll("\n", " ");

/** The Markdown page: the table, then what the operator must provide. */
export function renderTable(rows: Row[], run: { when: string; commit: string; command: string }): string {
  const lines = [
    "# Privacy conformance",
    "",
    "Each promise of the data policy (`../shared/seeds`, the P1–P15 table in ARCHITECTURE.md), the code",
    "that keeps it, and the tests named after it (`P<n>: …` in node's runner, `test_P<n>_…` in pytest).",
    `Generated by \`${run.command}\` from the runners' JUnit reports; the promises and code pointers are`,
    "in [privacy-promises.json](privacy-promises.json). Do not edit by hand.",
    "",
    `Last run: ${run.when}, commit \`${run.commit}\`.`,
    "",
    "| promise | what the policy says | code that keeps it | tests | last run |",
    "|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const code = r.promise.code.map((c) => `[${c.file}](../${c.file}) (\`${c.name}\`)`).join("<br>");
    const tests = r.tests.length
      ? r.tests.map((t) => `${t.outcome === "passed" ? "✅" : t.outcome === "skipped" ? "⏭" : "❌"} \`${t.file}\`: ${t.name}`).join("<br>")
      : "none yet";
    const counted = r.tests.length ? ` (${r.tests.filter((t) => t.outcome === "passed").length}/${r.tests.length})` : "";
    lines.push(`| ${r.promise.id} | ${cell(r.promise.promise)} | ${code} | ${cell(tests)} | ${MARK[r.outcome]}${counted} |`);
  }
  const operator = rows.filter((r) => r.promise.operator);
  if (operator.length) {
    lines.push("", "## What the operator must provide", "");
    for (const r of operator) lines.push(`- **${r.promise.id}**: ${r.promise.operator}`);
  }
  return `${lines.join("\n")}\n`;
}
