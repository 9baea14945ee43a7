// The reconcile decision, as a pure function of what was observed: the SeparationJob, its Job and
// pods, and the time. One step per pass; the reconciler acts on it once and requeues. Every step is
// safe to repeat after a crash at any point, because each is decided from observed state only.
import { findCondition } from "@unmix/api/conditions";
import { API_VERSION, KIND, parseReceipt, REPLY_RECEIPT_ANNOTATION, type SeparationJob } from "@unmix/api/separationjob";
import { controllerOf, type JobView, jobFinished, type PodView, type WorkloadView } from "../framework/kube/objects.ts";
import { type Classification, classifyJobFailure, explainWaiting, JOB_NAME_TAKEN } from "./classify.ts";
import { MANAGED_BY, SJ_LABEL } from "./job-spec.ts";
import { C, isFinished, progress, type ReplyKind, reasonOf, type StatusPatch, statusOf, WAITING_FOR_USER_QUOTA, waitingForUserQuota } from "./status.ts";

export interface Observation {
  sj: SeparationJob;
  /** The Job named after the SeparationJob; undefined when it does not exist (checked live). */
  job: JobView | undefined;
  /** That Job's pods. */
  pods: PodView[];
  /** Kueue's Workload of that Job, read only while Kueue holds it suspended (and the controller uses a Kueue queue). */
  workload?: WorkloadView;
  now: Date;
  pendingDeadlineMs: number;
  replyConfirmMs: number;
  maxAges: MaxAges;
  /** The sender's separation Jobs not finished (or being created) and the most they may have; absent: no limit. */
  userQuota?: UserQuota;
}

/** Per-sender fairness: one user's burst of files holds at most `max` GPUs, so others keep flowing. */
export interface UserQuota {
  active: number;
  /** 0: no limit. */
  max: number;
}

/**
 * How old (since it was created) a SeparationJob may be while still in each stage. Past it the
 * message fails: a failure reply while one can still be sent, then Finalize deletes what it stored.
 * (A SeparationJob still unfinished past the last bound, finalizing included, is deleted by the
 * garbage collector.)
 */
export interface MaxAges {
  /** The media not fetched yet (e.g. WhatsApp refusing our token). */
  fetchingMs: number;
  /** Fetched, no result yet (creating, waiting for, running the Job). */
  separatingMs: number;
  /** A result or a failure to tell, not told yet (e.g. every send refused). */
  replyingMs: number;
}

export type Stage = "Fetching" | "Separating" | "Replying" | "Finalizing";

export type Action =
  /** Nothing to do now; look again after requeueAfterMs if set (the watches wake us otherwise). */
  | { type: "Wait"; why: string; requeueAfterMs?: number }
  /** Write the conditions as Unknown on the first visit. */
  | { type: "Initialize" }
  | { type: "FetchMedia" }
  | { type: "CreateJob" }
  /** The Job named like ours is one we made for an earlier (deleted) SeparationJob of the same name. */
  | { type: "DeleteStaleJob"; why: string }
  /** The Job exists but the status does not say so (a crash after creating it). */
  | { type: "RecordJobCreated" }
  /** Scheduling or running state changed: write the conditions (and an Event). */
  | { type: "UpdateProgress"; patch: StatusPatch; requeueAfterMs?: number }
  | { type: "RecordFailure"; failure: Classification }
  /** The Job completed (or vanished after completing): read the manifest. */
  | { type: "RecordSeparated"; jobMissing: boolean }
  /** `resend`: the one repeat of a send whose outcome a crash left unknown and no receipt confirmed. */
  | { type: "SendReply"; kind: ReplyKind; resend?: true }
  /** Nothing could be sent within the Replying stage's maximum age: stop trying. */
  | { type: "AbandonReply"; why: string }
  /** A reply left in Sending by a crash, confirmed by a status-webhook receipt. */
  | { type: "ConfirmReply" }
  /** A repeated send whose outcome is unknown again, and no receipt: the user may have no reply. */
  | { type: "GiveUpReply" }
  /** Record the cache entry, delete the input and intermediates (and a still-running Job), mark done. */
  | { type: "Finalize" };

/**
 * Kueue writes why it holds a Job on the Workload a moment after the Job (the controller watches no
 * Workloads): look again every second until it has, for a bounded while after the Job went Queued.
 */
export const KUEUE_RECHECK_MS = 1000;
export const KUEUE_VERDICT_WAIT_MS = 30_000;

function kueueRecheck(sj: SeparationJob, now: Date, w: ReturnType<typeof explainWaiting>): number | undefined {
  if (!w.awaitingKueue) return undefined;
  const queued = findCondition(sj.status?.conditions, C.Scheduled);
  const since = queued?.reason === "Queued" ? Date.parse(queued.lastTransitionTime ?? "") : now.getTime();
  return now.getTime() - since < KUEUE_VERDICT_WAIT_MS ? KUEUE_RECHECK_MS : undefined;
}

/** When a Job that had run went back to Kueue's queue: the Queued condition's transition, once written. */
function requeuedAt(sj: SeparationJob, w: ReturnType<typeof explainWaiting>): number | undefined {
  if (w.reason !== "Queued") return undefined;
  const queued = findCondition(sj.status?.conditions, C.Scheduled);
  return queued?.reason === "Queued" && queued.status === "False" ? Date.parse(queued.lastTransitionTime ?? "") : undefined;
}

const minDefined = (...ms: (number | undefined)[]) => {
  const defined = ms.filter((m) => m !== undefined);
  return defined.length ? Math.min(...defined) : undefined;
};

/** Reply conditions after which nothing more will be sent. */
const REPLY_SETTLED = new Set(["ReplyUnconfirmed", "ReplyFailed"]);

export function stageOf(sj: SeparationJob): Stage {
  const status = sj.status ?? {};
  if (status.reply?.state === "Sent" || REPLY_SETTLED.has(reasonOf(sj, C.Replied) ?? "")) return "Finalizing";
  if (status.failure || statusOf(sj, C.Separated) === "True") return "Replying";
  return statusOf(sj, C.MediaFetched) === "True" ? "Separating" : "Fetching";
}

const hours = (ms: number) => `${Math.round((ms / 3600_000) * 10) / 10} h`;

/** The step that ends a stage held past its maximum age; undefined while within it. */
export function overdue(sj: SeparationJob, now: Date, maxAges: MaxAges): Action | undefined {
  const created = Date.parse(sj.metadata.creationTimestamp ?? "");
  if (!Number.isFinite(created)) return undefined;
  const age = now.getTime() - created;
  const stage = stageOf(sj);
  if (stage === "Finalizing") return undefined;
  if (stage === "Replying") {
    if (age < maxAges.replyingMs) return undefined;
    const reply = sj.status?.reply;
    // a send may have happened: a receipt still settles it, and without one it is never sent again
    if (reply?.state === "Sending") return parseReceipt(sj.metadata.annotations?.[REPLY_RECEIPT_ANNOTATION]) ? undefined : { type: "GiveUpReply" };
    return { type: "AbandonReply", why: `no reply could be sent within ${hours(maxAges.replyingMs)} of the message` };
  }
  const limit = stage === "Fetching" ? maxAges.fetchingMs : maxAges.separatingMs;
  if (age < limit) return undefined;
  const what = stage === "Fetching" ? "the media was not fetched" : "no result";
  return { type: "RecordFailure", failure: { class: "Internal", message: `${what} within ${hours(limit)} of the message: given up` } };
}

/**
 * Whose the Job named like `sj` is. Ours: our labels and `sj` as its controller. Stale: our labels
 * and a SeparationJob of the same name, since deleted, as controller (Kubernetes' garbage collector
 * removes it too; deleting it is only faster). Anything else is not ours to touch: someone else's
 * Job that happens to have the name.
 */
export function jobOwnership(job: JobView, sj: SeparationJob): "Ours" | "Stale" | "Foreign" {
  const labels = job.metadata.labels ?? {};
  const owner = controllerOf(job);
  if (labels["app.kubernetes.io/managed-by"] !== MANAGED_BY || labels[SJ_LABEL] !== sj.metadata.name || !owner) return "Foreign";
  if (owner.uid === sj.metadata.uid) return "Ours";
  return owner.apiVersion === API_VERSION && owner.kind === KIND && owner.name === sj.metadata.name ? "Stale" : "Foreign";
}

/** The failure recorded when the name of our Job is taken by a Job that is not ours. */
export function jobNameTaken(job: JobView): Classification {
  const owner = controllerOf(job);
  const by = owner ? `${owner.kind} ${owner.name} (uid ${owner.uid})` : "no controller";
  return {
    class: "Internal",
    reason: JOB_NAME_TAKEN,
    message: `a Job named ${job.metadata.name} exists that this controller did not create for this SeparationJob (controlled by ${by}); it is left untouched`,
  };
}

/**
 * Holds back the Job of a sender who already has `max` of them: the conditions say why once, then it
 * waits to be woken when one of that sender's Jobs finishes (the controller's Job handler).
 */
export function heldByUserQuota(sj: SeparationJob, now: Date, q: UserQuota | undefined): Action | undefined {
  if (!q || q.max <= 0 || q.active < q.max) return undefined;
  if (reasonOf(sj, C.Succeeded) === WAITING_FOR_USER_QUOTA) return { type: "Wait", why: `the sender has ${q.active} Jobs (limit ${q.max})` };
  return { type: "UpdateProgress", patch: waitingForUserQuota(sj, now, q.max) };
}

export function decide(o: Observation): Action {
  const { sj, job, now } = o;
  if (sj.metadata.deletionTimestamp) return { type: "Wait", why: "being deleted" };
  if (isFinished(sj)) return { type: "Wait", why: "finished" };
  const status = sj.status ?? {};
  if (!status.conditions?.length) return { type: "Initialize" };
  const late = overdue(sj, now, o.maxAges);
  if (late) return late;

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
    if (statusOf(sj, C.JobCreated) !== "True") return heldByUserQuota(sj, now, o.userQuota) ?? { type: "CreateJob" };
    // gone before we saw it finish (deleted, or its TTL passed while we were down): the result
    // may still be in the object store
    return { type: "RecordSeparated", jobMissing: true };
  }
  const ownership = jobOwnership(job, sj);
  if (ownership === "Stale") return { type: "DeleteStaleJob", why: `Job ${job.metadata.name} is owned by uid ${controllerOf(job)?.uid}` };
  if (ownership === "Foreign") return { type: "RecordFailure", failure: jobNameTaken(job) };
  if (statusOf(sj, C.JobCreated) !== "True") return { type: "RecordJobCreated" };

  // ── the Job ran ──
  const finished = jobFinished(job);
  if (finished === "Complete") return { type: "RecordSeparated", jobMissing: false };
  if (finished === "Failed") return { type: "RecordFailure", failure: classifyJobFailure(job, o.pods, !!status.steps?.scheduledAt) };

  // ── the Job waits or runs ──
  const waiting = explainWaiting(job, o.pods, o.workload);
  const everScheduled = waiting.scheduled === "True" || !!status.steps?.scheduledAt;
  const createdAt = Date.parse(status.steps?.jobCreatedAt ?? job.metadata.creationTimestamp ?? now.toISOString());
  // the wait for a GPU: from the Job's creation, or, for a Job that ran and went back to Kueue's
  // queue (preempted), from then: either way the user waits for a GPU, so the same deadline applies
  const waitingSince = everScheduled ? requeuedAt(sj, waiting) : createdAt;
  const waited = waitingSince === undefined ? undefined : now.getTime() - waitingSince;
  if (waited !== undefined && waited >= o.pendingDeadlineMs) {
    return {
      type: "RecordFailure",
      failure: {
        class: "Busy",
        message: `no GPU within ${Math.round(o.pendingDeadlineMs / 1000)} s${everScheduled ? " of going back to the queue" : ""}: ${waiting.reason}: ${waiting.message}`,
      },
    };
  }
  const requeueAfterMs = minDefined(waited === undefined ? undefined : o.pendingDeadlineMs - waited + 100, kueueRecheck(sj, now, waiting));
  const patch = progress(sj, now, waiting);
  if (patch) return { type: "UpdateProgress", patch, ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}) };
  return {
    type: "Wait",
    why: waiting.running ? "the Job is running" : `waiting: ${waiting.reason}`,
    ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}),
  };
}
