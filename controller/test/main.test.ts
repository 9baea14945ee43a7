// The process an SRE runs: configuration errors name the variable, /metrics /healthz /readyz answer,
// logs carry trace ids and never a phone number in clear, SIGTERM exits cleanly.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { finished, type Harness, ROOT, spawnController, startHarness, succeeded, until } from "./harness.ts";

describe("start-up configuration", () => {
  test("a missing or bad variable stops the controller with status 78, naming it", () => {
    const r = spawnSync(process.execPath, [join(ROOT, "controller/src/main.ts")], {
      env: {
        PATH: process.env.PATH,
        S3_ENDPOINT: "not a url",
        S3_BUCKET: "unmix",
        S3_ACCESS_KEY: "a",
        S3_SECRET_KEY: "b",
        WHATSAPP_ACCESS_TOKEN: "t",
        RECONCILE_CONCURRENCY: "0",
      },
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.equal(r.status, 78);
    assert.match(r.stderr, /JOB_IMAGE is not set/);
    assert.match(r.stderr, /S3_ENDPOINT is invalid/);
    assert.match(r.stderr, /RECONCILE_CONCURRENCY is invalid/);
  });
});

describe("the running controller", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ gpus: 1 });
  });
  after(async () => h?.stop());

  test("serves metrics and health, logs with trace ids and no phone number, and exits 0 on SIGTERM", async () => {
    const ns = await h.namespace();
    const c = spawnController(h, h.env(ns, { LEADER_ELECT: "true", LEASE_DURATION_SECONDS: "4", RENEW_DEADLINE_SECONDS: "3", RETRY_PERIOD_SECONDS: "1" }));
    try {
      const url = await until("the HTTP address in the log", () => /"http":"(http:\/\/[^"]+)"/.exec(readFileSync(c.logFile, "utf8"))?.[1]);
      await until("/readyz to answer 200", async () => ((await fetch(`${url}/readyz`)).status === 200 ? true : undefined));
      assert.equal((await fetch(`${url}/healthz`)).status, 200);

      const sent = await h.userSends(ns, { content: "measured" });
      assert.equal(succeeded(await finished(h, ns, sent.name))?.status, "True");
      const metrics = await until("the outcome in /metrics", async () => {
        const text = await (await fetch(`${url}/metrics`)).text();
        return /unmix_controller_separationjobs_total\{outcome="succeeded",reason="Succeeded"\} 1/.test(text) ? text : undefined;
      });
      for (const name of [
        "unmix_controller_workqueue_depth",
        "unmix_controller_reconcile_duration_seconds_bucket",
        'unmix_controller_step_duration_seconds_count{step="fetch"} 1',
        'unmix_controller_step_duration_seconds_count{step="queue"} 1',
        'unmix_controller_step_duration_seconds_count{step="separate"} 1',
        'unmix_controller_step_duration_seconds_count{step="reply"} 1',
        'unmix_controller_step_duration_seconds_count{step="total"} 1',
        "unmix_controller_is_leader 1",
        'unmix_controller_kube_requests_total{verb="patch"}',
        "unmix_controller_process_resident_memory_bytes",
      ])
        assert.ok(metrics.includes(name), name);
      const user = h.sim.defaultUser.waId as string;
      assert.ok(!metrics.includes(user), "no phone number in metrics");

      assert.equal(await c.kill("SIGTERM"), 0);
      const log = readFileSync(c.logFile, "utf8");
      assert.ok(log.includes('"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"'), "the message's trace id on its log lines");
      assert.ok(!log.includes(user), "no phone number in the logs");
      assert.match(log, /released the lease/);
    } finally {
      await c.kill("SIGKILL");
    }
  });
});
