// Which status changes become Events on the SeparationJob (`kubectl describe sj`). Pure.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SeparationJob } from "@unmix/api/separationjob";
import { explainWaiting } from "../src/separation/classify.ts";
import { transitionEvents } from "../src/separation/events.ts";
import * as S from "../src/separation/status.ts";
import { apply, at, job, pod, sjAt } from "./fixtures.ts";

const events = (before: SeparationJob, patch: S.StatusPatch | undefined) =>
  transitionEvents(before, apply(before, patch ?? {})).map((e) => `${e.type} ${e.condition.type}=${e.condition.status} ${e.condition.reason}`);

describe("transitionEvents", () => {
  const jobCreated = sjAt("jobCreated");
  const waiting = (reason: string, message: string) => explainWaiting(job(), [pod({ scheduled: "False", reason, message })]);
  const cases: [string, SeparationJob, S.StatusPatch | undefined, string[]][] = [
    ["the first visit (all Unknown, Pending): none", sjAt("new"), S.initialize(sjAt("new"), at(0)), []],
    [
      "the media fetched: Normal",
      sjAt("initialized"),
      S.fetched(sjAt("initialized"), at(1), { inputKey: "k", bytes: 1 }),
      ["Normal MediaFetched=True Fetched"],
    ],
    ["the Job created", sjAt("fetched"), S.jobCreated(sjAt("fetched"), at(2), "j"), ["Normal JobCreated=True Created"]],
    [
      "no GPU: a Warning for Unschedulable, even while Unknown",
      jobCreated,
      S.progress(jobCreated, at(5), waiting("Unschedulable", "0/1 nodes are available")),
      ["Warning Scheduled=False Unschedulable"],
    ],
    ["a failure: Warning", jobCreated, S.failed(jobCreated, at(30), { class: "TooLong", message: "x" }), ["Warning Separated=False TooLong"]],
    ["Sending, Unknown and no warning: none", sjAt("separated"), S.sending(sjAt("separated"), at(11), "Result", "m"), []],
    ["a refused send: Warning", sjAt("sending"), S.refused(sjAt("sending"), at(12), "rate limit"), ["Warning Replied=Unknown Refused"]],
    ["the reply sent", sjAt("sending"), S.sent(sjAt("sending"), at(12), "response"), ["Normal Replied=True Sent"]],
    ["nothing changed: none", jobCreated, {}, []],
  ];
  for (const [what, before, patch, expected] of cases) test(what, () => assert.deepEqual(events(before, patch), expected));
  test("a new message alone is no new Event", () => {
    const once = apply(jobCreated, S.progress(jobCreated, at(5), waiting("Unschedulable", "0/1 nodes")) ?? {});
    const reworded = S.progress(once, at(6), waiting("Unschedulable", "0/2 nodes"));
    assert.deepEqual(transitionEvents(once, apply(once, reworded ?? { conditions: once.status?.conditions })), []);
  });
  test("Kueue's verdict replacing the Queued placeholder is a new Event, with Kueue's words", () => {
    const placeholder = apply(jobCreated, S.progress(jobCreated, at(3), explainWaiting(job({ suspend: true }), [])) ?? {});
    const wl = {
      metadata: { name: "job-sj-0123-abcde" },
      status: { conditions: [{ type: "QuotaReserved", status: "False", reason: "Pending", message: "insufficient unused quota for nvidia.com/gpu" }] },
    };
    const told = S.progress(placeholder, at(4), explainWaiting(job({ suspend: true }), [], wl));
    const after = apply(placeholder, told ?? {});
    assert.deepEqual(
      transitionEvents(placeholder, after).map((e) => `${e.type} ${e.condition.type} ${e.condition.reason}: ${e.condition.message}`),
      [
        "Warning Scheduled Queued: Kueue: Pending: insufficient unused quota for nvidia.com/gpu",
        "Warning Succeeded Queued: Kueue: Pending: insufficient unused quota for nvidia.com/gpu",
      ],
    );
  });
});
