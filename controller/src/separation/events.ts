// Kubernetes Events (events.k8s.io/v1) on a SeparationJob, so `kubectl describe sj` tells its story:
// which condition changes become Events (pure), and the recorder. Best effort: an Event that cannot be
// written is logged, never retried into a reconcile failure.
import { randomBytes } from "node:crypto";
import { findCondition } from "@unmix/api/conditions";
import { API_VERSION, type Condition, KIND, type SeparationJob } from "@unmix/api/separationjob";
import type { Logger } from "@unmix/core/log";
import { scrubText } from "@unmix/core/privacy";
import type { KubeApi } from "../framework/kube/api.ts";
import { microTime } from "../framework/kube/objects.ts";
import { saysSomethingNew } from "./status.ts";

export interface TransitionEvent {
  type: "Normal" | "Warning";
  /** The condition that changed. */
  condition: Condition;
}

/** Reasons worth a Warning even while the condition is still Unknown. */
const WARNING_REASONS = new Set([
  "Unschedulable",
  "Queued",
  "WaitingForUserQuota",
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "CreateContainerConfigError",
  "CreateContainerError",
  "Refused",
  "ReplyUnconfirmed",
]);

/** The Events a status write deserves: a condition that settled (True/False) or went wrong, once per change of status or reason (or of Kueue's verdict). */
export function transitionEvents(before: SeparationJob, after: SeparationJob): TransitionEvent[] {
  const events: TransitionEvent[] = [];
  for (const c of after.status?.conditions ?? []) {
    const old = findCondition(before.status?.conditions, c.type);
    if (!saysSomethingNew(old, c)) continue;
    const warn = c.status === "False" || WARNING_REASONS.has(c.reason);
    if (c.status === "Unknown" && !warn) continue;
    events.push({ type: warn ? "Warning" : "Normal", condition: c });
  }
  return events;
}

export interface EventRecorder {
  record(sj: SeparationJob, event: TransitionEvent): Promise<void>;
}

export function createEventRecorder(kube: KubeApi, reportingInstance: string, log: Logger, now: () => Date): EventRecorder {
  const namespace = kube.namespace;
  return {
    async record(sj, { type, condition: c }) {
      const { name, uid, resourceVersion } = sj.metadata;
      try {
        await kube.events.create({
          apiVersion: "events.k8s.io/v1",
          kind: "Event",
          metadata: { name: `${name}.${randomBytes(8).toString("hex")}`, namespace },
          eventTime: microTime(now()),
          reportingController: "unmix.dev/controller",
          reportingInstance: reportingInstance.slice(0, 128),
          action: c.type,
          reason: c.reason,
          type,
          note: scrubText(`${c.type}: ${c.message}`).slice(0, 1024),
          regarding: { apiVersion: API_VERSION, kind: KIND, name, namespace, uid, resourceVersion },
        });
      } catch (err) {
        log.warn({ err, sj: name, reason: c.reason }, "could not record an Event");
      }
    },
  };
}
