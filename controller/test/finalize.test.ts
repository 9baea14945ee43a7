// The step durations measured when a SeparationJob is done, from the times in its status. Pure.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SeparationJob } from "@unmix/api/separationjob";
import { stepSeconds } from "../src/separation/finalize.ts";
import { sjAt, T0 } from "./fixtures.ts";

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
