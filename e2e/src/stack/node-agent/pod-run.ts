// A pod this node runs: its local state, and its status written back through the API where a
// kubelet writes it (phase, conditions, container states), so the real controllers act on it.
import type * as k8s from "@kubernetes/client-node";
import type { ManagedProcess } from "../processes.ts";
import { isNotFound, MERGE } from "./context.ts";

export interface RunningContainer {
  name: string;
  proc?: ManagedProcess;
  state: k8s.V1ContainerState;
  lastState?: k8s.V1ContainerState;
  restartCount: number;
  ready: boolean;
  terminationFile: string;
  logFile: string;
  probeFailures: number;
  /** Consecutive failures to build the container's config (its env), for the retry's back-off. */
  configRetries: number;
}

export interface PodRun {
  uid: string;
  namespace: string;
  name: string;
  dir: string;
  ip: string;
  containers: RunningContainer[];
  startedAt: string;
  terminating: boolean;
  done: boolean;
  timers: NodeJS.Timeout[];
  writes: Promise<void>;
}

export function writeStatus(core: k8s.CoreV1Api, pod: k8s.V1Pod, run: PodRun): Promise<void> {
  // one write at a time per pod, each with the latest state; a failed one (the API server away) is
  // tried again for a while, as the kubelet's status manager does: else a pod that finished while
  // the API server restarted would stay Running for good
  run.writes = run.writes.then(() => retried(() => patchStatus(core, pod, run)));
  return run.writes;
}

async function retried(write: () => Promise<void>): Promise<void> {
  for (let attempt = 0; attempt < 60; attempt++) {
    try {
      return await write();
    } catch {
      await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** attempt, 2000)));
    }
  }
}

async function patchStatus(core: k8s.CoreV1Api, pod: k8s.V1Pod, run: PodRun): Promise<void> {
  const t = new Date().toISOString();
  const containerStatuses = run.containers.map((c) => ({
    name: c.name,
    image: pod.spec?.containers.find((s) => s.name === c.name)?.image ?? "",
    imageID: "",
    containerID: c.proc ? `local://${c.proc.pid}` : undefined,
    ready: c.ready,
    started: !!c.state.running,
    restartCount: c.restartCount,
    state: c.state,
    ...(c.lastState ? { lastState: c.lastState } : {}),
  }));
  const all = run.containers;
  const failed = all.some((c) => (c.state.terminated?.exitCode ?? 0) !== 0);
  const phase = run.done
    ? failed
      ? "Failed"
      : "Succeeded"
    : all.some((c) => c.state.running || c.restartCount > 0 || c.state.terminated)
      ? "Running"
      : "Pending";
  const ready = phase === "Running" && all.every((c) => c.ready);
  const cond = (type: string, ok: boolean) => ({
    type,
    status: ok ? "True" : "False",
    lastTransitionTime: t,
    ...(ok ? {} : { reason: run.done ? "PodCompleted" : "ContainersNotReady" }),
  });
  const scheduled = pod.status?.conditions?.filter((c) => c.type === "PodScheduled") ?? [];
  const status = {
    phase,
    hostIP: "127.0.0.1",
    hostIPs: [{ ip: "127.0.0.1" }],
    podIP: run.ip,
    podIPs: [{ ip: run.ip }],
    startTime: run.startedAt,
    qosClass: pod.status?.qosClass,
    conditions: [...scheduled, cond("PodReadyToStartContainers", true), cond("Initialized", true), cond("ContainersReady", ready), cond("Ready", ready)],
    containerStatuses,
  };
  try {
    await core.patchNamespacedPodStatus({ name: run.name, namespace: run.namespace, body: { status } }, MERGE);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/** A downward-API field of the pod (fieldRef), as env values and downwardAPI volumes read it. */
export function fieldValue(pod: k8s.V1Pod, run: PodRun, path: string): string {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (m) return pod.metadata?.[m[1] as "labels" | "annotations"]?.[m[2] as string] ?? "";
  switch (path) {
    case "metadata.name":
      return run.name;
    case "metadata.namespace":
      return run.namespace;
    case "metadata.uid":
      return run.uid;
    case "spec.nodeName":
      return pod.spec?.nodeName ?? "";
    case "spec.serviceAccountName":
      return pod.spec?.serviceAccountName ?? "";
    case "status.podIP":
    case "status.podIPs":
      return run.ip;
    case "status.hostIP":
    case "status.hostIPs":
      return "127.0.0.1";
    default:
      throw new Error(`unsupported fieldRef ${path}`);
  }
}
