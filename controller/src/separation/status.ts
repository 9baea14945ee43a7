// Pure builders of SeparationJob status changes, one per transition. Each returns a merge patch for
// /status with the full conditions list (a list is replaced as a whole by a merge patch).
import { type ConditionInput, findCondition, setCondition } from "@unmix/api/conditions";
import { type Condition, ConditionType, type FailureClass, type SeparationJob, type SeparationJobStatus } from "@unmix/api/separationjob";
import { type Classification, JOB_NAME_TAKEN, type Waiting } from "./classify.ts";

export type StatusPatch = Partial<SeparationJobStatus>;
export type Result = NonNullable<SeparationJobStatus["result"]>;
export type ReplyKind = "Result" | "Failure";

/** The condition types, short for the many transitions below. */
export const C = ConditionType;

export function conditionsWith(sj: SeparationJob, now: Date, ...inputs: ConditionInput[]): Condition[] {
  let list: Condition[] = sj.status?.conditions ?? [];
  for (const i of inputs) list = setCondition(list, i, now, sj.metadata.generation);
  return list;
}

const cond = (type: string, status: Condition["status"], reason: string, message: string): ConditionInput => ({ type, status, reason, message });

export function statusOf(sj: SeparationJob, type: string): Condition["status"] {
  return findCondition(sj.status?.conditions, type)?.status ?? "Unknown";
}

export function reasonOf(sj: SeparationJob, type: string): string | undefined {
  return findCondition(sj.status?.conditions, type)?.reason;
}

/**
 * Succeeded is True or False: nothing more will happen (but garbage collection). Takes any object
 * with conditions: the informer's stub of a finished SeparationJob too.
 */
/** What isFinished and isWaitingForGpu read: the informer's slimmed objects have no more. */
type WithConditions = { status?: { conditions?: readonly { type: string; status: string; reason?: string }[] } };

export function isFinished(sj: WithConditions): boolean {
  const s = sj.status?.conditions?.find((c) => c.type === C.Succeeded)?.status;
  return s === "True" || s === "False";
}

/** Its Job exists but the pod is on no node yet: no free GPU (WaitingForGPU), or Kueue holds it (Queued). */
export function isWaitingForGpu(sj: WithConditions): boolean {
  const succeeded = sj.status?.conditions?.find((c) => c.type === C.Succeeded);
  return succeeded?.status === "Unknown" && (succeeded.reason === "WaitingForGPU" || succeeded.reason === "Queued");
}

/**
 * A new message alone (the scheduler rewording why it waits) is not worth a write and an Event, but
 * a Queued one is: Kueue's verdict replaces our placeholder, and a preemption says why the quota went.
 */
export function saysSomethingNew(
  old: Pick<Condition, "status" | "reason" | "message"> | undefined,
  c: Pick<Condition, "status" | "reason" | "message">,
): boolean {
  return !old || old.status !== c.status || old.reason !== c.reason || (c.reason === "Queued" && old.message !== c.message);
}

const generation = (sj: SeparationJob) => (sj.metadata.generation !== undefined ? { observedGeneration: sj.metadata.generation } : {});

export function initialize(sj: SeparationJob, now: Date): StatusPatch {
  const pending = (type: string, message: string) => cond(type, "Unknown", "Pending", message);
  return {
    ...generation(sj),
    conditions: conditionsWith(
      sj,
      now,
      pending(C.MediaFetched, "the media is not fetched from WhatsApp yet"),
      pending(C.JobCreated, "no Job yet"),
      pending(C.Scheduled, "no Job yet"),
      pending(C.Separated, "no Job yet"),
      pending(C.Replied, "nothing sent yet"),
      pending(C.Succeeded, "waiting to fetch the media"),
    ),
  };
}

export function fetched(sj: SeparationJob, now: Date, f: { inputKey: string; bytes: number }): StatusPatch {
  return {
    ...generation(sj),
    inputKey: f.inputKey,
    inputBytes: f.bytes,
    steps: { fetchedAt: now.toISOString() },
    conditions: conditionsWith(
      sj,
      now,
      cond(C.MediaFetched, "True", "Fetched", `${f.bytes} bytes stored, sha256 verified`),
      cond(C.Succeeded, "Unknown", "CreatingJob", "creating the separation Job"),
    ),
  };
}

export function jobCreated(sj: SeparationJob, now: Date, jobName: string): StatusPatch {
  return {
    ...generation(sj),
    jobName,
    steps: { jobCreatedAt: now.toISOString() },
    conditions: conditionsWith(
      sj,
      now,
      cond(C.JobCreated, "True", "Created", `Job ${jobName}`),
      cond(C.Scheduled, "Unknown", "PodPending", "waiting for a GPU node"),
      cond(C.Succeeded, "Unknown", "WaitingForGPU", "waiting for a GPU node"),
    ),
  };
}

/** Why a SeparationJob has no Job yet while its sender has as many as PER_USER_MAX_ACTIVE_JOBS. */
export const WAITING_FOR_USER_QUOTA = "WaitingForUserQuota";

/** No personal data: the sender is neither named nor hashed here (conditions become Events). */
export function waitingForUserQuota(sj: SeparationJob, now: Date, max: number): StatusPatch {
  const message = `the same sender already has ${max} separation${max === 1 ? "" : "s"} running or waiting for a GPU (the limit per sender): this one starts when one of them finishes`;
  return {
    ...generation(sj),
    conditions: conditionsWith(
      sj,
      now,
      cond(C.JobCreated, "Unknown", WAITING_FOR_USER_QUOTA, message),
      cond(C.Succeeded, "Unknown", WAITING_FOR_USER_QUOTA, message),
    ),
  };
}

/** Conditions while the Job waits or runs; undefined when nothing changed. */
export function progress(sj: SeparationJob, now: Date, w: Waiting): StatusPatch | undefined {
  const inputs: ConditionInput[] = [cond(C.Scheduled, w.scheduled, w.reason, w.message)];
  if (w.scheduled === "True") {
    if (w.containerProblem) {
      inputs.push(cond(C.Separated, "Unknown", w.containerProblem.reason, w.containerProblem.message || w.containerProblem.reason));
      inputs.push(cond(C.Succeeded, "Unknown", w.containerProblem.reason, `the job container cannot start: ${w.containerProblem.reason}`));
    } else {
      inputs.push(cond(C.Separated, "Unknown", "Running", `the pod is on a GPU node${w.node ? ` (${w.node})` : ""}`));
      inputs.push(cond(C.Succeeded, "Unknown", "Running", "separating"));
    }
  } else {
    inputs.push(cond(C.Succeeded, "Unknown", w.reason === "Queued" ? "Queued" : "WaitingForGPU", w.message));
  }
  const conditions = conditionsWith(sj, now, ...inputs);
  const scheduledAt = w.scheduled === "True" && !sj.status?.steps?.scheduledAt ? (w.scheduledAt ?? now.toISOString()) : undefined;
  const changed = inputs.some((i) =>
    saysSomethingNew(
      sj.status?.conditions?.find((c) => c.type === i.type),
      i,
    ),
  );
  if (!changed && !scheduledAt) return undefined;
  return { ...generation(sj), conditions, ...(scheduledAt ? { steps: { scheduledAt } } : {}) };
}

/** Classes found before any Job ran (the media itself). */
const FETCH_CLASSES: readonly FailureClass[] = ["MediaUnavailable", "TooLarge"];

export function failed(sj: SeparationJob, now: Date, f: Classification): StatusPatch {
  const step =
    FETCH_CLASSES.includes(f.class) && statusOf(sj, C.MediaFetched) !== "True"
      ? C.MediaFetched
      : f.reason === JOB_NAME_TAKEN
        ? C.JobCreated
        : f.class === "Busy"
          ? C.Scheduled
          : C.Separated;
  return {
    ...generation(sj),
    failure: { class: f.class, message: f.message.slice(0, 4096) },
    conditions: conditionsWith(
      sj,
      now,
      cond(step, "False", f.reason ?? f.class, f.message),
      cond(C.Succeeded, "Unknown", "Replying", `failed (${f.class}); telling the user`),
    ),
  };
}

export function separated(sj: SeparationJob, now: Date, result: Result, separatedAt: string): StatusPatch {
  const rtf = result.realTimeFactor !== undefined ? ` (RTF ${result.realTimeFactor})` : "";
  return {
    ...generation(sj),
    result,
    steps: { separatedAt },
    conditions: conditionsWith(
      sj,
      now,
      cond(
        C.Separated,
        "True",
        "Separated",
        `${result.mediaSeconds ?? "?"} s of media separated in ${result.separateSeconds ?? "?"} s${rtf} on ${result.device ?? "?"}`,
      ),
      cond(C.Succeeded, "Unknown", "Replying", "sending the result"),
    ),
  };
}

/** Written, guarded by resourceVersion, before the Graph API call that sends the reply. */
export function sending(sj: SeparationJob, now: Date, kind: ReplyKind, mediaId: string | undefined, resend = false): StatusPatch {
  return {
    reply: { state: "Sending", kind, attemptedAt: now.toISOString(), ...(mediaId ? { mediaId } : {}), ...(resend ? { resent: true } : {}) },
    conditions: conditionsWith(sj, now, cond(C.Replied, "Unknown", "Sending", `sending the ${kind === "Result" ? "result" : "failure notice"}`)),
  };
}

export function sent(sj: SeparationJob, now: Date, how: "response" | "receipt"): StatusPatch {
  const reply = sj.status?.reply;
  return {
    // no wamid of the reply: it embeds the user's number, and the `view` role reads the status
    reply: { ...reply, state: "Sent" },
    steps: { repliedAt: now.toISOString() },
    // no message id in the condition: conditions become Events, and a wamid embeds the user's number
    conditions: conditionsWith(sj, now, cond(C.Replied, "True", "Sent", how === "receipt" ? "reply sent (confirmed by a status webhook)" : "reply sent")),
  };
}

/**
 * WhatsApp refused the send (an HTTP answer, so nothing went out): the reply may be tried again,
 * not before `retryAfterMs` (this write wakes the controller at once; decide() holds it back).
 */
export function refused(sj: SeparationJob, now: Date, why: string, retryAfterMs = 0): StatusPatch {
  const reply = sj.status?.reply;
  return {
    reply: {
      state: "Uploaded",
      ...(reply?.kind ? { kind: reply.kind } : {}),
      ...(reply?.mediaId ? { mediaId: reply.mediaId } : {}),
      ...(reply?.attemptedAt ? { attemptedAt: reply.attemptedAt } : {}),
      ...(retryAfterMs > 0 ? { notBefore: new Date(now.getTime() + retryAfterMs).toISOString() } : {}),
    },
    conditions: conditionsWith(sj, now, cond(C.Replied, "Unknown", "Refused", why)),
  };
}

/** The user cannot be reached (e.g. outside the 24-hour window): give up replying. */
export function replyFailed(sj: SeparationJob, now: Date, why: string): StatusPatch {
  const reply = sj.status?.reply;
  return {
    ...(reply ? { reply: { ...reply, state: reply.state === "Sending" ? "Uploaded" : reply.state } } : {}),
    conditions: conditionsWith(sj, now, cond(C.Replied, "False", "ReplyFailed", why)),
  };
}

/** A resent reply whose outcome was again left unknown, and no receipt came: never a third send. */
export function unconfirmed(sj: SeparationJob, now: Date): StatusPatch {
  return {
    conditions: conditionsWith(
      sj,
      now,
      cond(
        C.Replied,
        "Unknown",
        "ReplyUnconfirmed",
        "the outcome of the send and of its one repeat is unknown and no status webhook confirmed either; not sent a third time",
      ),
    ),
  };
}

export function finalized(sj: SeparationJob, now: Date, cacheKey: string | undefined): StatusPatch {
  const failure = sj.status?.failure;
  const replied = findCondition(sj.status?.conditions, C.Replied);
  let success: ConditionInput;
  if (failure) success = cond(C.Succeeded, "False", failure.class, failure.message);
  else if (replied?.status === "True") success = cond(C.Succeeded, "True", "Succeeded", "the user has the result");
  else success = cond(C.Succeeded, "False", replied?.reason === "ReplyUnconfirmed" ? "ReplyUnconfirmed" : "ReplyFailed", replied?.message ?? "no reply");
  const repliedAt = sj.status?.steps?.repliedAt;
  const total = repliedAt ? Math.max(0, (Date.parse(repliedAt) - Date.parse(sj.spec.message.timestamp)) / 1000) : undefined;
  return {
    ...generation(sj),
    steps: { finishedAt: now.toISOString() },
    ...(total !== undefined || cacheKey
      ? {
          result: {
            ...sj.status?.result,
            ...(total !== undefined ? { totalSeconds: Math.round(total * 1000) / 1000 } : {}),
            ...(cacheKey ? { cacheKey } : {}),
          },
        }
      : {}),
    conditions: conditionsWith(sj, now, success),
  };
}
