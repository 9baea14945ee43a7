// The Kubernetes objects the controller reads and writes, typed with @kubernetes/client-node's models
// through `import type`: erased at run time, so the package itself is never loaded (connection.ts
// says why). Those models type timestamps as Date, which client-node's own deserializer makes; on the
// wire, which is what this client reads and writes, they are strings: hence Wire<T>.
import type {
  EventsV1Event,
  V1ContainerStatus,
  V1Job,
  V1JobCondition,
  V1JobSpec,
  V1JobStatus,
  V1Lease,
  V1ObjectMeta,
  V1OwnerReference,
  V1PodSpec,
  V1PodStatus,
  V1Secret,
} from "@kubernetes/client-node";

/** A client-node model as JSON: its Date fields are RFC 3339 strings. */
export type Wire<T> = T extends Date ? string : T extends readonly (infer U)[] ? Wire<U>[] : T extends object ? { [K in keyof T]: Wire<T[K]> } : T;

// ── what the controller writes ──

export type JobManifest = Wire<V1Job>;
export type EventManifest = Wire<EventsV1Event>;
export type Lease = Wire<V1Lease>;
export type OwnerReference = V1OwnerReference;
export type SecretManifest = Wire<V1Secret>;

/** MicroTime (Events, Leases): the API server insists on six fractional digits. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

// ── what the controller reads: the parts of Jobs and pods its caches keep (controller.ts slims them) ──

type Meta = Pick<Wire<V1ObjectMeta>, "namespace" | "uid" | "resourceVersion" | "labels" | "creationTimestamp" | "deletionTimestamp"> & { name: string };

export type JobCondition = Wire<V1JobCondition>;

export interface JobView {
  metadata: Meta & { ownerReferences?: OwnerReference[] };
  spec?: Pick<V1JobSpec, "suspend">;
  status?: Wire<V1JobStatus>;
}

export interface PodView {
  metadata: Meta;
  spec?: Pick<V1PodSpec, "nodeName">;
  status?: Pick<Wire<V1PodStatus>, "phase" | "startTime" | "conditions"> & {
    containerStatuses?: Pick<Wire<V1ContainerStatus>, "name" | "state" | "lastState" | "restartCount">[];
  };
}

/** Kueue's Workload of a Job: only its conditions are read (why Kueue holds the Job). */
export interface WorkloadView {
  metadata: Meta;
  status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

export function jobCondition(job: JobView | undefined, type: string): JobCondition | undefined {
  return job?.status?.conditions?.find((c) => c.type === type && c.status === "True");
}

/** Only Complete and Failed are terminal (SuccessCriteriaMet / FailureTarget come first). */
export function jobFinished(job: JobView | undefined): "Complete" | "Failed" | undefined {
  if (jobCondition(job, "Complete")) return "Complete";
  if (jobCondition(job, "Failed")) return "Failed";
  return undefined;
}

export function controllerOf(obj: { metadata: { ownerReferences?: OwnerReference[] } }): OwnerReference | undefined {
  return obj.metadata.ownerReferences?.find((r) => r.controller === true);
}
