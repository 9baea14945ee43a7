// Builders of SeparationJobs, Jobs and pods in every state the controller meets, for the pure tests.
import type { SeparationJob } from "@unmix/api/separationjob";
import type { JobCondition, JobView, PodView } from "../src/framework/kube/objects.ts";
import * as S from "../src/separation/status.ts";

export const T0 = new Date("2026-11-25T10:00:00.000Z");
export const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);

export function newSj(overrides: Partial<SeparationJob["spec"]> = {}): SeparationJob {
  return {
    apiVersion: "unmix.dev/v1alpha1",
    kind: "SeparationJob",
    metadata: {
      name: "sj-0123456789abcdef0123456789abcdef",
      namespace: "default",
      uid: "uid-1",
      generation: 1,
      resourceVersion: "100",
      creationTimestamp: T0.toISOString(),
      labels: { "unmix.dev/user": "u0123" },
    },
    spec: {
      message: { timestamp: "2026-11-25T09:59:58Z", phoneNumberId: "487201336590124" },
      media: { id: "1234567890123456", mimeType: "audio/ogg; codecs=opus", sha256: "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=", kind: "audio", voice: true },
      output: { format: "ogg-opus" },
      ...overrides,
    },
  };
}

/** Applies a status patch the way a merge patch would (one level deep is all the status needs). */
export function apply(sj: SeparationJob, patch: S.StatusPatch): SeparationJob {
  const status = { ...(sj.status ?? {}) } as Record<string, unknown>;
  for (const [k, v] of Object.entries(patch)) {
    const old = status[k];
    status[k] = v && typeof v === "object" && !Array.isArray(v) && old && typeof old === "object" ? { ...old, ...v } : v;
  }
  return { ...sj, metadata: { ...sj.metadata, resourceVersion: String(Number(sj.metadata.resourceVersion) + 1) }, status: status as SeparationJob["status"] };
}

/** An SJ walked through the happy path up to `stage`. */
export function sjAt(stage: "new" | "initialized" | "fetched" | "jobCreated" | "separated" | "sending" | "sent" | "finished"): SeparationJob {
  let sj = newSj();
  if (stage === "new") return sj;
  sj = apply(sj, S.initialize(sj, at(0)));
  if (stage === "initialized") return sj;
  sj = apply(sj, S.fetched(sj, at(1), { inputKey: `inputs/${sj.metadata.name}`, bytes: 1000 }));
  if (stage === "fetched") return sj;
  sj = apply(sj, S.jobCreated(sj, at(2), sj.metadata.name));
  if (stage === "jobCreated") return sj;
  sj = apply(
    sj,
    S.separated(
      sj,
      at(10),
      { mimeType: "audio/ogg", sizeBytes: 900, mediaSeconds: 5, separateSeconds: 1, realTimeFactor: 0.2, device: "cuda", model: "htdemucs" },
      at(10).toISOString(),
    ),
  );
  if (stage === "separated") return sj;
  sj = apply(sj, S.sending(sj, at(11), "Result", "987654321"));
  if (stage === "sending") return sj;
  sj = apply(sj, S.sent(sj, at(12), "response"));
  if (stage === "sent") return sj;
  return apply(sj, S.finalized(sj, at(13), "results/x/ogg-opus.htdemucs"));
}

export function job(o: { uid?: string; suspend?: boolean; conditions?: JobCondition[]; failed?: number; created?: Date } = {}): JobView {
  return {
    metadata: {
      name: "sj-0123456789abcdef0123456789abcdef",
      namespace: "default",
      uid: "job-uid",
      labels: { "app.kubernetes.io/managed-by": "unmix-controller", "unmix.dev/separationjob": "sj-0123456789abcdef0123456789abcdef" },
      creationTimestamp: (o.created ?? at(2)).toISOString(),
      ownerReferences: [
        { apiVersion: "unmix.dev/v1alpha1", kind: "SeparationJob", name: "sj-0123456789abcdef0123456789abcdef", uid: o.uid ?? "uid-1", controller: true },
      ],
    },
    spec: { suspend: o.suspend ?? false },
    status: { conditions: o.conditions ?? [], ...(o.failed !== undefined ? { failed: o.failed } : {}) },
  };
}

export function pod(
  o: {
    scheduled?: "True" | "False";
    reason?: string;
    message?: string;
    node?: string;
    running?: boolean;
    waiting?: { reason: string; message?: string };
    terminated?: { exitCode: number; message?: string };
    created?: Date;
    name?: string;
  } = {},
): PodView {
  const state = o.terminated
    ? { terminated: o.terminated }
    : o.running
      ? { running: { startedAt: at(5).toISOString() } }
      : o.waiting
        ? { waiting: o.waiting }
        : { waiting: { reason: "ContainerCreating" } };
  return {
    metadata: {
      name: o.name ?? "sj-0123-abcde",
      creationTimestamp: (o.created ?? at(3)).toISOString(),
      labels: { "unmix.dev/separationjob": "sj-0123456789abcdef0123456789abcdef" },
    },
    spec: o.scheduled === "True" ? { nodeName: o.node ?? "gpu-1" } : {},
    status: {
      phase: o.running ? "Running" : o.terminated ? "Failed" : "Pending",
      conditions: o.scheduled
        ? [{ type: "PodScheduled", status: o.scheduled, reason: o.reason, message: o.message, lastTransitionTime: at(4).toISOString() }]
        : [],
      containerStatuses: o.scheduled === "True" ? [{ name: "separate", state, restartCount: 0 }] : [],
    },
  };
}
