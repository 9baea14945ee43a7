// The controller killed (SIGKILL) between each pair of steps, then started again: the user gets
// exactly one reply (two only where a crash hit between "Sending" and WhatsApp's answer and the
// message's status webhooks were lost past REPLY_CONFIRM_SECONDS), exactly one Job ran, and nothing
// of theirs is left.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { findCondition } from "@unmix/api/conditions";
import { modelId } from "@unmix/api/models";
import { parseReceipt, REPLY_RECEIPT_ANNOTATION } from "@unmix/api/separationjob";
import { refOfSeparationJob } from "@unmix/core/audit";
import { replies } from "@unmix/core/replies";
import { ResultCache } from "@unmix/core/result-cache";
import { normalizeSha256 } from "@unmix/core/sha256";
import type { Failpoint } from "../src/separation/failpoints.ts";
import { type ChildController, finished, type Harness, repliesTo, spawnController, startHarness, storedFor, succeeded } from "./harness.ts";

let h: Harness;
const running: ChildController[] = [];

before(async () => {
  h = await startHarness({ gpus: 4 });
});
after(async () => {
  for (const c of running) await c.kill("SIGKILL");
  await h?.stop();
});

async function killedAt(c: ChildController, fp: string): Promise<void> {
  const outcome = await Promise.race([c.exited, sleep(90_000, "still running")]);
  assert.equal(outcome, "SIGKILL", `the controller should have died at failpoint ${fp}`);
}

interface Expect {
  replies: number;
  succeeded: "True" | "False";
  reason: string;
}

async function crashAt(fp: Failpoint, o: { content?: string; receipts?: boolean; expect: Expect }) {
  h.enableReceipts(o.receipts ?? true);
  const ns = await h.namespace();
  const env = (extra: Record<string, string> = {}) => h.env(ns, { REPLY_CONFIRM_SECONDS: "4", ...extra });
  const first = spawnController(h, env({ UNMIX_FAILPOINTS: fp }));
  running.push(first);
  const sent = await h.userSends(ns, { content: o.content ?? `crash at ${fp}` });
  await killedAt(first, fp);

  const second = spawnController(h, env());
  running.push(second);
  const sj = await finished(h, ns, sent.name);
  await second.kill("SIGTERM");

  const userSaw = repliesTo(h.sim, sent.wamid);
  assert.equal(userSaw.length, o.expect.replies, `replies after a crash at ${fp}`);
  assert.equal(succeeded(sj)?.status, o.expect.succeeded);
  assert.equal(succeeded(sj)?.reason, o.expect.reason);
  // nowhere in the SeparationJob (spec, status, the receipt annotation): a wamid embeds the number
  for (const r of userSaw) assert.ok(!JSON.stringify(sj).includes(r.id), "the reply's wamid is not kept in the SeparationJob");
  assert.deepEqual(await storedFor(h.store, sent.name), [], "no input or intermediate left");
  const pods = await h.core.listNamespacedPod({ namespace: ns, labelSelector: `unmix.dev/separationjob=${sent.name}` });
  if (findCondition(sj.status?.conditions, "JobCreated")?.status === "True") assert.equal(pods.items.length, 1, "exactly one pod ran: one Job, run once");
  // P5: whatever step the crash interrupted, each audit entry is there once
  const trail = (await h.auditEntries()).filter((e) => e.ref === refOfSeparationJob(sent.name)).map((e) => e.event);
  const expected = [
    ...(findCondition(sj.status?.conditions, "JobCreated")?.status === "True" ? ["job-created"] : []),
    sj.status?.failure ? "failed" : "replied",
    "input-deleted",
  ];
  assert.deepEqual(trail, expected, `the audit trail after a crash at ${fp}`);
  return { sj, sent, userSaw };
}

const ok: Expect = { replies: 1, succeeded: "True", reason: "Succeeded" };

describe("a crash between each pair of steps", () => {
  for (const fp of [
    "fetch:stored",
    "fetch:recorded",
    "job:created",
    "job:audited",
    "job:recorded",
    "separated:recorded",
    "reply:uploaded",
    "reply:recorded",
    "finalize:cached",
    "finalize:cleaned",
    "finalize:audited",
  ] as const) {
    test(`killed at ${fp}: one reply, all cleaned up`, async () => {
      const { sj } = await crashAt(fp, { expect: ok });
      const hit = await new ResultCache(h.store, 24 * 3600_000).lookup({
        sha256: normalizeSha256(sj.spec.media.sha256),
        format: "ogg-opus",
        model: modelId("htdemucs"),
      });
      assert.ok(hit, "the result is cached");
    });
  }

  test("P10: killed after WhatsApp accepted the reply, before Sent was written: its status webhook settles it, no second reply", async () => {
    const { sj } = await crashAt("reply:sent", { receipts: true, expect: ok });
    assert.match(findCondition(sj.status?.conditions, "Replied")?.message ?? "", /status webhook/);
    const receipt = parseReceipt(sj.metadata.annotations?.[REPLY_RECEIPT_ANNOTATION]);
    assert.ok(receipt && ["sent", "delivered"].includes(receipt.status), "the receipt is recorded");
    assert.doesNotMatch(JSON.stringify(sj.metadata.annotations), /wamid/, "the receipt holds no wamid");
    assert.doesNotMatch(JSON.stringify(sj.status), /wamid/, "no wamid recorded from a receipt");
  });

  test("P10: killed after Sending was written, before the call: no receipt comes, so after the bound it is sent once", async () => {
    const { sj } = await crashAt("reply:sending", { receipts: true, expect: ok });
    assert.equal(sj.status?.reply?.resent, true);
  });

  test("the documented residual risk: killed after the send with its status webhooks lost past the bound, the user gets two replies, never three", async () => {
    const { sj } = await crashAt("reply:sent", { receipts: false, expect: { replies: 2, succeeded: "True", reason: "Succeeded" } });
    assert.equal(sj.status?.reply?.resent, true);
  });

  test("killed after a failure was recorded, before the user was told: told once", async () => {
    const { userSaw } = await crashAt("failure:recorded", { content: "EXIT=10", expect: { replies: 1, succeeded: "False", reason: "BadInput" } });
    assert.equal(userSaw[0]?.text, replies.failure.BadInput);
  });
});
