// Garbage collection with the clock moved: the 24-hour cache promise, orphaned inputs and job
// outputs, and finished SeparationJobs past retention; and what must survive each of them.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectAuditLog, messageRef, refOfSeparationJob } from "@unmix/core/audit";
import { createLogger } from "@unmix/core/log";
import { ResultCache, resultKey } from "@unmix/core/result-cache";
import { loadControllerConfig } from "../src/config.ts";
import { kubeApi } from "../src/framework/kube/api.ts";
import { createKubeClient, type KubeClient } from "../src/framework/kube/client.ts";
import { kubeconfigConnection } from "../src/framework/kube/connection.ts";
import { GarbageCollector } from "../src/separation/gc.ts";
import * as S from "../src/separation/status.ts";
import { type Harness, startHarness } from "./harness.ts";

let h: Harness;
let client: KubeClient;
const HOUR = 3600_000;
const MINUTE = 60_000;

before(async () => {
  h = await startHarness({ gpus: 0 });
  client = createKubeClient(await kubeconfigConnection(h.stack.kube?.kubeconfigPath as string));
});
after(async () => {
  await client?.close();
  await h?.stop();
});

const exists = async (key: string) => (await h.store.stat(key)) !== undefined;

describe("garbage collection", () => {
  test("P5: removes what is past its time and nothing else, each deletion in the audit trail first", async () => {
    const ns = await h.namespace();
    const audit = connectAuditLog(loadControllerConfig(h.env(ns)).nats, "gc-test");
    after(() => audit.close());
    while (!audit.connected()) await new Promise((r) => setTimeout(r, 20));
    const key = { sha256: "a".repeat(64), format: "ogg-opus" as const, model: "htdemucs" };
    let offset = 0;
    const clock = () => new Date(Date.now() + offset);
    const cache = new ResultCache(h.store, 24 * HOUR, clock);
    const gc = new GarbageCollector({
      sjs: kubeApi(client, ns).separationJobs,
      store: h.store,
      cache,
      clock,
      log: createLogger("gc-test", { level: "silent" }),
      settings: { orphanGraceMs: HOUR, retentionMs: 7 * 24 * HOUR },
      audit,
    });

    // a live SeparationJob (not finished) with its input, and a finished one whose input leaked
    const live = await h.userSends(ns, { content: "live" });
    const done = await h.userSends(ns, { content: "done" });
    const sjs = kubeApi(client, ns).separationJobs;
    let d = (await sjs.get(done.name))!;
    d = await sjs.patchStatus(done.name, d.metadata.resourceVersion as string, S.initialize(d, clock()) as never);
    d = await sjs.patchStatus(done.name, d.metadata.resourceVersion as string, { ...S.failed(d, clock(), { class: "BadInput", message: "x" }) } as never);
    // as if the result it was made for were the one cached below
    await sjs.patchStatus(done.name, d.metadata.resourceVersion as string, S.finalized(d, clock(), resultKey(key)) as never);
    const put = (key: string) => h.store.put(key, Buffer.from(key), undefined, "application/octet-stream");
    await put(`inputs/${live.name}`);
    await put(`work/${live.name}/output`);
    await put(`inputs/${done.name}`);
    await put("inputs/sj-deleted-long-ago");
    await put("work/sj-deleted-long-ago/manifest.json");
    // a cached result a user received
    await put("tmp/result");
    await cache.record(key, "tmp/result", "u1", "1234567890");

    const first = await gc.runOnce();
    assert.deepEqual(first, { cacheExpired: 0, separationJobsDeleted: 0, orphansDeleted: 0 }, "everything is fresh");

    offset = HOUR + MINUTE;
    const second = await gc.runOnce();
    assert.equal(second.orphansDeleted, 3);
    assert.equal(await exists("inputs/sj-deleted-long-ago"), false, "an input nobody owns");
    assert.equal(await exists("work/sj-deleted-long-ago/manifest.json"), false, "a job output nobody owns");
    assert.equal(await exists(`inputs/${done.name}`), false, "the input of a finished job");
    assert.equal(await exists(`inputs/${live.name}`), true, "a live job's input stays");
    assert.equal(await exists(`work/${live.name}/output`), true, "a live job's output stays");
    assert.ok(await cache.lookup(key), "the result is still cached after an hour");
    const entries = async (event: string) => (await h.auditEntries()).filter((e) => e.event === event);
    assert.deepEqual(
      (await entries("input-deleted")).map((e) => [e.ref, e.reason]).sort(),
      [
        [refOfSeparationJob(done.name), "orphan"],
        [messageRef("sj-deleted-long-ago"), "orphan"],
      ].sort(),
      "an entry per deleted input",
    );

    offset = 23 * HOUR + 59 * MINUTE;
    assert.ok(await cache.lookup(key), "still cached just under 24 hours");
    assert.equal((await gc.runOnce()).cacheExpired, 0);

    offset = 24 * HOUR + MINUTE;
    assert.equal(await cache.lookup(key), undefined, "no hit past 24 hours, even before the collector runs");
    const third = await gc.runOnce();
    assert.equal(third.cacheExpired, 2, "the result and its owner marker");
    assert.deepEqual(
      (await entries("result-expired")).map((e) => e.ref),
      [refOfSeparationJob(done.name)],
      "the expiry in the trail of the message it was made for",
    );
    assert.equal(await exists(`results/${"a".repeat(64)}/ogg-opus.htdemucs`), false, "permanently deleted after 24 hours");
    assert.equal(await cache.forgetUser("u1"), 0, "nothing left under the user either");
    assert.ok(await sjs.get(done.name), "a finished job is kept for a week");

    offset = 7 * 24 * HOUR + MINUTE;
    const fourth = await gc.runOnce();
    assert.equal(fourth.separationJobsDeleted, 1);
    assert.equal(await sjs.get(done.name), undefined, "the finished job is gone after retention");
    assert.ok(await sjs.get(live.name), "an unfinished job is never collected");
    assert.equal(await exists(`inputs/${live.name}`), true);
  });
});
