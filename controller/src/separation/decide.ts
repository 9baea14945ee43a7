// The reconcile decision, as a pure function of what was observed: the SeparationJob, its Job and
// pods, and the time. One step per pass; the reconciler acts on it once and requeues. Every step is
// safe to repeat after a crash at any point, because each is decided from observed state only.
import { parseReceipt, REPLY_RECEIPT_ANNOTATION, type SeparationJob } from "@unmix/api/separationjob";
import { controllerOf, type JobView, jobFinished, type PodView } from "../framework/kube/objects.ts";
import { type Classification, classifyJobFailure, explainWaiting } from "./classify.ts";
import { C, isFinished, progress, type ReplyKind, reasonOf, type StatusPatch, statusOf } from "./status.ts";

export interface Observation {
  sj: SeparationJob;
  /** The Job named after the SeparationJob; undefined when it does not exist (checked live). */
  job: JobView | undefined;
  /** That Job's pods. */
  pods: PodView[];
  now: Date;
  pendingDeadlineMs: number;
  replyConfirmMs: number;
}

export type Action =
  /** Nothing to do now; look again after requeueAfterMs if set (the watches wake us otherwise). */
  | { type: "Wait"; why: string; requeueAfterMs?: number }
  /** Write the conditions as Unknown on the first visit. */
  | { type: "Initialize" }
  | { type: "FetchMedia" }
  | { type: "CreateJob" }
  /** The Job named like ours belongs to another (deleted) SeparationJob of the same name. */
  | { type: "DeleteForeignJob"; why: string }
  /** The Job exists but the status does not say so (a crash after creating it). */
  | { type: "RecordJobCreated" }
  /** Scheduling or running state changed: write the conditions (and an Event). */
  | { type: "UpdateProgress"; patch: StatusPatch; requeueAfterMs?: number }
  | { type: "RecordFailure"; failure: Classification }
  /** The Job completed (or vanished after completing): read the manifest. */
  | { type: "RecordSeparated"; jobMissing: boolean }
  /** `resend`: the one repeat of a send whose outcome a crash left unknown and no receipt confirmed. */
  | { type: "SendReply"; kind: ReplyKind; resend?: true }
  /** A reply left in Sending by a crash, confirmed by a status-webhook receipt. */
  | { type: "ConfirmReply" }
  /** A repeated send whose outcome is unknown again, and no receipt: the user may have no reply. */
  | { type: "GiveUpReply" }
  /** Record the cache entry, delete the input and intermediates (and a still-running Job), mark done. */
  | { type: "Finalize" };

/** Reply conditions after which nothing more will be sent. */
const REPLY_SETTLED = new Set(["ReplyUnconfirmed", "ReplyFailed"]);

export function decide(o: Observation): Action {
  const { sj, job, now } = o;
  if (sj.metadata.deletionTimestamp) return { type: "Wait", why: "being deleted" };
  if (isFinished(sj)) return { type: "Wait", why: "finished" };
  const status = sj.status ?? {};
  if (!status.conditions?.length) return { type: "Initialize" };

  // ── the reply: once a send may have happened, only settling it remains ──
  const reply = status.reply;
  if (reply?.state === "Sent" || REPLY_SETTLED.has(reasonOf(sj, C.Replied) ?? "")) return { type: "Finalize" };
  if (reply?.state === "Sending") {
    // A crash (or a send with no answer) between writing Sending and writing Sent: WhatsApp's
    // status webhook, echoing the SeparationJob's name, says whether the message went out. None
    // within the bound means it most likely never left (a status follows a send within seconds), so
    // it is sent once more; a receipt delayed past the bound makes that a second reply (README).
    if (parseReceipt(sj.metadata.annotations?.[REPLY_RECEIPT_ANNOTATION])) return { type: "ConfirmReply" };
    const since = now.getTime() - Date.parse(reply.attemptedAt ?? sj.metadata.creationTimestamp ?? now.toISOString());
    if (since < o.replyConfirmMs)
      return { type: "Wait", why: "a send may be in flight: waiting for its status-webhook receipt", requeueAfterMs: o.replyConfirmMs - since };
    if (reply.resent) return { type: "GiveUpReply" };
    return { type: "SendReply", kind: reply.kind ?? (status.failure ? "Failure" : "Result"), resend: true };
  }
  // a refused send waits out WhatsApp's delay: the write that recorded the refusal wakes us at once
  const notBefore = reply?.state === "Uploaded" && reply.notBefore ? Date.parse(reply.notBefore) - now.getTime() : 0;
  if (notBefore > 0) return { type: "Wait", why: "WhatsApp refused the send: trying again later", requeueAfterMs: notBefore };
  if (status.failure) return { type: "SendReply", kind: "Failure" };
  if (statusOf(sj, C.Separated) === "True") return { type: "SendReply", kind: "Result" };

  // ── before the Job ──
  if (statusOf(sj, C.MediaFetched) !== "True") return { type: "FetchMedia" };
  if (!job) {
    if (statusOf(sj, C.JobCreated) !== "True") return { type: "CreateJob" };
    // gone before we saw it finish (deleted, or its TTL passed while we were down): the result
    // may still be in the object store
    return { type: "RecordSeparated", jobMissing: true };
  }
  const owner = controllerOf(job);
  if (!owner || owner.uid !== sj.metadata.uid)
    return { type: "DeleteForeignJob", why: `Job ${job.metadata.name} is owned by ${owner ? `uid ${owner.uid}` : "nobody"}` };
  if (statusOf(sj, C.JobCreated) !== "True") return { type: "RecordJobCreated" };

  // ── the Job ran ──
  const finished = jobFinished(job);
  if (finished === "Complete") return { type: "RecordSeparated", jobMissing: false };
  if (finished === "Failed") return { type: "RecordFailure", failure: classifyJobFailure(job, o.pods, !!status.steps?.scheduledAt) };

  // ── the Job waits or runs ──
  const waiting = explainWaiting(job, o.pods);
  const everScheduled = waiting.scheduled === "True" || !!status.steps?.scheduledAt;
  const createdAt = Date.parse(status.steps?.jobCreatedAt ?? job.metadata.creationTimestamp ?? now.toISOString());
  const waited = now.getTime() - createdAt;
  if (!everScheduled && waited >= o.pendingDeadlineMs) {
    return {
      type: "RecordFailure",
      failure: { class: "Busy", message: `no GPU within ${Math.round(o.pendingDeadlineMs / 1000)} s: ${waiting.reason}: ${waiting.message}` },
    };
  }
  const requeueAfterMs = everScheduled ? undefined : o.pendingDeadlineMs - waited + 100;
  const patch = progress(sj, now, waiting);
  if (patch) return { type: "UpdateProgress", patch, ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}) };
  return {
    type: "Wait",
    why: waiting.running ? "the Job is running" : `waiting: ${waiting.reason}`,
    ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}),
  };
}
