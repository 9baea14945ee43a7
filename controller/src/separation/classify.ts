// Pure readings of the Job and its pods: why a Job failed (in the classes the user is told about)
// and why it is still waiting (the scheduler's own words, Kueue, image pulls).
import { failureClassOfExitCode } from "@unmix/api/exit-codes";
import type { FailureClass } from "@unmix/api/separationjob";
import { scrubText } from "@unmix/core/privacy";
import { type JobView, jobCondition, type PodView, type WorkloadView } from "../framework/kube/objects.ts";
import { CONTAINER } from "./job-spec.ts";

/** The condition reason when a Job not ours holds our Job's name (the user is told as for Internal). */
export const JOB_NAME_TAKEN = "JobNameTaken";

export interface Classification {
  class: FailureClass;
  /** The failed step's condition reason when more precise than the class (JOB_NAME_TAKEN). */
  reason?: string;
  /** For the SRE (status.failure.message, Events); never shown to the user. */
  message: string;
}

const oneLine = (s: string | undefined) => scrubText((s ?? "").replace(/\s+/g, " ").trim()).slice(0, 1000);

const newestFirst = (pods: PodView[]) => [...pods].sort((a, b) => (b.metadata.creationTimestamp ?? "").localeCompare(a.metadata.creationTimestamp ?? ""));

/** The separation container's last termination in any of the pods, newest pod first. */
function lastTermination(pods: PodView[]): { exitCode?: number; message?: string; reason?: string } | undefined {
  for (const p of newestFirst(pods)) {
    const c = p.status?.containerStatuses?.find((s) => s.name === CONTAINER);
    const t = c?.state?.terminated ?? c?.lastState?.terminated;
    if (t) return t;
  }
  return undefined;
}

/**
 * `everScheduled`: whether any pod of the Job was ever bound to a node. activeDeadlineSeconds counts
 * from the Job's start, waiting included (unless Kueue holds it suspended), so a Job that never got
 * a GPU and hit its deadline is Busy, not slow.
 */
export function classifyJobFailure(job: JobView, pods: PodView[], everScheduled = true): Classification {
  const failed = jobCondition(job, "Failed");
  const reason = failed?.reason ?? "Unknown";
  const term = lastTermination(pods);
  if (reason === "DeadlineExceeded" && !everScheduled && !pods.some((p) => p.spec?.nodeName)) {
    return { class: "Busy", message: oneLine(`no GPU before the Job's activeDeadlineSeconds passed: ${failed?.message ?? ""}`) };
  }
  switch (reason) {
    case "PodFailurePolicy": {
      // The Job controller names the exit code in its message; the pod may be gone already.
      const fromMessage = /exit code (\d+)/.exec(failed?.message ?? "")?.[1];
      const code = fromMessage !== undefined ? Number(fromMessage) : term?.exitCode;
      const cls = code === undefined ? "Internal" : failureClassOfExitCode(code);
      return { class: cls, message: oneLine(`exit code ${code ?? "?"}: ${term?.message || failed?.message || "the input cannot be processed"}`) };
    }
    case "DeadlineExceeded":
      return { class: "DeadlineExceeded", message: oneLine(`the Job ran past its activeDeadlineSeconds: ${failed?.message ?? ""}`) };
    case "BackoffLimitExceeded":
      return {
        class: "Internal",
        message: oneLine(`retries exhausted (${job.status?.failed ?? "?"} failed pods); last: exit code ${term?.exitCode ?? "?"} ${term?.message ?? ""}`),
      };
    default:
      return { class: "Internal", message: oneLine(`the Job failed (${reason}): ${failed?.message ?? ""}`) };
  }
}

export interface Waiting {
  /** The Scheduled condition's status. */
  scheduled: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  /** When the pod was bound to a node, if it was. */
  scheduledAt?: string;
  node?: string;
  /** A scheduled pod whose container cannot start (ErrImagePull, …). */
  containerProblem?: { reason: string; message: string };
  running: boolean;
  /** Kueue holds the Job and has not said why yet (its Workload has no verdict): worth another look soon. */
  awaitingKueue?: boolean;
}

const CONTAINER_PROBLEMS = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "CreateContainerConfigError",
  "CreateContainerError",
  "RunContainerError",
]);

/**
 * Kueue's own words for why it holds a Job, from its Workload: QuotaReserved=False says why it has no
 * quota (e.g. `couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu
 * in flavor gpu, 1 more needed`), and after a preemption why it lost it; Evicted=True covers the
 * moment before the quota is released; Admitted=False, admission checks after the quota.
 */
function kueueVerdict(w: WorkloadView | undefined): string | undefined {
  const conditions = w?.status?.conditions ?? [];
  const find = (type: string, status: string) => conditions.find((c) => c.type === type && c.status === status && c.message);
  const c = find("QuotaReserved", "False") ?? find("Evicted", "True") ?? find("Admitted", "False");
  return c ? oneLine(`Kueue: ${c.reason ? `${c.reason}: ` : ""}${c.message}`) : undefined;
}

/** `workload`: Kueue's Workload of a suspended Job, when the controller runs with a Kueue queue. */
export function explainWaiting(job: JobView, pods: PodView[], workload?: WorkloadView): Waiting {
  if (job.spec?.suspend) {
    const verdict = kueueVerdict(workload);
    if (verdict) return { scheduled: "False", reason: "Queued", message: verdict, running: false };
    return {
      scheduled: "False",
      reason: "Queued",
      message: "the Job is suspended, waiting for admission by its queue (Kueue)",
      running: false,
      awaitingKueue: true,
    };
  }
  const live = newestFirst(pods.filter((p) => !p.metadata.deletionTimestamp));
  const pod = live[0];
  if (!pod) {
    return { scheduled: "Unknown", reason: "PodPending", message: "waiting for the Job controller to create a pod", running: false };
  }
  const cond = pod.status?.conditions?.find((c) => c.type === "PodScheduled");
  if (cond?.status === "True" || pod.spec?.nodeName) {
    const c = pod.status?.containerStatuses?.find((s) => s.name === CONTAINER);
    const waiting = c?.state?.waiting;
    const problem = waiting?.reason && CONTAINER_PROBLEMS.has(waiting.reason) ? { reason: waiting.reason, message: oneLine(waiting.message) } : undefined;
    return {
      scheduled: "True",
      reason: "Scheduled",
      message: `pod ${pod.metadata.name} is on node ${pod.spec?.nodeName ?? "?"}`,
      scheduledAt: cond?.lastTransitionTime ?? pod.status?.startTime,
      node: pod.spec?.nodeName,
      ...(problem ? { containerProblem: problem } : {}),
      running: pod.status?.phase === "Running" || !!c?.state?.running,
    };
  }
  if (cond?.status === "False") {
    return { scheduled: "False", reason: cond.reason || "Unschedulable", message: oneLine(cond.message) || "no node can take the pod yet", running: false };
  }
  return { scheduled: "Unknown", reason: "PodPending", message: "the pod waits for the scheduler", running: false };
}
