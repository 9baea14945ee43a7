// A SeparationJob as the support console shows it (GET /admin/jobs and the live stream): where it
// is, how long each step took, why it failed, its trace; and, from its sender Secret, the profile
// name (P2: the only place it is shown) and the number masked. Pure: the Secret is read by the caller.
import { findCondition } from "@unmix/api/conditions";
import { ConditionType, type Sender, type SeparationJob, TRACEPARENT_ANNOTATION, USER_LABEL } from "@unmix/api/separationjob";
import { maskNumber } from "@unmix/core/privacy";

/** The steps of a message, in order, each one condition. */
const STEPS = [ConditionType.MediaFetched, ConditionType.JobCreated, ConditionType.Scheduled, ConditionType.Separated, ConditionType.Replied] as const;
type Step = (typeof STEPS)[number];

/** status.steps' timestamp of each step, and of the end. */
const STEP_TIMES = {
  MediaFetched: "fetchedAt",
  JobCreated: "jobCreatedAt",
  Scheduled: "scheduledAt",
  Separated: "separatedAt",
  Replied: "repliedAt",
  Finished: "finishedAt",
} as const;

export type JobState = "running" | "succeeded" | "failed";

export interface JobRow {
  name: string;
  createdAt: string | null;
  /** Keyed hash of the sender (the purge screen finds the same user by number). */
  user: string | null;
  profileName: string | null;
  /** "+49 ••• ••• 89"; the number itself never leaves the server. */
  number: string | null;
  kind: string;
  format: string;
  /** The Succeeded condition's status and reason, as `kubectl get sj` shows them. */
  status: string;
  reason: string | null;
  state: JobState;
  /** The step it is in (running) or stopped at (failed); null once succeeded. */
  step: Step | null;
  /** That step's condition reason, e.g. Unschedulable while it waits for a GPU. */
  stepReason: string | null;
  /** Seconds from the SeparationJob's creation to each step's end. */
  timings: Partial<Record<keyof typeof STEP_TIMES, number>>;
  failure: string | null;
  totalSeconds: number | null;
  traceId: string | null;
  /** The trace in the tracing UI, when TRACING_UI_URL is set. */
  traceUrl: string | null;
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** TRACING_UI_URL with its {traceId} placeholder filled. */
export const traceLink = (template: string | undefined, traceId: string | null) =>
  template && traceId ? template.replaceAll("{traceId}", encodeURIComponent(traceId)) : null;

export function jobRow(sj: SeparationJob, sender: Sender | undefined, tracingUiUrl?: string): JobRow {
  const done = findCondition(sj.status?.conditions, ConditionType.Succeeded);
  const state: JobState = done?.status === "True" ? "succeeded" : done?.status === "False" ? "failed" : "running";
  const current = state === "succeeded" ? undefined : STEPS.find((s) => findCondition(sj.status?.conditions, s)?.status !== "True");
  const created = Date.parse(sj.metadata.creationTimestamp ?? "");
  const timings: JobRow["timings"] = {};
  for (const step of Object.keys(STEP_TIMES) as (keyof typeof STEP_TIMES)[]) {
    const at = Date.parse(sj.status?.steps?.[STEP_TIMES[step]] ?? "");
    if (Number.isFinite(at) && Number.isFinite(created)) timings[step] = Math.max(0, Math.round((at - created) / 100) / 10);
  }
  const traceId = TRACEPARENT.exec(sj.metadata.annotations?.[TRACEPARENT_ANNOTATION] ?? "")?.[1] ?? null;
  return {
    name: sj.metadata.name,
    createdAt: sj.metadata.creationTimestamp ?? null,
    user: sj.metadata.labels?.[USER_LABEL] ?? null,
    profileName: sender?.profileName ?? null,
    number: sender?.waId ? maskNumber(sender.waId) : null,
    kind: sj.spec.media.kind,
    format: sj.spec.output.format,
    status: done?.status ?? "Unknown",
    reason: done?.reason ?? null,
    state,
    step: current ?? null,
    stepReason: (current && findCondition(sj.status?.conditions, current)?.reason) ?? null,
    timings,
    failure: sj.status?.failure?.class ?? null,
    totalSeconds: sj.status?.result?.totalSeconds ?? null,
    traceId,
    traceUrl: traceLink(tracingUiUrl, traceId),
  };
}
