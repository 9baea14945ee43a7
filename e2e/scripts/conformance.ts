// `make conformance`: runs the tests named after a data-policy promise (node's runner with a name
// pattern, over the files that hold such tests, or the whole file for a story (STORIES); pytest on
// the job image's test_P… functions), each
// runner writing its own JUnit report, then writes docs/privacy-conformance.md from the reports and
// docs/privacy-promises.json. Exits 1 when a promise has a failing, unrun or no test.
//
//   node e2e/scripts/conformance.ts            run, then write the table
//   node e2e/scripts/conformance.ts --no-run   write the table from the last run's reports
//
// The tests are ordinary tests: `make test` runs them too, with everything else.
import { spawnSync } from "node:child_process";
import { existsSync, globSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { conformance, junitCases, NODE_PATTERN, nodeTestsIn, type PolicyPromise, pytestTestsIn, renderTable } from "../src/conformance.ts";
import { cacheDir, jobVenv, ROOT } from "../src/product.ts";

const reports = join(cacheDir(), "conformance");
const nodeReport = join(reports, "node.xml");
const storyReport = join(reports, "node-stories.xml");
// Files that tell one story: their promise tests read what the tests before them sent (the journey's
// voice note, its cached result, the SeparationJobs it left), so they run whole; only their tests
// named after a promise go into the table.
const STORIES = new Set(["e2e/test/journey.test.ts"]);
const pytestReport = join(reports, "pytest.xml");
const read = (file: string) => readFileSync(join(ROOT, file), "utf8");

const { promises } = JSON.parse(read("docs/privacy-promises.json")) as { promises: PolicyPromise[] };
const stale = promises.flatMap((p) =>
  p.code.filter((c) => !existsSync(join(ROOT, c.file)) || !read(c.file).includes(c.name)).map((c) => `${p.id}: ${c.file} (${c.name})`),
);
if (stale.length) {
  console.error(`docs/privacy-promises.json points at code that is not there:\n  ${stale.join("\n  ")}`);
  process.exit(1);
}

const nodeFiles = globSync("{crds,core,ingress,controller,e2e}/test/**/*.test.ts", { cwd: ROOT }).sort();
const pyFiles = globSync("job-image/tests/test_*.py", { cwd: ROOT }).sort();
const declared = [
  ...nodeFiles.flatMap((file) => nodeTestsIn(read(file)).map((name) => ({ file, name }))),
  ...pyFiles.flatMap((file) => pytestTestsIn(read(file)).map((name) => ({ file, name }))),
];

// what was tested and when, kept with the reports (--no-run writes the page again with it)
const tested = join(reports, "run.json");
if (!process.argv.includes("--no-run")) {
  rmSync(reports, { recursive: true, force: true });
  mkdirSync(reports, { recursive: true });
  const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" }).stdout.trim();
  const dirty = spawnSync("git", ["status", "--porcelain", "--", ".", ":!docs/privacy-conformance.md"], { cwd: ROOT, encoding: "utf8" }).stdout.trim()
    ? " + uncommitted changes"
    : "";
  const when = `${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`;
  writeFileSync(tested, JSON.stringify({ commit: `${commit}${dirty}`, when }));
  const withNode = [...new Set(declared.filter((d) => d.file.endsWith(".ts")).map((d) => d.file))];
  const withPy = declared.filter((d) => d.file.endsWith(".py"));
  const run = (what: string, cmd: string, args: string[]) => {
    console.log(`== ${what}`);
    spawnSync(cmd, args, { cwd: ROOT, stdio: "inherit" });
  };
  const nodeRun = (what: string, report: string, files: string[], pattern: string[]) =>
    files.length &&
    run(what, process.execPath, [
      "--test",
      "--test-concurrency=1",
      "--test-timeout=900000",
      ...pattern,
      "--test-reporter=spec",
      "--test-reporter-destination=stdout",
      "--test-reporter=junit",
      `--test-reporter-destination=${report}`,
      ...files,
    ]);
  nodeRun(
    "node --test, the tests named P<n>: …",
    nodeReport,
    withNode.filter((f) => !STORIES.has(f)),
    [`--test-name-pattern=${NODE_PATTERN}`],
  );
  nodeRun(
    "node --test, whole stories",
    storyReport,
    withNode.filter((f) => STORIES.has(f)),
    [],
  );
  if (withPy.length) {
    const venv = jobVenv();
    const ids = withPy.map((d) => `${relative("job-image", d.file)}::${d.name}`);
    // the worktree's job code, not the venv's editable install
    const env = { PYTHONPATH: join(ROOT, "job-image/src"), UNMIX_JOB_VENV: venv };
    console.log("== pytest, the test_P<n>_… functions");
    spawnSync(join(venv, "bin/python"), ["-m", "pytest", "-q", `--junitxml=${pytestReport}`, ...ids], {
      cwd: join(ROOT, "job-image"),
      stdio: "inherit",
      env: { ...process.env, ...env },
    });
  }
}

const results = [
  ...[nodeReport, storyReport].flatMap((r) => (existsSync(r) ? junitCases(readFileSync(r, "utf8"), (c) => relative(ROOT, c.file ?? "")) : [])),
  // pytest's classname is the module path from job-image/ ("tests.test_egress")
  ...(existsSync(pytestReport) ? junitCases(readFileSync(pytestReport, "utf8"), (c) => `job-image/${(c.classname ?? "").replaceAll(".", "/")}.py`) : []),
];
const rows = conformance(promises, declared, results);
writeFileSync(
  join(ROOT, "docs/privacy-conformance.md"),
  renderTable(rows, {
    ...(existsSync(tested) ? (JSON.parse(readFileSync(tested, "utf8")) as { commit: string; when: string }) : { commit: "unknown", when: "unknown" }),
    command: "make conformance",
  }),
);

console.log("\n== privacy conformance (docs/privacy-conformance.md)");
for (const r of rows) console.log(`${r.promise.id.padEnd(6)} ${r.outcome.padEnd(8)} ${r.tests.length} test(s)`);
const bad = rows.filter((r) => r.outcome !== "passed");
if (bad.length) {
  console.log(`not proven: ${bad.map((r) => `${r.promise.id} (${r.outcome})`).join(", ")}`);
  process.exit(1);
}
