// What the metrics measure of a SeparationJob, from its status: the step durations when it is done,
// and whether it waits for a GPU (the waiting_for_gpu gauge). Pure.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SeparationJob } from "@unmix/api/separationjob";
import { stepSeconds } from "../src/separation/finalize.ts";
import * as S from "../src/separation/status.ts";
import { apply, sjAt, T0 } from "./fixtures.ts";

const withSteps = (steps: NonNullable<SeparationJob["status"]>["steps"]): SeparationJob => ({ ...sjAt("new"), status: { steps } });
const t = (s: number) => new Date(T0.getTime() + s * 1000).toISOString();

describe("stepSeconds", () => {
  const cases: [string, SeparationJob, ReturnType<typeof stepSeconds>][] = [
    [
      "every step of a SeparationJob that replied (total: from the message, 2 s before it was created)",
      withSteps({ fetchedAt: t(1), jobCreatedAt: t(2), scheduledAt: t(4), separatedAt: t(10), repliedAt: t(12) }),
      { fetch: 1, queue: 2, separate: 6, reply: 2, total: 14 },
    ],
    ["a fetch that failed: no step finished", withSteps({}), {}],
    ["never scheduled: fetch only", withSteps({ fetchedAt: t(1.5), jobCreatedAt: t(2) }), { fetch: 1.5 }],
    [
      "the scheduler's whole seconds can put a step's end before its start: 0, not negative",
      withSteps({ fetchedAt: t(1), jobCreatedAt: t(2.6), scheduledAt: t(2) }),
      { fetch: 1, queue: 0 },
    ],
  ];
  for (const [what, sj, expected] of cases) test(what, () => assert.deepEqual(stepSeconds(sj), expected));
  test("the happy path's fixture measures the same", () => assert.equal(stepSeconds(sjAt("finished")).total, 14));
});

describe("isWaitingForGpu", () => {
  const created = sjAt("jobCreated");
  const now = new Date(T0.getTime() + 3000);
  const waiting = (scheduled: "True" | "False" | "Unknown", reason: string) =>
    apply(created, S.progress(created, now, { scheduled, reason, message: reason, running: false }) ?? {});
  test("from the Job's creation until its pod is bound, whether the scheduler or Kueue holds it", () => {
    assert.equal(S.isWaitingForGpu(created), true);
    assert.equal(S.isWaitingForGpu(waiting("False", "Unschedulable")), true);
    assert.equal(S.isWaitingForGpu(waiting("False", "Queued")), true);
  });
  test("not before the Job, nor once the pod is on a node, nor after giving up (Busy), nor when done", () => {
    for (const stage of ["new", "fetched", "separated", "sending", "finished"] as const) assert.equal(S.isWaitingForGpu(sjAt(stage)), false, stage);
    assert.equal(S.isWaitingForGpu(waiting("True", "Scheduled")), false);
    assert.equal(S.isWaitingForGpu(apply(created, S.failed(created, now, { class: "Busy", message: "no GPU within the pending deadline" }))), false);
  });
});
