// The pure reconcile decision in every state: one step per pass, from observed state only.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { findCondition } from "@unmix/api/conditions";
import { formatReceipt, REPLY_RECEIPT_ANNOTATION, type SeparationJob } from "@unmix/api/separationjob";
import type { JobView, PodView, WorkloadView } from "../src/framework/kube/objects.ts";
import { classifyJobFailure, explainWaiting } from "../src/separation/classify.ts";
import {
  type Action,
  decide,
  KUEUE_RECHECK_MS,
  KUEUE_VERDICT_WAIT_MS,
  type MaxAges,
  type Observation,
  stageOf,
  type UserQuota,
} from "../src/separation/decide.ts";
import * as S from "../src/separation/status.ts";
import { apply, at, job, newSj, pod, sjAt } from "./fixtures.ts";

const PENDING_MS = 600_000;
const CONFIRM_MS = 300_000;
const HOUR = 3600;
const MAX_AGES: MaxAges = { fetchingMs: 0.5 * HOUR * 1000, separatingMs: HOUR * 1000, replyingMs: 6 * HOUR * 1000 };

function run(sj: SeparationJob, o: { job?: JobView; pods?: PodView[]; now?: Date; workload?: WorkloadView; userQuota?: UserQuota } = {}): Action {
  const obs: Observation = {
    ...(o.userQuota ? { userQuota: o.userQuota } : {}),
    sj,
    job: o.job,
    pods: o.pods ?? [],
    ...(o.workload ? { workload: o.workload } : {}),
    now: o.now ?? at(20),
    pendingDeadlineMs: PENDING_MS,
    replyConfirmMs: CONFIRM_MS,
    maxAges: MAX_AGES,
  };
  return decide(obs);
}

const complete = [{ type: "Complete", status: "True" }];
const failedBy = (reason: string, message = "") => [{ type: "Failed", status: "True", reason, message }];

describe("decide: the happy path, one step per pass", () => {
  test("a new SeparationJob first gets its conditions, all Unknown", () => {
    assert.deepEqual(run(sjAt("new")), { type: "Initialize" });
    const init = S.initialize(newSj(), at(0));
    assert.deepEqual(
      init.conditions?.map((c) => [c.type, c.status, c.reason]),
      ["MediaFetched", "JobCreated", "Scheduled", "Separated", "Replied", "Succeeded"].map((t) => [t, "Unknown", "Pending"]),
    );
    assert.ok(init.conditions?.every((c) => c.observedGeneration === 1 && c.lastTransitionTime === at(0).toISOString()));
  });
  test("then fetches the media", () => assert.deepEqual(run(sjAt("initialized")), { type: "FetchMedia" }));
  test("then creates the Job", () => assert.deepEqual(run(sjAt("fetched")), { type: "CreateJob" }));
  test("records a Job created before a crash instead of creating another", () =>
    assert.deepEqual(run(sjAt("fetched"), { job: job() }), { type: "RecordJobCreated" }));
  test("reads the result once the Job completed", () =>
    assert.deepEqual(run(sjAt("jobCreated"), { job: job({ conditions: complete }) }), { type: "RecordSeparated", jobMissing: false }));
  test("a Job only SuccessCriteriaMet is not finished yet", () => {
    const a = run(sjAt("jobCreated"), {
      job: job({ conditions: [{ type: "SuccessCriteriaMet", status: "True" }] }),
      pods: [pod({ scheduled: "True", running: true })],
    });
    assert.equal(a.type, "UpdateProgress");
  });
  test("then sends the result", () => assert.deepEqual(run(sjAt("separated"), { job: job({ conditions: complete }) }), { type: "SendReply", kind: "Result" }));
  test("then finalizes once the reply is Sent", () => assert.deepEqual(run(sjAt("sent")), { type: "Finalize" }));
  test("and then does nothing more", () => {
    assert.equal(run(sjAt("finished")).type, "Wait");
    const done = sjAt("finished");
    assert.equal(findCondition(done.status?.conditions, "Succeeded")?.status, "True");
    assert.equal(done.status?.result?.totalSeconds, 14, "message at 09:59:58, reply at 10:00:12");
  });
  test("a SeparationJob being deleted is left alone", () => {
    const sj = sjAt("fetched");
    assert.equal(run({ ...sj, metadata: { ...sj.metadata, deletionTimestamp: at(5).toISOString() } }).type, "Wait");
  });
});

describe("decide: waiting for a GPU", () => {
  test("an unschedulable pod sets Scheduled=False with the scheduler's words", () => {
    const message = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available";
    const a = run(sjAt("jobCreated"), { job: job(), pods: [pod({ scheduled: "False", reason: "Unschedulable", message })], now: at(30) });
    assert.equal(a.type, "UpdateProgress");
    if (a.type !== "UpdateProgress") return;
    const scheduled = findCondition(a.patch.conditions, "Scheduled");
    assert.equal(scheduled?.status, "False");
    assert.equal(scheduled?.reason, "Unschedulable");
    assert.match(scheduled?.message ?? "", /Insufficient nvidia\.com\/gpu/);
    assert.equal(findCondition(a.patch.conditions, "Succeeded")?.reason, "WaitingForGPU");
    assert.equal(a.requeueAfterMs, PENDING_MS - 28_000 + 100, "looks again when the pending deadline passes");
  });
  test("the same waiting state again writes nothing", () => {
    const message = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.";
    const pods = [pod({ scheduled: "False", reason: "Unschedulable", message })];
    const first = run(sjAt("jobCreated"), { job: job(), pods, now: at(30) });
    assert.equal(first.type, "UpdateProgress");
    if (first.type !== "UpdateProgress") return;
    const again = run(apply(sjAt("jobCreated"), first.patch), { job: job(), pods, now: at(40) });
    assert.equal(again.type, "Wait");
  });
  test("past the pending deadline without a GPU: Busy", () => {
    const pods = [pod({ scheduled: "False", reason: "Unschedulable", message: "0/1 nodes are available: 1 Insufficient nvidia.com/gpu." })];
    const a = run(sjAt("jobCreated"), { job: job(), pods, now: at(2 + PENDING_MS / 1000) });
    assert.equal(a.type, "RecordFailure");
    if (a.type !== "RecordFailure") return;
    assert.equal(a.failure.class, "Busy");
    assert.match(a.failure.message, /Insufficient nvidia\.com\/gpu/);
  });
  test("the pending deadline does not apply once a pod was scheduled", () => {
    const sj = sjAt("jobCreated");
    const a = run(sj, { job: job(), pods: [pod({ scheduled: "True", running: true })], now: at(2 + PENDING_MS / 1000 + 60) });
    assert.equal(a.type, "UpdateProgress");
    if (a.type !== "UpdateProgress") return;
    assert.equal(findCondition(a.patch.conditions, "Scheduled")?.status, "True");
    assert.equal(a.patch.steps?.scheduledAt, at(4).toISOString());
    assert.equal(a.requeueAfterMs, undefined, "the Job's events wake us from here");
  });
  test("a suspended Job (Kueue) shows as Queued and counts against the deadline", () => {
    const a = run(sjAt("jobCreated"), { job: job({ suspend: true }), now: at(30) });
    assert.equal(a.type, "UpdateProgress");
    if (a.type !== "UpdateProgress") return;
    assert.equal(findCondition(a.patch.conditions, "Scheduled")?.reason, "Queued");
    assert.equal(findCondition(a.patch.conditions, "Succeeded")?.reason, "Queued");
    assert.equal(run(sjAt("jobCreated"), { job: job({ suspend: true }), now: at(2 + PENDING_MS / 1000) }).type, "RecordFailure");
  });
  describe("Kueue's own words for why it holds the Job", () => {
    const NO_QUOTA = "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor gpu, 1 more needed";
    const workload = (...conditions: { type: string; status: string; reason?: string; message?: string }[]): WorkloadView => ({
      metadata: { name: "job-sj-0123-abcde", uid: "wl-uid" },
      status: { conditions },
    });
    const queued = (a: Action) => {
      assert.equal(a.type, "UpdateProgress");
      return a.type === "UpdateProgress" ? a : assert.fail();
    };
    test("the Workload's QuotaReserved=False message is the Queued condition's, and the Busy failure names it", () => {
      const wl = workload({ type: "QuotaReserved", status: "False", reason: "Pending", message: NO_QUOTA });
      const a = queued(run(sjAt("jobCreated"), { job: job({ suspend: true }), workload: wl, now: at(30) }));
      assert.equal(findCondition(a.patch.conditions, "Scheduled")?.reason, "Queued");
      assert.equal(findCondition(a.patch.conditions, "Scheduled")?.message, `Kueue: Pending: ${NO_QUOTA}`);
      assert.equal(a.requeueAfterMs, PENDING_MS - 28_000 + 100, "Kueue has said why: only the deadline is left to watch");
      const late = run(sjAt("jobCreated"), { job: job({ suspend: true }), workload: wl, now: at(2 + PENDING_MS / 1000) });
      assert.equal(late.type, "RecordFailure");
      if (late.type === "RecordFailure") {
        assert.equal(late.failure.class, "Busy");
        assert.match(late.failure.message, /insufficient unused quota for nvidia\.com\/gpu/);
      }
    });
    test("until Kueue has said why, it looks again every second, for a bounded while", () => {
      const first = queued(run(sjAt("jobCreated"), { job: job({ suspend: true }), now: at(3) }));
      assert.equal(first.requeueAfterMs, KUEUE_RECHECK_MS);
      const placeholder = apply(sjAt("jobCreated"), first.patch);
      const again = run(placeholder, { job: job({ suspend: true }), now: at(4) });
      assert.deepEqual([again.type, "requeueAfterMs" in again && again.requeueAfterMs], ["Wait", KUEUE_RECHECK_MS]);
      const giveUp = run(placeholder, { job: job({ suspend: true }), now: at(3 + KUEUE_VERDICT_WAIT_MS / 1000) });
      assert.deepEqual([giveUp.type, "requeueAfterMs" in giveUp && giveUp.requeueAfterMs], ["Wait", PENDING_MS - (1000 + KUEUE_VERDICT_WAIT_MS) + 100]);
      // the verdict replaces the placeholder: a write (and an Event), though the reason stays Queued
      const verdict = queued(
        run(placeholder, {
          job: job({ suspend: true }),
          now: at(5),
          workload: workload({ type: "QuotaReserved", status: "False", reason: "Pending", message: NO_QUOTA }),
        }),
      );
      assert.match(findCondition(verdict.patch.conditions, "Scheduled")?.message ?? "", /^Kueue: Pending: couldn't assign flavors/);
      // and the same verdict again is no write
      const told = apply(placeholder, verdict.patch);
      assert.equal(
        run(told, {
          job: job({ suspend: true }),
          now: at(6),
          workload: workload({ type: "QuotaReserved", status: "False", reason: "Pending", message: NO_QUOTA }),
        }).type,
        "Wait",
      );
    });
    test("a Job preempted after it ran is Queued with Kueue's reason, and the pending deadline no longer applies", () => {
      const ran = apply(sjAt("jobCreated"), queued(run(sjAt("jobCreated"), { job: job(), pods: [pod({ scheduled: "True", running: true })] })).patch);
      const evicted = workload(
        { type: "QuotaReserved", status: "True", reason: "QuotaReserved", message: "Quota reserved in ClusterQueue gpu" },
        {
          type: "Evicted",
          status: "True",
          reason: "Preempted",
          message: "Preempted to accommodate a workload (UID: 1, JobUID: 2) due to prioritization in the ClusterQueue",
        },
      );
      const preemptedAt = 2 + PENDING_MS / 1000 + 5;
      const a = queued(run(ran, { job: job({ suspend: true }), workload: evicted, now: at(preemptedAt) }));
      assert.match(findCondition(a.patch.conditions, "Scheduled")?.message ?? "", /^Kueue: Preempted: Preempted to accommodate a workload/);
      assert.equal(a.requeueAfterMs, undefined, "the deadline counts from the Queued condition, written by this step");
      // back in the queue: the pending deadline counts again, from the preemption
      const requeued = apply(ran, a.patch);
      const waiting = run(requeued, { job: job({ suspend: true }), workload: evicted, now: at(preemptedAt + 60) });
      assert.deepEqual([waiting.type, "requeueAfterMs" in waiting && waiting.requeueAfterMs], ["Wait", PENDING_MS - 60_000 + 100]);
      const late = run(requeued, { job: job({ suspend: true }), workload: evicted, now: at(preemptedAt + PENDING_MS / 1000) });
      assert.equal(late.type, "RecordFailure");
      if (late.type === "RecordFailure") {
        assert.equal(late.failure.class, "Busy");
        assert.match(late.failure.message, /of going back to the queue: Queued: Kueue: Preempted/);
      }
      // readmitted and running: no deadline
      const running = run(requeued, { job: job(), pods: [pod({ scheduled: "True", running: true })], now: at(preemptedAt + PENDING_MS / 1000) });
      assert.equal(running.type, "UpdateProgress");
    });
  });
  test("a scheduled pod that cannot pull its image says so", () => {
    const a = run(sjAt("jobCreated"), {
      job: job(),
      pods: [pod({ scheduled: "True", waiting: { reason: "ImagePullBackOff", message: "Back-off pulling image" } })],
    });
    assert.equal(a.type, "UpdateProgress");
    if (a.type !== "UpdateProgress") return;
    assert.equal(findCondition(a.patch.conditions, "Separated")?.reason, "ImagePullBackOff");
  });
  test("no pod yet: Scheduled Unknown, waiting for the Job controller", () => {
    const w = explainWaiting(job(), []);
    assert.deepEqual([w.scheduled, w.reason], ["Unknown", "PodPending"]);
  });
  test("the newest live pod explains the wait", () => {
    const old = pod({ scheduled: "True", terminated: { exitCode: 1 }, created: at(3), name: "a" });
    const fresh = pod({ scheduled: "False", reason: "Unschedulable", message: "no GPU", created: at(8), name: "b" });
    assert.equal(explainWaiting(job(), [old, fresh]).reason, "Unschedulable");
  });
});

describe("decide: failures", () => {
  const cases: [string, ReturnType<typeof failedBy>, PodView[], string][] = [
    [
      "exit 10 (undecodable) via podFailurePolicy",
      failedBy("PodFailurePolicy", "Container separate for pod default/x failed with exit code 10 matching FailJob rule at index 0"),
      [],
      "BadInput",
    ],
    [
      "exit 11 (no audio stream)",
      failedBy("PodFailurePolicy", "Container separate for pod default/x failed with exit code 11 matching FailJob rule at index 0"),
      [],
      "NoAudio",
    ],
    [
      "exit 12 (too long)",
      failedBy("PodFailurePolicy", "Container separate for pod default/x failed with exit code 12 matching FailJob rule at index 0"),
      [],
      "TooLong",
    ],
    [
      "exit 13 (output too large)",
      failedBy("PodFailurePolicy", "Container separate for pod default/x failed with exit code 13 matching FailJob rule at index 0"),
      [],
      "OutputTooLarge",
    ],
    [
      "exit 14 (silent)",
      failedBy("PodFailurePolicy", "Container separate for pod default/x failed with exit code 14 matching FailJob rule at index 0"),
      [],
      "Silent",
    ],
    [
      "exit 15 (video picture too large)",
      failedBy("PodFailurePolicy", "Container separate for pod default/x failed with exit code 15 matching FailJob rule at index 0"),
      [],
      "VideoTooLarge",
    ],
    [
      "podFailurePolicy without a code in the message: the pod's exit code",
      failedBy("PodFailurePolicy", "matched"),
      [pod({ scheduled: "True", terminated: { exitCode: 12, message: "too long" } })],
      "TooLong",
    ],
    [
      "activeDeadlineSeconds after running",
      failedBy("DeadlineExceeded", "Job was active longer than specified deadline"),
      [pod({ scheduled: "True", terminated: { exitCode: 143 } })],
      "DeadlineExceeded",
    ],
    [
      "retries exhausted",
      failedBy("BackoffLimitExceeded", "Job has reached the specified backoff limit"),
      [pod({ scheduled: "True", terminated: { exitCode: 1, message: "CUDA error" } })],
      "Internal",
    ],
    ["anything else", failedBy("SomethingNew"), [], "Internal"],
  ];
  for (const [what, conditions, pods, expected] of cases) {
    test(`${what} → ${expected}`, () => {
      const a = run(sjAt("jobCreated"), { job: job({ conditions }), pods });
      assert.equal(a.type, "RecordFailure");
      if (a.type === "RecordFailure") assert.equal(a.failure.class, expected);
    });
  }
  test("the termination message reaches the SRE's failure message, phone numbers masked", () => {
    const c = classifyJobFailure(job({ conditions: failedBy("BackoffLimitExceeded") }), [
      pod({ scheduled: "True", terminated: { exitCode: 1, message: "failed for +4917623456789" } }),
    ]);
    assert.match(c.message, /failed for/);
    assert.doesNotMatch(c.message, /4917623456789/);
  });
  test("a recorded failure is told to the user next, whatever the Job does meanwhile", () => {
    const sj = apply(sjAt("jobCreated"), S.failed(sjAt("jobCreated"), at(30), { class: "Busy", message: "no GPU" }));
    assert.deepEqual(run(sj, { job: job({ conditions: complete }) }), { type: "SendReply", kind: "Failure" });
    assert.equal(findCondition(sj.status?.conditions, "Scheduled")?.reason, "Busy");
  });
  test("a fetch failure sets MediaFetched=False", () => {
    const sj = apply(sjAt("initialized"), S.failed(sjAt("initialized"), at(3), { class: "MediaUnavailable", message: "gone" }));
    assert.equal(findCondition(sj.status?.conditions, "MediaFetched")?.status, "False");
    assert.deepEqual(run(sj), { type: "SendReply", kind: "Failure" });
  });
  test("after the failure notice is sent: finalize as Failed with the class as reason", () => {
    let sj = apply(sjAt("jobCreated"), S.failed(sjAt("jobCreated"), at(30), { class: "TooLong", message: "exit 12" }));
    sj = apply(sj, S.sending(sj, at(31), "Failure", undefined));
    sj = apply(sj, S.sent(sj, at(32), "response"));
    assert.deepEqual(run(sj), { type: "Finalize" });
    const done = apply(sj, S.finalized(sj, at(33), undefined));
    const succeeded = findCondition(done.status?.conditions, "Succeeded");
    assert.deepEqual([succeeded?.status, succeeded?.reason], ["False", "TooLong"]);
  });
  test("a Job gone before it was seen finishing: look for its result", () =>
    assert.deepEqual(run(sjAt("jobCreated")), { type: "RecordSeparated", jobMissing: true }));
});

describe("decide: a Job of our name that is not ours", () => {
  const ours = job();
  const meta = ours.metadata;
  const owner = meta.ownerReferences?.[0];
  assert.ok(owner);
  const cases: [string, JobView, Action["type"]][] = [
    ["ours (our labels, this SeparationJob as controller): used", ours, "RecordJobCreated"],
    ["made by us for an earlier SeparationJob of the same name: deleted, not adopted", job({ uid: "other" }), "DeleteStaleJob"],
    ["without our labels, though this SeparationJob is its controller: not ours", { ...ours, metadata: { ...meta, labels: {} } }, "RecordFailure"],
    [
      "labelled for another SeparationJob: not ours",
      { ...ours, metadata: { ...meta, labels: { ...meta.labels, "unmix.dev/separationjob": "sj-other" } } },
      "RecordFailure",
    ],
    ["with no controller at all: not ours", { ...ours, metadata: { ...meta, ownerReferences: [] } }, "RecordFailure"],
    [
      "controlled by something else of the same name: not ours",
      { ...ours, metadata: { ...meta, ownerReferences: [{ ...owner, kind: "CronJob", uid: "cj" }] } },
      "RecordFailure",
    ],
    [
      "controlled by another API group's SeparationJob: not ours",
      { ...ours, metadata: { ...meta, ownerReferences: [{ ...owner, apiVersion: "evil.dev/v1", uid: "x" }] } },
      "RecordFailure",
    ],
    ["owned but not as controller: not ours", { ...ours, metadata: { ...meta, ownerReferences: [{ ...owner, controller: false }] } }, "RecordFailure"],
  ];
  for (const [what, j, expected] of cases) test(what, () => assert.equal(run(sjAt("fetched"), { job: j }).type, expected));

  test("someone else's Job fails the SeparationJob with the reason JobNameTaken, never deletes it, and the user is told", () => {
    const foreign = { ...ours, metadata: { ...meta, labels: {}, ownerReferences: [] } };
    for (const state of ["fetched", "jobCreated"] as const) {
      const a = run(sjAt(state), { job: foreign });
      assert.equal(a.type, "RecordFailure");
      if (a.type !== "RecordFailure") return;
      assert.equal(a.failure.reason, "JobNameTaken");
      const failed = apply(sjAt(state), S.failed(sjAt(state), at(30), a.failure));
      const created = findCondition(failed.status?.conditions, "JobCreated");
      assert.deepEqual([created?.status, created?.reason], ["False", "JobNameTaken"]);
      assert.match(created?.message ?? "", /left untouched/);
      assert.deepEqual(run(failed, { job: foreign }), { type: "SendReply", kind: "Failure" });
    }
  });
});

describe("decide: the reply is sent once; a crash mid-send is settled by WhatsApp's receipt", () => {
  const receipt = (sj: SeparationJob, value: string) => ({ ...sj, metadata: { ...sj.metadata, annotations: { [REPLY_RECEIPT_ANNOTATION]: value } } });
  const delivered = formatReceipt({ status: "delivered", at: at(12).toISOString() });

  test("Sending, within the confirm window: wait for the receipt, do not send", () => {
    const a = run(sjAt("sending"), { now: at(11 + 60) });
    assert.equal(a.type, "Wait");
    if (a.type === "Wait") assert.equal(a.requeueAfterMs, CONFIRM_MS - 60_000);
  });
  test("Sending with a receipt: confirm it, at any time, and finalize without a message id", () => {
    for (const now of [at(12), at(11 + CONFIRM_MS / 1000), at(10_000)])
      assert.deepEqual(run(receipt(sjAt("sending"), delivered), { now }), { type: "ConfirmReply" });
    const sj = receipt(sjAt("sending"), delivered);
    const confirmed = apply(sj, S.sent(sj, at(13), "receipt"));
    assert.equal(confirmed.status?.reply?.state, "Sent");
    assert.doesNotMatch(JSON.stringify(confirmed), /wamid/, "a receipt holds no wamid");
    assert.deepEqual(run(confirmed), { type: "Finalize" });
  });
  test("a malformed receipt annotation (or an old wamid one) is no receipt", () => {
    for (const value of ["wamid.HBgLNDkxNTE", "{}", '{"status":"failed","at":"2026-11-25T10:00:00Z"}', "not json"])
      assert.equal(run(receipt(sjAt("sending"), value), { now: at(12) }).type, "Wait", value);
  });
  test("Sending past the window without a receipt: the send most likely never left, so it is sent once more", () => {
    assert.deepEqual(run(sjAt("sending"), { now: at(11 + CONFIRM_MS / 1000) }), { type: "SendReply", kind: "Result", resend: true });
    const failureNotice = apply(sjAt("sending"), { reply: { state: "Sending", kind: "Failure", attemptedAt: at(11).toISOString() } });
    assert.deepEqual(run(failureNotice, { now: at(11 + CONFIRM_MS / 1000) }), { type: "SendReply", kind: "Failure", resend: true });
  });
  test("the repeat, itself left unconfirmed past the window: give up, never a third send", () => {
    const first = sjAt("sending");
    const resent = apply(first, S.sending(first, at(400), "Result", "987654321", true));
    assert.equal(resent.status?.reply?.resent, true);
    assert.equal(run(resent, { now: at(400 + 60) }).type, "Wait");
    assert.deepEqual(run(receipt(resent, delivered), { now: at(400 + 60) }), { type: "ConfirmReply" });
    assert.deepEqual(run(resent, { now: at(400 + CONFIRM_MS / 1000) }), { type: "GiveUpReply" });
    const gaveUp = apply(resent, S.unconfirmed(resent, at(800)));
    assert.deepEqual(run(gaveUp), { type: "Finalize" });
    const done = apply(gaveUp, S.finalized(gaveUp, at(801), "results/x"));
    assert.deepEqual(
      [findCondition(done.status?.conditions, "Succeeded")?.status, findCondition(done.status?.conditions, "Succeeded")?.reason],
      ["False", "ReplyUnconfirmed"],
    );
  });
  test("a refused send (nothing went out) may be sent again, reusing the upload", () => {
    const refused = apply(sjAt("sending"), S.refused(sjAt("sending"), at(12), "rate limited"));
    assert.equal(refused.status?.reply?.state, "Uploaded");
    assert.equal(refused.status?.reply?.mediaId, "987654321");
    assert.deepEqual(run(refused), { type: "SendReply", kind: "Result" });
  });
  test("a refused send is tried again only after WhatsApp's delay, though the refusal's own write wakes the controller at once", () => {
    const refused = apply(sjAt("sending"), S.refused(sjAt("sending"), at(12), "token expired", 30_000));
    assert.equal(refused.status?.reply?.notBefore, at(42).toISOString());
    const early = run(refused, { now: at(13) });
    assert.deepEqual(early, { type: "Wait", why: "WhatsApp refused the send: trying again later", requeueAfterMs: 29_000 });
    assert.deepEqual(run(refused, { now: at(42) }), { type: "SendReply", kind: "Result" });
  });
  test("an unreachable user (reply failed): finalize, no further send", () => {
    const failed = apply(sjAt("sending"), S.replyFailed(sjAt("sending"), at(12), "outside the 24-hour window"));
    assert.deepEqual(run(failed), { type: "Finalize" });
  });
  test("whatever state the walk is in, nothing is sent after Sent, nor within the window after Sending, nor after a receipt", () => {
    const cases = [
      ["sent", [at(12), at(200), at(10_000)]],
      ["finished", [at(12), at(200), at(10_000)]],
      ["sending", [at(12), at(200), at(10 + CONFIRM_MS / 1000)]],
    ] as const;
    for (const [stage, times] of cases) {
      for (const now of times) {
        for (const j of [undefined, job({ conditions: complete }), job()]) {
          for (const sj of [sjAt(stage), receipt(sjAt(stage), delivered)]) {
            const a = run(sj, { now, ...(j ? { job: j } : {}) });
            assert.notEqual(a.type, "SendReply", `${stage} at ${now.toISOString()}`);
          }
        }
      }
    }
  });
});

describe("decide: activeDeadlineSeconds counts the wait too", () => {
  test("a Job that hit its deadline without ever getting a GPU is Busy", () => {
    const a = run(sjAt("jobCreated"), {
      job: job({ conditions: failedBy("DeadlineExceeded", "Job was active longer than specified deadline") }),
      pods: [pod({ scheduled: "False", reason: "Unschedulable" })],
    });
    assert.equal(a.type === "RecordFailure" && a.failure.class, "Busy");
  });
  test("one that ran and hit it is DeadlineExceeded", () => {
    const sj = apply(sjAt("jobCreated"), { steps: { scheduledAt: at(4).toISOString() } });
    const a = run(sj, { job: job({ conditions: failedBy("DeadlineExceeded") }) });
    assert.equal(a.type === "RecordFailure" && a.failure.class, "DeadlineExceeded");
  });
});

describe("decide: every stage has a maximum age (P11: nothing kept by a stuck message)", () => {
  const failedSj = () => apply(sjAt("fetched"), S.failed(sjAt("fetched"), at(5), { class: "BadInput", message: "x" }));
  const withReceipt = (sj: SeparationJob) => ({
    ...sj,
    metadata: { ...sj.metadata, annotations: { [REPLY_RECEIPT_ANNOTATION]: formatReceipt({ status: "sent", at: at(12).toISOString() }) } },
  });
  const running = { job: job(), pods: [pod({ scheduled: "True", running: true })] };
  const internal = (what: string, limit: string): Action => ({
    type: "RecordFailure",
    failure: { class: "Internal", message: `${what} within ${limit} of the message: given up` },
  });
  const abandon: Action = { type: "AbandonReply", why: "no reply could be sent within 6 h of the message" };
  // [stuck in, SeparationJob, what was observed, age in seconds, the decision]
  const table: [string, () => SeparationJob, { job?: JobView; pods?: PodView[] }, number, Action | string][] = [
    ["fetching", () => sjAt("initialized"), {}, 0.5 * HOUR - 1, "FetchMedia"],
    ["fetching", () => sjAt("initialized"), {}, 0.5 * HOUR, internal("the media was not fetched", "0.5 h")],
    ["creating the Job", () => sjAt("fetched"), {}, HOUR - 1, "CreateJob"],
    ["creating the Job", () => sjAt("fetched"), {}, HOUR, internal("no result", "1 h")],
    ["running", () => sjAt("jobCreated"), running, HOUR - 1, "UpdateProgress"],
    ["running", () => sjAt("jobCreated"), running, HOUR, internal("no result", "1 h")],
    ["replying with the result", () => sjAt("separated"), {}, 6 * HOUR - 1, "SendReply"],
    ["replying with the result", () => sjAt("separated"), {}, 6 * HOUR, abandon],
    ["replying with a failure", failedSj, {}, 6 * HOUR - 1, "SendReply"],
    ["replying with a failure", failedSj, {}, 6 * HOUR, abandon],
    ["a send of unknown outcome", () => sjAt("sending"), {}, 6 * HOUR, { type: "GiveUpReply" }],
    ["a send with a receipt", () => withReceipt(sjAt("sending")), {}, 6 * HOUR, { type: "ConfirmReply" }],
    ["finalizing (the garbage collector's bound)", () => sjAt("sent"), {}, 100 * HOUR, { type: "Finalize" }],
  ];
  for (const [stage, sj, observed, age, expected] of table) {
    test(`P11: ${stage}, ${age} s old: ${typeof expected === "string" ? expected : expected.type}`, () => {
      const a = run(sj(), { ...observed, now: at(age) });
      if (typeof expected === "string") assert.equal(a.type, expected);
      else assert.deepEqual(a, expected);
    });
  }
  test("P11: a message stuck before its reply still gets a failure reply, then everything is deleted", () => {
    let sj = sjAt("initialized");
    const now = at(2 * HOUR);
    const first = run(sj, { now });
    assert.equal(first.type, "RecordFailure");
    if (first.type !== "RecordFailure") return;
    sj = apply(sj, S.failed(sj, now, first.failure));
    assert.equal(stageOf(sj), "Replying");
    assert.deepEqual(run(sj, { now }), { type: "SendReply", kind: "Failure" }, "the user is told");
    sj = apply(sj, S.sending(sj, now, "Failure", undefined));
    sj = apply(sj, S.sent(sj, now, "response"));
    assert.deepEqual(run(sj, { now }), { type: "Finalize" }, "which deletes the input, the intermediates and the Job");
  });
  test("P11: one stuck past the reply's bound too is not replied to, and is finalized", () => {
    let sj = sjAt("fetched");
    const now = at(7 * HOUR);
    const first = run(sj, { now });
    assert.equal(first.type, "RecordFailure");
    if (first.type !== "RecordFailure") return;
    sj = apply(sj, S.failed(sj, now, first.failure));
    const second = run(sj, { now });
    assert.deepEqual(second, abandon);
    sj = apply(sj, S.replyFailed(sj, now, abandon.type === "AbandonReply" ? abandon.why : ""));
    assert.deepEqual(run(sj, { now }), { type: "Finalize" });
    const done = apply(sj, S.finalized(sj, now, undefined));
    assert.equal(findCondition(done.status?.conditions, "Succeeded")?.status, "False");
    assert.equal(findCondition(done.status?.conditions, "Succeeded")?.reason, "Internal");
  });
});

describe("decide: one sender's Jobs at a time (PER_USER_MAX_ACTIVE_JOBS)", () => {
  const held = () => {
    const sj = sjAt("fetched");
    return apply(sj, S.waitingForUserQuota(sj, at(10), 2));
  };
  // [the SeparationJob, what was observed, the sender's active Jobs, the limit, the decision]
  const table: [string, () => SeparationJob, { job?: JobView }, number, number, Action["type"]][] = [
    ["under the limit: the Job is created", () => sjAt("fetched"), {}, 1, 2, "CreateJob"],
    ["no Jobs yet", () => sjAt("fetched"), {}, 0, 1, "CreateJob"],
    ["at the limit: held, the conditions say why", () => sjAt("fetched"), {}, 2, 2, "UpdateProgress"],
    ["over it (the limit was lowered): held", () => sjAt("fetched"), {}, 5, 2, "UpdateProgress"],
    ["held and said so already: waits without a write", held, {}, 2, 2, "Wait"],
    ["held, then a slot freed: the Job is created", held, {}, 1, 2, "CreateJob"],
    ["0 means no limit", () => sjAt("fetched"), {}, 50, 0, "CreateJob"],
    ["its own Job completed: its result is read, never held back", () => sjAt("jobCreated"), { job: job({ conditions: complete }) }, 9, 2, "RecordSeparated"],
    ["a crash after creating it: recorded, not held", () => sjAt("fetched"), { job: job() }, 9, 2, "RecordJobCreated"],
    ["not fetched yet: fetched first (the limit is on Jobs, not downloads)", () => sjAt("initialized"), {}, 9, 2, "FetchMedia"],
  ];
  for (const [what, sj, observed, active, max, expected] of table) {
    test(`${what} (${active} active, limit ${max})`, () => assert.equal(run(sj(), { ...observed, now: at(20), userQuota: { active, max } }).type, expected));
  }
  test("the held conditions name the reason and the limit, and nothing about the sender", () => {
    const sj = sjAt("fetched");
    const a = run(sj, { now: at(20), userQuota: { active: 2, max: 2 } });
    assert.equal(a.type, "UpdateProgress");
    if (a.type !== "UpdateProgress") return;
    const succeeded = findCondition(a.patch.conditions, "Succeeded");
    assert.equal(succeeded?.status, "Unknown");
    assert.equal(succeeded?.reason, "WaitingForUserQuota");
    assert.match(succeeded?.message ?? "", /already has 2 separations running or waiting for a GPU/);
    assert.equal(findCondition(a.patch.conditions, "JobCreated")?.reason, "WaitingForUserQuota");
    const userLabel = sj.metadata.labels?.["unmix.dev/user"];
    for (const c of a.patch.conditions ?? []) if (userLabel) assert.ok(!c.message.includes(userLabel));
  });
  test("a held SeparationJob still fails when the separating stage's maximum age passes", () => {
    const a = run(held(), { now: at(HOUR), userQuota: { active: 2, max: 2 } });
    assert.equal(a.type, "RecordFailure");
  });
});
