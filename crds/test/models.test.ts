// The cache key names the model and its version: the job image, which produces the result, and the
// services, which look results up, must agree on both.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { MODELS } from "../src/models.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));
const venv = process.env.UNMIX_JOB_VENV ?? join(process.env.UNMIX_CACHE ?? join(repo, ".cache"), "job-image-venv");

test("the job-image's model table is the services'", () => {
  const out = execFileSync(join(venv, "bin/python"), ["-m", "unmix_job.models"], { cwd: join(repo, "job-image"), encoding: "utf8" });
  assert.deepEqual(JSON.parse(out), MODELS);
});

test("every model id is its name and version", () => {
  for (const [name, m] of Object.entries(MODELS)) assert.equal(m.id, `${name}-${m.version}`);
});
