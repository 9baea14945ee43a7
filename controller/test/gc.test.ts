// Garbage collection with the clock moved: the 24-hour cache promise, orphaned inputs and job
// outputs, and finished SeparationJobs past retention; and what must survive each of them.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createLogger } from "@unmix/core/log";
import { ResultCache } from "@unmix/core/result-cache";
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

/** A SeparationJob that failed on its input and was finalized at clock(). */
async function finish(ns: string, name: string, clock: () => Date): Promise<void> {
  const sjs = kubeApi(client, ns).separationJobs;
  let d = (await sjs.get(name))!;
  d = await sjs.patchStatus(name, d.metadata.resourceVersion as string, S.initialize(d, clock()) as never);
  d = await sjs.patchStatus(name, d.metadata.resourceVersion as string, { ...S.failed(d, clock(), { class: "BadInput", message: "x" }) } as never);
  await sjs.patchStatus(name, d.metadata.resourceVersion as string, S.finalized(d, clock(), undefined) as never);
}

describe("garbage collection", () => {
  test("removes what is past its time and nothing else", async () => {
    const ns = await h.namespace();
    let offset = 0;
    const clock = () => new Date(Date.now() + offset);
    const cache = new ResultCache(h.store, 24 * HOUR, clock);
    const gc = new GarbageCollector({
      sjs: kubeApi(client, ns).separationJobs,
      store: h.store,
      cache,
      clock,
      log: createLogger("gc-test", { level: "silent" }),
      settings: { orphanGraceMs: HOUR, retentionMs: 7 * 24 * HOUR, pageSize: 500 },
    });

    // a live SeparationJob (not finished) with its input, and a finished one whose input leaked
    const live = await h.userSends(ns, { content: "live" });
    const done = await h.userSends(ns, { content: "done" });
    const sjs = kubeApi(client, ns).separationJobs;
    await finish(ns, done.name, clock);
    const put = (key: string) => h.store.put(key, Buffer.from(key), undefined, "application/octet-stream");
    await put(`inputs/${live.name}`);
    await put(`work/${live.name}/output`);
    await put(`inputs/${done.name}`);
    await put("inputs/sj-deleted-long-ago");
    await put("work/sj-deleted-long-ago/manifest.json");
    // a cached result a user received
    await put("tmp/result");
    const key = { sha256: "a".repeat(64), format: "ogg-opus" as const, model: "htdemucs" };
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

    offset = 23 * HOUR + 59 * MINUTE;
    assert.ok(await cache.lookup(key), "still cached just under 24 hours");
    assert.equal((await gc.runOnce()).cacheExpired, 0);

    offset = 24 * HOUR + MINUTE;
    assert.equal(await cache.lookup(key), undefined, "no hit past 24 hours, even before the collector runs");
    const third = await gc.runOnce();
    assert.equal(third.cacheExpired, 2, "the result and its owner marker");
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

  test("pages through the SeparationJobs: retention and live inputs hold across pages", async () => {
    const ns = await h.namespace();
    let offset = 0;
    const clock = () => new Date(Date.now() + offset);
    const sjs = kubeApi(client, ns).separationJobs;
    let requests = 0;
    const gc = new GarbageCollector({
      sjs: {
        ...sjs,
        pages: (limit) => {
          assert.equal(limit, 2, "the configured page size is asked for");
          return (async function* () {
            for await (const page of sjs.pages(limit)) {
              requests++;
              assert.ok(page.length <= 2);
              yield page;
            }
          })();
        },
      },
      store: h.store,
      cache: new ResultCache(h.store, 24 * HOUR, clock),
      clock,
      log: createLogger("gc-test", { level: "silent" }),
      settings: { orphanGraceMs: HOUR, retentionMs: 7 * 24 * HOUR, pageSize: 2 },
    });
    const done = [];
    for (let i = 0; i < 5; i++) done.push(await h.userSends(ns, { content: `done ${i}` }));
    for (const d of done) await finish(ns, d.name, clock);
    const live = await h.userSends(ns, { content: "live" });
    await h.store.put(`inputs/${live.name}`, Buffer.from("x"), undefined, "application/octet-stream");

    offset = 7 * 24 * HOUR + MINUTE;
    const report = await gc.runOnce();
    assert.ok(requests >= 3, `six SeparationJobs in pages of two take three requests (took ${requests})`);
    assert.equal(report.separationJobsDeleted, 5, "every finished one past retention, on every page");
    for (const d of done) assert.equal(await sjs.get(d.name), undefined);
    assert.ok(await sjs.get(live.name), "the unfinished one stays");
    assert.equal(await exists(`inputs/${live.name}`), true, "and so does its input, whichever page listed it");
  });
});
