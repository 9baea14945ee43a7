// The work queue keeps client-go's promises: duplicates merge, a key is never worked twice at once,
// failures back off per key, and the overall rate is capped. Time is mocked, so nothing here
// depends on how fast the machine is.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import { ExponentialBackoff, TokenBucket, WorkQueue } from "../src/framework/workqueue.ts";

const flush = async () => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

function queue(o: Partial<ConstructorParameters<typeof WorkQueue>[0]> = {}) {
  return new WorkQueue({ baseDelayMs: 100, maxDelayMs: 10_000, qps: 1000, burst: 1000, ...o });
}

describe("work queue", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"], now: 0 }));
  afterEach(() => mock.timers.reset());

  test("adding a queued key again merges it", async () => {
    const q = queue();
    q.add("a");
    q.add("b");
    q.add("a");
    q.add("a");
    assert.equal(q.len(), 2);
    assert.equal(await q.get(), "a");
    assert.equal(await q.get(), "b");
    assert.equal(q.len(), 0);
  });

  test("a key in flight is not handed out again; added meanwhile, it comes back once after done()", async () => {
    const q = queue();
    q.add("a");
    const key = await q.get();
    assert.equal(key, "a");
    q.add("a");
    q.add("a");
    assert.equal(q.len(), 0, "not queued while in flight");
    let second: string | undefined;
    void q.get().then((k) => {
      second = k;
    });
    await flush();
    assert.equal(second, undefined, "a second worker does not get it");
    q.done("a");
    await flush();
    assert.equal(second, "a", "queued once after done");
    q.done("a");
    assert.equal(q.len(), 0);
  });

  test("workers waiting on an empty queue each get a different key", async () => {
    const q = queue();
    const got: (string | undefined)[] = [];
    const workers = [q.get(), q.get(), q.get()].map((p) => p.then((k) => got.push(k)));
    q.add("x");
    q.add("y");
    q.add("z");
    await Promise.all(workers);
    assert.deepEqual([...got].sort(), ["x", "y", "z"]);
  });

  test("addAfter waits, and the earliest of several delays for one key wins", async () => {
    const q = queue();
    q.addAfter("a", 1000);
    q.addAfter("a", 300);
    q.addAfter("a", 5000);
    mock.timers.tick(299);
    assert.equal(q.len(), 0);
    mock.timers.tick(1);
    assert.equal(q.len(), 1);
    mock.timers.tick(10_000);
    assert.equal(q.len(), 1, "the later delays were dropped");
  });

  test("failures back off exponentially per key, capped, and forget() resets", () => {
    const b = new ExponentialBackoff<string>(100, 1000);
    assert.deepEqual([b.when("a"), b.when("a"), b.when("a"), b.when("a"), b.when("a")], [100, 200, 400, 800, 1000]);
    assert.equal(b.when("other"), 100, "per key");
    assert.equal(b.retries("a"), 5);
    b.forget("a");
    assert.equal(b.when("a"), 100);
  });

  test("addRateLimited requeues after the key's back-off", async () => {
    const q = queue();
    assert.equal(q.addRateLimited("a"), 100);
    assert.equal(q.addRateLimited("a"), 200);
    mock.timers.tick(100);
    assert.equal(q.len(), 1);
    assert.equal(q.numRequeues("a"), 2);
    q.forget("a");
    assert.equal(q.numRequeues("a"), 0);
  });

  test("the token bucket caps the overall rate after the burst", () => {
    const b = new TokenBucket(10, 3);
    assert.deepEqual([b.reserve(), b.reserve(), b.reserve()], [0, 0, 0], "the burst is free");
    assert.equal(b.reserve(), 100, "then one token per 100 ms at 10 qps");
    assert.equal(b.reserve(), 200);
    mock.timers.tick(1000);
    assert.equal(b.reserve(), 0, "refilled");
  });

  test("get() hands out no more keys per second than the cap", async () => {
    const q = queue({ qps: 2, burst: 1 });
    for (const k of ["a", "b", "c"]) q.add(k);
    const got: string[] = [];
    const take = async () => {
      const k = await q.get();
      if (k) got.push(k);
    };
    void take();
    void take();
    void take();
    await flush();
    assert.deepEqual(got, ["a"], "one at once (burst 1)");
    mock.timers.tick(499);
    await flush();
    assert.equal(got.length, 1);
    mock.timers.tick(1);
    await flush();
    assert.equal(got.length, 2, "the next after 500 ms at 2 qps");
    mock.timers.tick(500);
    await flush();
    assert.equal(got.length, 3);
  });

  test("shutDown wakes idle workers and waits for the keys in flight", async () => {
    const q = queue();
    q.add("a");
    const key = await q.get();
    const idle = q.get();
    let drained = false;
    const down = q.shutDown().then(() => {
      drained = true;
    });
    assert.equal(await idle, undefined, "idle worker released");
    await flush();
    assert.equal(drained, false, "still one in flight");
    q.done(key as string);
    await down;
    assert.equal(drained, true);
    q.add("b");
    assert.equal(q.len(), 0, "no adds after shutdown");
  });
});
