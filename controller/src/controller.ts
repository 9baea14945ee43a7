// The controller: leader election, then informers on SeparationJobs, their Jobs and pods feeding
// one work queue, workers running the reconciler, a periodic resync and the garbage collector.
// run() resolves when this replica stops leading (lost lease) or is stopped; stop() drains the
// reconciles in flight and hands the lease back.
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { USER_LABEL } from "@unmix/api/separationjob";
import type { AuditLog } from "@unmix/core/audit";
import { createLogger, type Logger } from "@unmix/core/log";
import type { ObjectStore } from "@unmix/core/object-store";
import { ResultCache, whatsappMediaDeleter } from "@unmix/core/result-cache";
import { createWhatsAppClient, GraphApiError, type WhatsAppClient } from "@unmix/core/whatsapp";
import type { ControllerConfig } from "./config.ts";
import type { Health } from "./framework/http-server.ts";
import { Informer, type KubeObject } from "./framework/informer.ts";
import { type KubeApi, kubeApi } from "./framework/kube/api.ts";
import { createKubeClient, type KubeClient } from "./framework/kube/client.ts";
import type { KubeConnection } from "./framework/kube/connection.ts";
import { controllerOf, type JobView, jobFinished, type PodView } from "./framework/kube/objects.ts";
import { LeaderElector } from "./framework/leader-election.ts";
import { createS3ObjectStore } from "./framework/s3.ts";
import { RetryAfter, WorkQueue } from "./framework/workqueue.ts";
import { createMetrics, type Metrics } from "./metrics.ts";
import { createEventRecorder } from "./separation/events.ts";
import { type FailpointHook, failpointsFromEnv } from "./separation/failpoints.ts";
import { GarbageCollector } from "./separation/gc.ts";
import { MANAGED_BY, SJ_LABEL } from "./separation/job-spec.ts";
import { Reconciler } from "./separation/reconciler.ts";
import { isFinished, isWaitingForGpu } from "./separation/status.ts";

export interface ControllerOptions {
  config: ControllerConfig;
  /** Where the API server is (loadKubeConnection()). */
  kube: KubeConnection;
  clock?: () => Date;
  log?: Logger;
  failpoint?: FailpointHook;
  whatsapp?: WhatsAppClient;
  store?: ObjectStore;
  /** The audit trail (connectAuditLog: NATS, with permission to publish the controller's audit subjects only). */
  audit: AuditLog;
}

interface SjObject extends KubeObject {
  metadata?: KubeObject["metadata"] & { labels?: Record<string, string> };
  status?: { conditions?: { type: string; status: string }[] };
}

const CACHE_SYNC_TIMEOUT_MS = 120_000;

// The caches keep only what the controller reads (client-go's transform functions): a Job's pod
// template, with its presigned URLs, and most of a pod's spec are never looked at again.
function slimMeta(m: JobView["metadata"] | PodView["metadata"]) {
  const { name, namespace, uid, resourceVersion, labels, creationTimestamp, deletionTimestamp } = m;
  const ownerReferences = "ownerReferences" in m ? m.ownerReferences : undefined;
  return { name, namespace, uid, resourceVersion, labels, creationTimestamp, deletionTimestamp, ...(ownerReferences ? { ownerReferences } : {}) };
}
/**
 * A finished SeparationJob stays for a week (retention) but needs nothing more from the controller:
 * the cache keeps a stub of it, so a week of them costs little memory.
 */
function slimFinished(o: SjObject): SjObject {
  if (!isFinished(o)) {
    if (o.metadata?.managedFields) delete o.metadata.managedFields;
    return o;
  }
  const { name, namespace, uid, resourceVersion } = o.metadata ?? {};
  const conditions = o.status?.conditions?.filter((c) => c.type === "Succeeded").map(({ type, status }) => ({ type, status }));
  return { metadata: { name, namespace, uid, resourceVersion }, status: { conditions } };
}

const slimJob = (j: JobView & KubeObject): JobView & KubeObject => ({
  metadata: slimMeta(j.metadata),
  spec: { ...(j.spec?.suspend !== undefined ? { suspend: j.spec.suspend } : {}) },
  ...(j.status ? { status: j.status } : {}),
});
const slimPod = (p: PodView & KubeObject): PodView & KubeObject => ({
  metadata: slimMeta(p.metadata),
  spec: { ...(p.spec?.nodeName ? { nodeName: p.spec.nodeName } : {}) },
  status: {
    ...(p.status?.phase ? { phase: p.status.phase } : {}),
    ...(p.status?.startTime ? { startTime: p.status.startTime } : {}),
    conditions:
      p.status?.conditions?.map(({ type, status, reason, message, lastTransitionTime }) => ({ type, status, reason, message, lastTransitionTime })) ?? [],
    containerStatuses: p.status?.containerStatuses?.map(({ name, state, lastState, restartCount }) => ({ name, state, lastState, restartCount })) ?? [],
  },
});

export class Controller {
  readonly config: ControllerConfig;
  readonly identity: string;
  readonly metrics: Metrics;
  readonly client: KubeClient;
  readonly log: Logger;
  readonly store: ObjectStore;
  readonly gc: GarbageCollector;
  private readonly clock: () => Date;
  private readonly kube: KubeApi;
  private readonly elector?: LeaderElector;
  private readonly reconciler: Reconciler;
  private readonly queue: WorkQueue;
  private readonly sjInformer: Informer<SjObject>;
  private readonly jobInformer: Informer<JobView & KubeObject>;
  private readonly podInformer: Informer<PodView & KubeObject>;
  private readonly podsBySj = new Map<string, Map<string, PodView>>();
  /** Unfinished SeparationJobs by their sender label (a keyed hash, never the number), for the per-sender limit. */
  private readonly sjsBySender = new Map<string, Set<string>>();
  private readonly senderOfSj = new Map<string, string>();
  /** SeparationJobs whose Job is being created and not in the Job cache yet. */
  private readonly jobsStarting = new Set<string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private workers: Promise<void>[] = [];
  private state: "idle" | "standby" | "syncing" | "leading" | "stopping" | "stopped" = "idle";
  private stopRequested?: () => void;
  private readonly stopped: Promise<void>;
  private gcRunning = false;
  private stopping?: Promise<void>;

  constructor(o: ControllerOptions) {
    const c = o.config;
    this.config = c;
    this.clock = o.clock ?? (() => new Date());
    this.log = o.log ?? createLogger("unmix-controller");
    this.identity = c.leaderElection.identity ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.metrics = createMetrics({
      waitingForGpu: () => this.sjInformer.list().filter(isWaitingForGpu).length,
    });
    this.client = createKubeClient(o.kube);
    this.client.onRequest((verb) => this.metrics.kubeRequests.inc({ verb }));
    this.kube = kubeApi(this.client, c.namespace);
    this.store = o.store ?? createS3ObjectStore(c.objectStore);
    const whatsapp = countingErrors(o.whatsapp ?? createWhatsAppClient({ ...c.whatsapp, userAgent: "unmix-controller/0.1" }), (call, kind) =>
      this.metrics.graphErrors.inc({ call, kind }),
    );
    const cache = new ResultCache(this.store, c.gc.cacheTtlMs, this.clock, whatsappMediaDeleter(whatsapp, this.log));
    this.stopped = new Promise((resolve) => {
      this.stopRequested = resolve;
    });

    if (c.leaderElection.enabled) {
      this.elector = new LeaderElector({
        leases: this.kube.leases,
        name: c.leaderElection.leaseName,
        identity: this.identity,
        leaseDurationMs: c.leaderElection.leaseDurationMs,
        renewDeadlineMs: c.leaderElection.renewDeadlineMs,
        retryPeriodMs: c.leaderElection.retryPeriodMs,
        log: this.log,
      });
    }

    this.queue = new WorkQueue({
      baseDelayMs: c.queue.baseDelayMs,
      maxDelayMs: c.queue.maxDelayMs,
      qps: c.queue.qps,
      burst: c.queue.burst,
      onDepth: (d) => this.metrics.queueDepth.set(d),
    });

    const informer = <T extends KubeObject>(resource: string, path: string, labelSelector?: string, transform?: (o: T) => T) =>
      new Informer<T>({
        client: this.client,
        path,
        ...(labelSelector ? { labelSelector } : {}),
        ...(transform ? { transform } : {}),
        relistMs: c.informers.relistMs,
        stallMs: c.informers.stallMs,
        log: this.log.child({ informer: resource }),
        onRelist: () => this.metrics.relists.inc({ resource }),
        onWatchRestart: (reason) => this.metrics.watchRestarts.inc({ resource, reason }),
      });
    const { collections } = this.kube;
    const managed = `app.kubernetes.io/managed-by=${MANAGED_BY}`;
    this.sjInformer = informer<SjObject>("separationjobs", collections.separationJobs, undefined, slimFinished);
    this.jobInformer = informer<JobView & KubeObject>("jobs", collections.jobs, managed, slimJob);
    this.podInformer = informer<PodView & KubeObject>("pods", collections.pods, managed, slimPod);

    this.reconciler = new Reconciler({
      config: c,
      kube: this.kube,
      store: this.store,
      cache,
      whatsapp,
      events: createEventRecorder(this.kube, this.identity, this.log, this.clock),
      lookup: {
        separationJob: (name) => this.sjInformer.get(name),
        job: (name) => this.jobInformer.get(name),
        pods: (name) => [...(this.podsBySj.get(name)?.values() ?? [])],
        activeJobsOfSender: (sj) => this.activeJobsOfSender(sj.metadata.labels?.[USER_LABEL]),
        jobStarting: (name, starting) => {
          if (starting) this.jobsStarting.add(name);
          else this.jobsStarting.delete(name);
        },
      },
      metrics: this.metrics,
      log: this.log,
      clock: this.clock,
      failpoint: o.failpoint ?? failpointsFromEnv(),
      audit: o.audit,
    });
    this.gc = new GarbageCollector({
      sjs: this.kube.separationJobs,
      store: this.store,
      cache,
      clock: this.clock,
      log: this.log,
      metrics: this.metrics,
      settings: c.gc,
      audit: o.audit,
    });
    this.wireHandlers();
  }

  /** The sender's Jobs that hold or wait for a GPU: not finished, or being created. */
  private activeJobsOfSender(sender: string | undefined): number {
    let n = 0;
    for (const name of (sender && this.sjsBySender.get(sender)) || []) {
      const job = this.jobInformer.get(name);
      if (this.jobsStarting.has(name) || (job && !jobFinished(job))) n++;
    }
    return n;
  }

  /** Keeps the sender index of unfinished SeparationJobs (a finished one's cache stub has no labels). */
  private indexSender(name: string, o: SjObject | undefined): void {
    const sender = o && !isFinished(o) ? o.metadata?.labels?.[USER_LABEL] : undefined;
    const before = this.senderOfSj.get(name);
    if (before === sender) return;
    if (before) {
      const set = this.sjsBySender.get(before);
      set?.delete(name);
      if (set?.size === 0) this.sjsBySender.delete(before);
      this.senderOfSj.delete(name);
    }
    if (sender) {
      this.senderOfSj.set(name, sender);
      const set = this.sjsBySender.get(sender) ?? new Set<string>();
      set.add(name);
      this.sjsBySender.set(sender, set);
    } else {
      this.jobsStarting.delete(name);
    }
  }

  /** A slot of the sender of `sjName` may have freed: wake their SeparationJobs that have no Job yet. */
  private wakeSender(sjName: string): void {
    const sender = this.senderOfSj.get(sjName);
    for (const name of (sender && this.sjsBySender.get(sender)) || []) if (!this.jobInformer.get(name)) this.queue.add(name);
  }

  private wireHandlers(): void {
    const onSj = (o: SjObject) => {
      const name = o.metadata?.name ?? "";
      this.reconciler.observed(name, o.metadata?.resourceVersion);
      this.indexSender(name, o);
      if (!isFinished(o)) this.queue.add(name);
    };
    this.sjInformer.on("add", onSj);
    this.sjInformer.on("update", onSj);
    this.sjInformer.on("delete", (o) => {
      const name = o.metadata?.name ?? "";
      this.reconciler.forget(name);
      this.wakeSender(name);
      this.indexSender(name, undefined);
      this.queue.add(name); // removes what it stored
    });
    const onJob = (j: JobView, deleted = false) => {
      const owner = controllerOf(j);
      if (owner?.kind !== "SeparationJob") return;
      this.jobsStarting.delete(owner.name);
      this.queue.add(owner.name);
      if (deleted || jobFinished(j)) this.wakeSender(owner.name);
    };
    this.jobInformer.on("add", (j) => onJob(j));
    this.jobInformer.on("update", (j) => onJob(j));
    this.jobInformer.on("delete", (j) => onJob(j, true));
    const onPod = (p: PodView, deleted = false) => {
      const sj = p.metadata.labels?.[SJ_LABEL];
      if (!sj) return;
      let pods = this.podsBySj.get(sj);
      if (deleted) {
        pods?.delete(p.metadata.name);
        if (pods?.size === 0) this.podsBySj.delete(sj);
      } else {
        if (!pods) {
          pods = new Map();
          this.podsBySj.set(sj, pods);
        }
        pods.set(p.metadata.name, p);
      }
      this.queue.add(sj);
    };
    this.podInformer.on("add", (p) => onPod(p));
    this.podInformer.on("update", (p) => onPod(p));
    this.podInformer.on("delete", (p) => onPod(p, true));
  }

  isLeader(): boolean {
    return this.state === "leading" && (this.elector?.isLeader() ?? true);
  }

  readonly health: Health = {
    liveness: () => {
      if (this.state !== "leading") return undefined;
      const limit = this.config.informers.relistMs + 3 * this.config.informers.stallMs;
      for (const [name, inf] of [
        ["separationjobs", this.sjInformer],
        ["jobs", this.jobInformer],
        ["pods", this.podInformer],
      ] as const) {
        const quiet = Date.now() - inf.lastActivity;
        if (inf.lastActivity && quiet > limit) return `the ${name} informer has heard nothing for ${Math.round(quiet / 1000)} s`;
      }
      return undefined;
    },
    readiness: () => {
      if (this.state === "idle" || this.state === "stopped") return `controller ${this.state}`;
      if (this.state === "syncing") return "filling the caches";
      return undefined; // standing by is ready: the replica is healthy and waiting for the lease
    },
  };

  /**
   * Runs until stopped ("stopped") or until leadership is lost ("lost"; the process should exit
   * so that it restarts as a standby with empty caches).
   */
  async run(): Promise<"stopped" | "lost"> {
    await this.store.ensureBucket();
    this.state = "standby";
    if (this.elector) {
      const acquired = await Promise.race([this.elector.acquire(), this.stopped.then(() => false)]);
      if (!acquired) {
        await this.stopping;
        return "stopped";
      }
    }
    this.metrics.leader.set(1);
    this.state = "syncing";
    const synced = Promise.all([this.sjInformer.start(), this.jobInformer.start(), this.podInformer.start()]);
    const timeout = new Promise<"timeout">((r) => this.timers.push(setTimeout(() => r("timeout"), CACHE_SYNC_TIMEOUT_MS).unref()));
    const sync = await Promise.race([synced, timeout, this.stopped.then(() => "stopped" as const)]);
    if (sync === "timeout") throw new Error(`the caches did not fill within ${CACHE_SYNC_TIMEOUT_MS / 1000} s`);
    if (sync !== "stopped") {
      this.state = "leading";
      this.log.info({ identity: this.identity, separationJobs: this.sjInformer.size(), jobs: this.jobInformer.size() }, "caches filled; reconciling");
      this.workers = Array.from({ length: this.config.queue.concurrency }, () => this.worker());
      this.timers.push(setInterval(() => this.resync(), this.config.informers.resyncMs).unref());
      this.timers.push(setInterval(() => void this.collectGarbage(), this.config.gc.intervalMs).unref());
      this.timers.push(setTimeout(() => void this.collectGarbage(), Math.min(60_000, this.config.gc.intervalMs)).unref());
    }
    const outcome = this.elector
      ? await Promise.race([this.elector.holdLeadership(), this.stopped.then(() => "stopped" as const)])
      : await this.stopped.then(() => "stopped" as const);
    if (outcome === "lost") {
      this.log.error("stopping work: this replica no longer leads");
      this.stopping ??= this.shutdown(false);
    }
    await this.stopping;
    return outcome;
  }

  /** Graceful stop: no new work, the reconciles in flight finish, the lease is handed back. */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopRequested?.();
      this.stopping = this.state === "stopped" ? Promise.resolve() : this.shutdown(true);
    }
    return this.stopping;
  }

  private async shutdown(release: boolean): Promise<void> {
    this.state = "stopping";
    for (const t of this.timers) clearInterval(t);
    await this.queue.shutDown();
    await Promise.all(this.workers);
    await Promise.all([this.sjInformer.stop(), this.jobInformer.stop(), this.podInformer.stop()]);
    await this.elector?.stop(release);
    await this.client.close();
    this.metrics.leader.set(0);
    this.state = "stopped";
  }

  /** Level-triggered safety net: every unfinished SeparationJob is looked at again now and then. */
  private resync(): void {
    for (const sj of this.sjInformer.list()) if (!isFinished(sj)) this.queue.add(sj.metadata?.name ?? "");
  }

  private async collectGarbage(): Promise<void> {
    if (this.gcRunning || this.state !== "leading") return;
    this.gcRunning = true;
    try {
      await this.gc.runOnce();
    } catch (err) {
      this.log.warn({ err }, "garbage collection failed; trying again next time");
    } finally {
      this.gcRunning = false;
    }
  }

  private async worker(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      this.metrics.queueInFlight.set(this.queue.inFlight());
      try {
        const r = await this.reconciler.reconcile(key);
        this.queue.forget(key);
        if (r.requeueAfterMs !== undefined) this.queue.addAfter(key, r.requeueAfterMs);
      } catch (err) {
        this.metrics.queueRetries.inc();
        if (err instanceof RetryAfter) this.queue.addAfter(key, err.ms);
        else this.queue.addRateLimited(key);
      } finally {
        this.queue.done(key);
        this.metrics.queueInFlight.set(this.queue.inFlight());
      }
    }
  }

  /** For tests and the benchmark. */
  stats() {
    return {
      requests: this.client.requests,
      queueDepth: this.queue.len(),
      inFlight: this.queue.inFlight(),
      adds: this.queue.adds,
      retries: this.queue.retries,
    };
  }
}

/**
 * Every failed Graph API call counted by call (`send_text`, `upload_media`, …) and kind: an expired
 * token (`auth`) must page someone once, from the first refused call, whichever step made it.
 */
function countingErrors(client: WhatsAppClient, count: (call: string, kind: string) => void): WhatsAppClient {
  return new Proxy(client, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== "function") return value;
      const call = String(prop).replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
      return (...args: unknown[]) => {
        const result = value.apply(target, args);
        if (!(result instanceof Promise)) return result;
        return result.catch((err: unknown) => {
          // network failures and timeouts arrive as GraphApiError too; the media errors of our own
          // checks (expired URL, too large) are not calls that failed
          if (err instanceof GraphApiError) count(call, err.kind);
          throw err;
        });
      };
    },
  });
}
