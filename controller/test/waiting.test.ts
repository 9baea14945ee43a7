// Why a job waits, in the scheduler's words, and what happens when it waits too long or runs too
// long: on the real scheduler, with the node's GPUs taken away and given back.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { findCondition } from "@unmix/api/conditions";
import { replies } from "@unmix/core/replies";
import {
  eventsOf,
  finished,
  type Harness,
  type InProcessController,
  repliesTo,
  startController,
  startHarness,
  storedFor,
  succeeded,
  until,
} from "./harness.ts";

let h: Harness;
let patientNs: string;
let hastyNs: string;
let shortNs: string;
const controllers: InProcessController[] = [];

before(async () => {
  h = await startHarness({ gpus: 1 });
  patientNs = await h.namespace();
  hastyNs = await h.namespace();
  shortNs = await h.namespace();
  controllers.push(await startController(h, h.env(patientNs, { JOB_PENDING_DEADLINE_SECONDS: "300" })));
  controllers.push(await startController(h, h.env(hastyNs, { JOB_PENDING_DEADLINE_SECONDS: "4", JOB_ACTIVE_DEADLINE_SECONDS: "60" })));
  controllers.push(await startController(h, h.env(shortNs, { JOB_PENDING_DEADLINE_SECONDS: "5", JOB_ACTIVE_DEADLINE_SECONDS: "6" })));
});
after(async () => {
  for (const c of controllers) await c.stop();
  await h?.stop();
});

describe("waiting for a GPU", () => {
  test("with no free GPU the job says why it waits, then runs when one frees up", async () => {
    await h.stack.kube?.node.setGpus(0);
    const sent = await h.userSends(patientNs, { content: "waits for a GPU" });
    const waiting = await until("Scheduled=False", async () => {
      const sj = await h.sjs(patientNs).get(sent.name);
      const c = findCondition(sj?.status?.conditions, "Scheduled");
      return c?.status === "False" ? { sj, c } : undefined;
    });
    assert.equal(waiting.c.reason, "Unschedulable");
    assert.match(waiting.c.message, /Insufficient nvidia\.com\/gpu/);
    assert.equal(findCondition(waiting.sj?.status?.conditions, "Succeeded")?.reason, "WaitingForGPU");
    const event = await until("an Unschedulable event", async () => (await eventsOf(h.core, patientNs, sent.name)).find((e) => e.reason === "Unschedulable"));
    assert.equal(event.type, "Warning");
    assert.match(event.message ?? "", /Insufficient nvidia\.com\/gpu/);

    await h.stack.kube?.node.setGpus(1);
    const sj = await finished(h, patientNs, sent.name);
    assert.equal(succeeded(sj)?.status, "True");
    assert.equal(findCondition(sj.status?.conditions, "Scheduled")?.status, "True");
    assert.equal(repliesTo(h.sim, sent.wamid).length, 1);
  });

  test("past the pending deadline the job fails as Busy, the user is told, and the Job is removed", async () => {
    await h.stack.kube?.node.setGpus(0);
    try {
      const sent = await h.userSends(hastyNs, { content: "never gets a GPU" });
      const sj = await finished(h, hastyNs, sent.name);
      assert.equal(succeeded(sj)?.reason, "Busy");
      assert.match(sj.status?.failure?.message ?? "", /Insufficient nvidia\.com\/gpu/);
      const reply = repliesTo(h.sim, sent.wamid);
      assert.equal(reply.length, 1);
      assert.equal(reply[0]?.text, replies.failure.Busy);
      assert.deepEqual(await storedFor(h.store, sent.name), []);
      await until("the waiting Job to be deleted", async () => {
        try {
          await h.batch.readNamespacedJob({ name: sent.name, namespace: hastyNs });
          return undefined;
        } catch (e) {
          return (e as { code?: number }).code === 404 ? true : undefined;
        }
      });
    } finally {
      await h.stack.kube?.node.setGpus(1);
    }
  });

  test("a job running past activeDeadlineSeconds fails as DeadlineExceeded", async () => {
    const sent = await h.userSends(shortNs, { content: "SLEEP=60" });
    const sj = await finished(h, shortNs, sent.name);
    assert.equal(succeeded(sj)?.reason, "DeadlineExceeded");
    assert.equal(repliesTo(h.sim, sent.wamid)[0]?.text, replies.failure.DeadlineExceeded);
    assert.deepEqual(await storedFor(h.store, sent.name), []);
  });
});
