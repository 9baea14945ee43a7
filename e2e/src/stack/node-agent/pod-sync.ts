// Pod sync: the pods bound to this node, watched (with a periodic relist as a safety net against
// missed watch events), started when new, stopped and removed for good when deleted.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { startContainer } from "./containers.ts";
import type { AgentContext } from "./context.ts";
import { type PodRun, type RunningContainer, writeStatus } from "./pod-run.ts";
import { prepareVolumes } from "./volumes.ts";

export class PodSync {
  private readonly ctx: AgentContext;
  private readonly nodeName: string;
  private readonly dir: string;
  private readonly pods = new Map<string, PodRun>();
  private informer?: k8s.ListWatch<k8s.V1Pod>;
  private resync?: NodeJS.Timeout;
  private stopped = false;
  private nextIp = 1;

  constructor(ctx: AgentContext, nodeName: string, dir: string) {
    this.ctx = ctx;
    this.nodeName = nodeName;
    this.dir = dir;
  }

  async start(): Promise<void> {
    this.stopped = false; // started again after a stop (the agent restarted)
    await this.watch();
    // level-triggered safety net: a missed watch event is repaired within seconds
    this.resync = setInterval(() => void this.relist().catch(() => {}), 5_000);
  }

  /** Stops watching and stops every pod's processes at once (no grace period). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resync);
    await this.informer?.stop();
    await Promise.all([...this.pods.values()].map((r) => this.killPod(r, 0)));
  }

  private async watch(): Promise<void> {
    const fieldSelector = `spec.nodeName=${this.nodeName}`;
    const list = () => this.ctx.core.listPodForAllNamespaces({ fieldSelector });
    const informer = new k8s.ListWatch<k8s.V1Pod>("/api/v1/pods", new k8s.Watch(this.ctx.kc), list, false, undefined, fieldSelector);
    informer.on("add", (p) => void this.sync(p));
    informer.on("update", (p) => void this.sync(p));
    informer.on("delete", (p) => void this.forget(p));
    informer.on("error", () => {
      // the informer stops on errors other than timeouts: start it again after a pause
      if (!this.stopped) setTimeout(() => void informer.start().catch(() => {}), 1000);
    });
    this.informer = informer;
    await informer.start();
  }

  private async relist(): Promise<void> {
    const { items } = await this.ctx.core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${this.nodeName}` });
    const seen = new Set(items.map((p) => p.metadata?.uid));
    for (const p of items) await this.sync(p);
    for (const run of this.pods.values()) if (!seen.has(run.uid)) await this.killPod(run, 0);
  }

  private async sync(pod: k8s.V1Pod): Promise<void> {
    if (this.stopped) return;
    const uid = pod.metadata?.uid ?? "";
    const run = this.pods.get(uid);
    if (pod.metadata?.deletionTimestamp) {
      const grace = pod.metadata.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
      if (run) await this.killPod(run, grace);
      // the kubelet's last word on a deleted pod: remove it for good (grace 0 in the body; the
      // client sends no query parameters alongside a body)
      await this.ctx.core
        .deleteNamespacedPod({
          name: pod.metadata.name ?? "",
          namespace: pod.metadata.namespace ?? "",
          gracePeriodSeconds: 0,
          body: { gracePeriodSeconds: 0, preconditions: { uid } },
        })
        .catch(() => {});
      return;
    }
    if (run) return;
    const phase = pod.status?.phase;
    if (phase === "Succeeded" || phase === "Failed") return;
    await this.startPod(pod);
  }

  private async forget(pod: k8s.V1Pod): Promise<void> {
    const run = this.pods.get(pod.metadata?.uid ?? "");
    if (run) await this.killPod(run, 0);
  }

  /** Each pod's own loopback address (127.1.x.y), so two pods can listen on the same port. */
  private allocateIp(): string {
    const n = this.nextIp++;
    return `127.1.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`;
  }

  private async startPod(pod: k8s.V1Pod): Promise<void> {
    const meta = pod.metadata as k8s.V1ObjectMeta;
    const uid = meta.uid as string;
    const dir = join(this.dir, "pods", `${meta.namespace}_${meta.name}_${uid}`);
    mkdirSync(dir, { recursive: true });
    const run: PodRun = {
      uid,
      namespace: meta.namespace ?? "default",
      name: meta.name ?? "",
      dir,
      ip: this.allocateIp(),
      containers: (pod.spec?.containers ?? []).map((c) => ({
        name: c.name,
        state: { waiting: { reason: "ContainerCreating" } },
        restartCount: 0,
        ready: false,
        terminationFile: join(dir, `${c.name}.termination-log`),
        logFile: join(dir, `${c.name}.log`),
        probeFailures: 0,
        configRetries: 0,
      })),
      startedAt: new Date().toISOString(),
      terminating: false,
      done: false,
      timers: [],
      writes: Promise.resolve(),
    };
    this.pods.set(uid, run);
    let mounts: Map<string, string>;
    try {
      mounts = await prepareVolumes(this.ctx, pod, run);
    } catch (err) {
      for (const c of run.containers) c.state = { waiting: { reason: "CreateContainerConfigError", message: (err as Error).message } };
      await writeStatus(this.ctx.core, pod, run);
      this.pods.delete(uid); // retried on the next resync
      return;
    }
    for (const [i, spec] of (pod.spec?.containers ?? []).entries()) {
      await startContainer(this.ctx, pod, run, spec, run.containers[i] as RunningContainer, mounts);
    }
    await writeStatus(this.ctx.core, pod, run);
  }

  /** SIGTERM to each container's process group, SIGKILL after the grace period. */
  private async killPod(run: PodRun, graceSeconds: number): Promise<void> {
    if (run.terminating) return;
    run.terminating = true;
    for (const t of run.timers) clearTimeout(t);
    await Promise.all(run.containers.map((c) => c.proc?.stop(graceSeconds * 1000)));
    this.pods.delete(run.uid);
  }
}
