// The controller's podFailurePolicy and the job-image must agree on what each exit code means.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { EXIT_CODES } from "../src/exit-codes.ts";
import { LIMITS } from "../src/limits.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));
const venv = process.env.UNMIX_JOB_VENV ?? join(process.env.UNMIX_CACHE ?? join(repo, ".cache"), "job-image-venv");

test("the job-image's exit-code table is the controller's", () => {
  const out = execFileSync(join(venv, "bin/python"), ["-m", "unmix_job.exit_codes"], { cwd: join(repo, "job-image"), encoding: "utf8" });
  assert.deepEqual(JSON.parse(out), EXIT_CODES);
});

test("the job-image's limits are the services'", () => {
  const out = execFileSync(join(venv, "bin/python"), ["-m", "unmix_job.limits"], { cwd: join(repo, "job-image"), encoding: "utf8" });
  assert.deepEqual(JSON.parse(out), LIMITS);
});
