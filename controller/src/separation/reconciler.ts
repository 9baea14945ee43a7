// The reconcile pass for one SeparationJob: observe (cache first, the API server where a stale cache
// could mislead), decide with the pure decide(), act once (one step: fetch.ts, job.ts, result.ts,
// reply.ts, finalize.ts), write status guarded by the resourceVersion it was decided on, record
// Events for the transitions, and say when to look again.
import { SeparationJob, TRACEPARENT_ANNOTATION } from "@unmix/api/separationjob";
import { apiReason } from "@unmix/core/kube-errors";
import type { Logger } from "@unmix/core/log";
import { inputKey } from "@unmix/core/result-cache";
import { type JobView, jobFinished, type PodView } from "../framework/kube/objects.ts";
import { inSpan, traceIdOf } from "../framework/tracing.ts";
import { auditStep, type Services, type StepContext } from "./context.ts";
import { type Action, decide, jobOwnership } from "./decide.ts";
import { type EventRecorder, transitionEvents } from "./events.ts";
import { fetchMedia } from "./fetch.ts";
import { finalize, removeStored } from "./finalize.ts";
import { createJob } from "./job.ts";
import { sendReply } from "./reply.ts";
import { recordSeparated } from "./result.ts";
import * as S from "./status.ts";

export interface ReconcileResult {
  action: Action["type"] | "Cleanup";
  requeueAfterMs?: number;
}

/** What the informers know; the reconciler never lists. */
export interface Lookup {
  separationJob(name: string): unknown;
  job(name: string): JobView | undefined;
  pods(sjName: string): PodView[];
  /** The Jobs of the SeparationJob's sender not finished, or being created (0 for a SeparationJob with no sender label). */
  activeJobsOfSender(sj: SeparationJob): number;
  /** A Job is being created for the SeparationJob: counted as its sender's until the Job cache has it, or the step failed. */
  jobStarting(sjName: string, starting: boolean): void;
}

export interface ReconcilerDeps extends Services {
  events: EventRecorder;
  lookup: Lookup;
  log: Logger;
}

/** Resource versions are etcd revisions in practice; compare them only to prefer the newer copy. */
function newer<T extends { metadata?: { resourceVersion?: string } }>(a: T | undefined, b: T | undefined): T | undefined {
  if (!a) return b;
  if (!b) return a;
  const ra = Number(a.metadata?.resourceVersion);
  const rb = Number(b.metadata?.resourceVersion);
  if (!Number.isFinite(ra) || !Number.isFinite(rb)) return a;
  return rb > ra ? b : a;
}

export class Reconciler {
  private readonly d: ReconcilerDeps;
  /** The objects our own status writes returned, until the informer has caught up with them. */
  private readonly written = new Map<string, SeparationJob>();

  constructor(d: ReconcilerDeps) {
    this.d = d;
  }

  /** The informer saw `sj`: drop our copy once the cache is as new. */
  observed(name: string, rv: string | undefined): void {
    const mine = this.written.get(name);
    if (mine && (rv === undefined || Number(rv) >= Number(mine.metadata.resourceVersion))) this.written.delete(name);
  }

  forget(name: string): void {
    this.written.delete(name);
  }

  async reconcile(name: string): Promise<ReconcileResult> {
    const cached = this.d.lookup.separationJob(name) as Parameters<typeof S.isFinished>[0] | undefined;
    // finished (the cache keeps only a stub of those): nothing to do, and no write can undo it
    if (cached && S.isFinished(cached)) {
      this.written.delete(name);
      return { action: "Wait" };
    }
    let parsed: SeparationJob | undefined;
    if (cached) {
      const r = SeparationJob.safeParse(cached);
      if (!r.success) {
        // the CRD's schema let it in, ours does not (e.g. a sender with no id): nothing can be done
        this.d.log.error({ sj: name, problems: r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`) }, "invalid SeparationJob: ignored");
        return { action: "Wait" };
      }
      parsed = r.data;
    }
    let sj = newer(parsed, this.written.get(name));
    if (!sj) {
      // not in the cache: deleted, or created a moment ago; ask the API server
      sj = await this.d.kube.separationJobs.get(name);
      if (!sj) {
        // deleted (a user's "delete", retention): remove what it stored; an input still there is
        // deleted mid-flight, audited first (a finished one's was deleted and audited at Finalize)
        this.written.delete(name);
        if (await this.d.store.stat(inputKey(name))) await auditStep(this.d.audit, name, { event: "input-deleted", reason: "deleted" });
        await removeStored(this.d.store, name);
        return { action: "Cleanup" };
      }
    }
    const current = sj;
    const traceparent = current.metadata.annotations?.[TRACEPARENT_ANNOTATION];
    const traceId = traceIdOf(traceparent);
    const log = this.d.log.child({ sj: name, ...(traceId ? { trace_id: traceId } : {}) });
    const job = await this.observeJob(current);
    const workload = await this.observeWorkload(job);
    const action = decide({
      sj: current,
      job,
      pods: job ? this.d.lookup.pods(name) : [],
      ...(workload ? { workload } : {}),
      now: this.d.clock(),
      pendingDeadlineMs: this.d.config.flow.pendingDeadlineMs,
      replyConfirmMs: this.d.config.flow.replyConfirmMs,
      maxAges: this.d.config.flow.maxAges,
      userQuota: { active: this.d.lookup.activeJobsOfSender(current), max: this.d.config.flow.perUserMaxActiveJobs },
    });
    if (action.type === "Wait") {
      return { action: action.type, ...(action.requeueAfterMs !== undefined ? { requeueAfterMs: action.requeueAfterMs } : {}) };
    }
    // taken before the first await, so that another worker's decision for the same sender counts it
    if (action.type === "CreateJob") this.d.lookup.jobStarting(name, true);
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    // the steps touch only a Job that is ours: another's of the same name is never deleted
    const owned = job && jobOwnership(job, current) === "Ours" ? job : undefined;
    try {
      const requeueAfterMs = await inSpan(`reconcile ${action.type}`, traceparent, { "unmix.separationjob": name, "unmix.action": action.type }, () =>
        this.act(this.stepContext(log), current, owned, action, traceparent),
      );
      this.d.metrics.reconcileDuration.observe({ action: action.type, result: "ok" }, seconds());
      return { action: action.type, ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}) };
    } catch (err) {
      if (action.type === "CreateJob") this.d.lookup.jobStarting(name, false);
      this.d.metrics.reconcileDuration.observe({ action: action.type, result: "error" }, seconds());
      if (apiReason(err) === "Conflict") log.debug({ action: action.type }, "status changed meanwhile; will look again");
      else log.warn({ err, action: action.type }, "reconcile failed; retrying with back-off");
      throw err;
    }
  }

  /** The owned Job: from the cache, or from the API server when the cache says there is none but there should be. */
  private async observeJob(sj: SeparationJob): Promise<JobView | undefined> {
    const cached = this.d.lookup.job(sj.metadata.name);
    if (cached) return cached;
    const shouldExist = S.statusOf(sj, S.C.JobCreated) === "True" && !S.isFinished(sj);
    return shouldExist ? this.d.kube.jobs.get(sj.metadata.name) : undefined;
  }

  /** Kueue's Workload, only while Kueue holds the Job (suspended) and only when the Jobs go to a Kueue queue: one GET, no watch. */
  private async observeWorkload(job: JobView | undefined) {
    if (!job?.spec?.suspend || !this.d.config.job.kueueQueueName || !job.metadata.uid || jobFinished(job)) return undefined;
    return this.d.kube.workloads.ofJob(job.metadata.uid);
  }

  private stepContext(log: Logger): StepContext {
    return { ...this.d, log, write: (sj, patch) => this.write(sj, patch, log) };
  }

  /** Carries out one step (`job`: the Job if it is ours); resolves with when to look again, if the watches will not say. */
  private async act(
    ctx: StepContext,
    sj: SeparationJob,
    job: JobView | undefined,
    a: Exclude<Action, { type: "Wait" }>,
    traceparent: string | undefined,
  ): Promise<number | undefined> {
    const now = ctx.clock();
    switch (a.type) {
      case "Initialize":
        await ctx.write(sj, S.initialize(sj, now));
        return undefined;
      case "FetchMedia":
        await fetchMedia(ctx, sj);
        return undefined;
      case "CreateJob":
        await createJob(ctx, sj, traceparent);
        return undefined;
      case "DeleteStaleJob":
        ctx.log.warn({ why: a.why }, "deleting a Job left by an earlier SeparationJob of the same name");
        await ctx.kube.jobs.delete(sj.metadata.name);
        return 1000;
      case "RecordJobCreated": {
        const created = job?.metadata.creationTimestamp ? new Date(job.metadata.creationTimestamp) : now;
        await auditStep(ctx.audit, sj.metadata.name, { event: "job-created" });
        await ctx.write(sj, S.jobCreated(sj, created, sj.metadata.name));
        return undefined;
      }
      case "UpdateProgress":
        await ctx.write(sj, a.patch);
        return a.requeueAfterMs;
      case "RecordFailure":
        await ctx.write(sj, S.failed(sj, now, a.failure));
        ctx.failpoint("failure:recorded");
        // a Job still waiting for a GPU must not start later
        if (job && !jobFinished(job)) await ctx.kube.jobs.delete(sj.metadata.name);
        return undefined;
      case "RecordSeparated":
        await recordSeparated(ctx, sj, job, a.jobMissing);
        return undefined;
      case "SendReply":
        if (a.resend)
          ctx.log.warn({ attemptedAt: sj.status?.reply?.attemptedAt }, "the outcome of a send is unknown and no receipt came in time: sending it once more");
        return sendReply(ctx, sj, a.kind, a.resend === true);
      case "ConfirmReply":
        await ctx.write(sj, S.sent(sj, now, "receipt"));
        ctx.log.info("reply confirmed by a status-webhook receipt");
        return undefined;
      case "AbandonReply":
        ctx.log.error({ why: a.why }, "giving up the reply");
        await ctx.write(sj, S.replyFailed(sj, now, a.why));
        return undefined;
      case "GiveUpReply":
        ctx.log.error({ attemptedAt: sj.status?.reply?.attemptedAt }, "the outcome of the repeated send is unknown too and no receipt came: not sending again");
        await ctx.write(sj, S.unconfirmed(sj, now));
        return undefined;
      case "Finalize":
        await finalize(ctx, sj, job);
        return undefined;
    }
  }

  /** Merge-patches /status guarded by the resourceVersion `sj` was read at; records Events for transitions. */
  private async write(sj: SeparationJob, patch: S.StatusPatch, log: Logger): Promise<SeparationJob> {
    const updated = await this.d.kube.separationJobs.patchStatus(
      sj.metadata.name,
      sj.metadata.resourceVersion ?? "",
      patch as SeparationJob["status"] & object,
    );
    this.written.set(sj.metadata.name, updated);
    for (const e of transitionEvents(sj, updated)) {
      log.info({ condition: e.condition.type, status: e.condition.status, reason: e.condition.reason }, e.condition.message);
      // not awaited: an Event is a courtesy to the reader of `kubectl describe`, not part of the step
      void this.d.events.record(updated, e);
    }
    return updated;
  }
}
