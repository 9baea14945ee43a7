// Kubernetes Events (events.k8s.io/v1) on a SeparationJob, so `kubectl describe sj` tells its story.
// Best effort: an Event that cannot be written is logged, never retried into a reconcile failure.
import { randomBytes } from "node:crypto";
import { API_VERSION, KIND } from "@unmix/api/separationjob";
import type { Logger } from "@unmix/core/log";
import { scrubText } from "@unmix/core/privacy";
import type { KubeClient } from "./kube-client.ts";
import { microTime } from "./leader-election.ts";

export interface EventTarget {
  name: string;
  namespace: string;
  uid?: string;
  resourceVersion?: string;
}

export interface RecordedEvent {
  type: "Normal" | "Warning";
  reason: string;
  note: string;
  action: string;
}

export interface EventRecorder {
  record(target: EventTarget, event: RecordedEvent): Promise<void>;
}

export function createEventRecorder(client: KubeClient, reportingInstance: string, log: Logger, now: () => Date = () => new Date()): EventRecorder {
  return {
    async record(target, e) {
      const body = {
        apiVersion: "events.k8s.io/v1",
        kind: "Event",
        metadata: { name: `${target.name}.${randomBytes(8).toString("hex")}`, namespace: target.namespace },
        eventTime: microTime(now()),
        reportingController: "unmix.dev/controller",
        reportingInstance: reportingInstance.slice(0, 128),
        action: e.action,
        reason: e.reason,
        type: e.type,
        note: scrubText(e.note).slice(0, 1024),
        regarding: {
          apiVersion: API_VERSION,
          kind: KIND,
          name: target.name,
          namespace: target.namespace,
          uid: target.uid,
          resourceVersion: target.resourceVersion,
        },
      };
      try {
        await client.request("POST", `/apis/events.k8s.io/v1/namespaces/${target.namespace}/events`, { body });
      } catch (err) {
        log.warn({ err, sj: target.name, reason: e.reason }, "could not record an Event");
      }
    },
  };
}
