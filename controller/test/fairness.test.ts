// Per-sender fairness on the real scheduler and Job controller: one user's burst of files holds at
// most PER_USER_MAX_ACTIVE_JOBS Jobs at a time, so another user's message is not stuck behind it.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { findCondition } from "@unmix/api/conditions";
import {
  eventsOf,
  finished,
  type Harness,
  type InProcessController,
  repliesTo,
  startController,
  startHarness,
  succeeded,
  until,
  watchJobConcurrency,
} from "./harness.ts";

const HEAVY = "4915550000001";
const OTHER = "4915550000002";
let h: Harness;
let controller: InProcessController;
let ns: string;

before(async () => {
  h = await startHarness({ gpus: 4 });
  ns = await h.namespace();
  controller = await startController(h, h.env(ns, { PER_USER_MAX_ACTIVE_JOBS: "2" }));
});
after(async () => {
  await controller?.stop();
  await h?.stop();
});

describe("one sender's Jobs at a time", () => {
  test("six files from one user hold at most 2 GPUs; another user's message is answered before that backlog clears", async () => {
    const senderOf = new Map<string, string>();
    const jobs = await watchJobConcurrency(h, ns, (name) => senderOf.get(name));
    try {
      const heavy: Awaited<ReturnType<Harness["userMessage"]>>[] = [];
      for (let i = 0; i < 6; i++) {
        const m = await h.userMessage({ content: `SLEEP=3\nburst ${i}`, from: HEAVY });
        senderOf.set(m.name, "heavy");
        heavy.push(m);
      }
      const other = await h.userMessage({ content: "SLEEP=3\njust one", from: OTHER });
      senderOf.set(other.name, "other");
      const sjs = h.sjs(ns);
      for (const m of heavy) await sjs.create(m.job);
      await sjs.create(other.job);

      // held back, and the SeparationJob says why (an Event too), with nothing about who sent it
      const held = await until("a file of the burst held by the limit", async () => {
        for (const m of heavy) {
          const sj = await sjs.get(m.name);
          const c = findCondition(sj?.status?.conditions, "Succeeded");
          if (c?.reason === "WaitingForUserQuota") return { sj, c, name: m.name };
        }
        return undefined;
      });
      assert.match(held.c.message, /already has 2 separations running or waiting for a GPU/);
      const events = await until("its Event", async () => {
        const e = await eventsOf(h.core, ns, held.name);
        return e.some((x) => x.reason === "WaitingForUserQuota") ? e : undefined;
      });
      const userLabel = held.sj?.metadata.labels?.["unmix.dev/user"] ?? "";
      for (const e of events) for (const secret of [HEAVY, userLabel, "wamid."]) assert.ok(!e.message?.includes(secret), `${secret} in an Event`);

      const otherDone = await finished(h, ns, other.name, 120_000);
      assert.equal(succeeded(otherDone)?.status, "True");
      const otherReply = repliesTo(h.sim, other.wamid);
      assert.equal(otherReply.length, 1);
      const heavyReplies: number[] = [];
      for (const m of heavy) {
        const sj = await finished(h, ns, m.name, 180_000);
        assert.equal(succeeded(sj)?.status, "True", m.name);
        const r = repliesTo(h.sim, m.wamid);
        assert.equal(r.length, 1, `exactly one reply for ${m.name}`);
        heavyReplies.push(r[0]?.time ?? Number.POSITIVE_INFINITY);
      }
      assert.ok(
        (otherReply[0]?.time ?? Number.POSITIVE_INFINITY) < Math.max(...heavyReplies),
        "the other user's reply came before the burst's last one: it did not wait for the whole backlog",
      );
      assert.equal(jobs.most("heavy"), 2, "the burst had 2 Jobs at a time, never more");
      assert.equal(jobs.most("other"), 1);
    } finally {
      jobs.stop();
    }
  });
});
