// The facts the services and the job image share, each defined on both sides of the language line:
// the job image prints its copy (`python -m unmix_job.<table>`), and each must equal ours.
//  - exit codes: the controller's podFailurePolicy and the job must agree on what each one means;
//  - limits: both enforce them;
//  - models: the cache key names the model and its version, so the job, which produces a result,
//    and the services, which look results up, must agree on both.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { EXIT_CODES } from "../src/exit-codes.ts";
import { LIMITS } from "../src/limits.ts";
import { MODELS } from "../src/models.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));
const venv = process.env.UNMIX_JOB_VENV ?? join(process.env.UNMIX_CACHE ?? join(repo, ".cache"), "job-image-venv");

const jobImageTable = (module: string): unknown =>
  JSON.parse(execFileSync(join(venv, "bin/python"), ["-m", `unmix_job.${module}`], { cwd: join(repo, "job-image"), encoding: "utf8" }));

for (const [module, ours] of [
  ["exit_codes", EXIT_CODES],
  ["limits", LIMITS],
  ["models", MODELS],
] as const) {
  test(`the job image's ${module} table is the services'`, () => assert.deepEqual(jobImageTable(module), ours));
}

test("every model id is its name and version", () => {
  for (const [name, m] of Object.entries(MODELS)) assert.equal(m.id, `${name}-${m.version}`);
});
