// The reconcile pass for one SeparationJob: observe (cache first, the API server where a stale
// cache could mislead), decide with the pure decide(), act once, write status guarded by the
// resourceVersion it was decided on, record Events for the transitions, and say when to look again.

import { findCondition } from "@unmix/api/conditions";
import { MODELS, modelId } from "@unmix/api/models";
import { type FailureClass, SeparationJob, TRACEPARENT_ANNOTATION, USER_LABEL } from "@unmix/api/separationjob";
import type { Logger } from "@unmix/core/log";
import type { ObjectStore } from "@unmix/core/object-store";
import { replies } from "@unmix/core/replies";
import { type CacheKey, inputKey, type ResultCache, resultKey } from "@unmix/core/result-cache";
import { normalizeSha256 } from "@unmix/core/sha256";
import { GraphApiError, MediaIntegrityError, MediaTooLargeError, type Recipient, type WhatsAppClient } from "@unmix/core/whatsapp";
import { z } from "zod";
import type { Classification } from "./classify.ts";
import type { ControllerConfig } from "./config.ts";
import { type Action, decide } from "./decide.ts";
import type { EventRecorder } from "./events.ts";
import type { FailpointHook } from "./failpoints.ts";
import { buildJob, controllerOf, type JobView, jobFinished, manifestKey, mimeTypeOfFormat, outputKey, type PodView, workPrefix } from "./jobs.ts";
import { type KubeClient, reasonOf } from "./kube-client.ts";
import type { Metrics } from "./metrics.ts";
import type { SeparationJobApi } from "./sj-api.ts";
import * as S from "./status.ts";
import { currentTraceparent, inSpan, traceIdOf } from "./tracing.ts";

/** Thrown to retry after a given delay rather than the queue's back-off. */
export class RetryAfter extends Error {
  readonly ms: number;
  constructor(ms: number, message: string) {
    super(message);
    this.name = "RetryAfter";
    this.ms = ms;
  }
}

export interface ReconcileResult {
  action: Action["type"] | "Cleanup" | "Gone";
  requeueAfterMs?: number;
}

/** What the informers know; the reconciler never lists. */
export interface Lookup {
  separationJob(name: string): unknown;
  job(name: string): JobView | undefined;
  pods(sjName: string): PodView[];
}

export interface ReconcilerDeps {
  config: ControllerConfig;
  client: KubeClient;
  sjs: SeparationJobApi;
  store: ObjectStore;
  cache: ResultCache;
  whatsapp: WhatsAppClient;
  events: EventRecorder;
  lookup: Lookup;
  metrics: Metrics;
  log: Logger;
  clock: () => Date;
  failpoint: FailpointHook;
}

/** The result manifest the job writes (job-image/src/unmix_job/manifest.py); extra fields are fine. */
const Manifest = z
  .object({
    model: z.string().optional(),
    engine: z.string().optional(),
    modelId: z.string().optional(),
    device: z.string().optional(),
    mediaSeconds: z.number().min(0).optional(),
    mimeType: z.string().optional(),
    sizeBytes: z.number().int().min(0).optional(),
    separateSeconds: z.number().min(0).optional(),
    realTimeFactor: z.number().min(0).optional(),
  })
  .loose();

/** WhatsApp's limit for audio and video media. */
const WHATSAPP_MAX_BYTES = 16_000_000;
const EXTENSION: Record<string, string> = { "ogg-opus": "ogg", mp3: "mp3", m4a: "m4a", mp4: "mp4" };
const WARNING_REASONS = new Set([
  "Unschedulable",
  "Queued",
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "CreateContainerConfigError",
  "CreateContainerError",
  "Refused",
  "ReplyUnconfirmed",
]);

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

  private get ns(): string {
    return this.d.config.namespace;
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
    const cached = this.d.lookup.separationJob(name) as { status?: { conditions?: { type: string; status: string }[] } } | undefined;
    // finished (the cache keeps only a stub of those): nothing to do, and no write can undo it
    if (cached?.status?.conditions?.some((c) => c.type === "Succeeded" && c.status !== "Unknown")) {
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
      sj = await this.d.sjs.get(name);
      if (!sj) {
        await this.cleanupDeleted(name);
        return { action: "Cleanup" };
      }
    }
    const current = sj;
    const traceparent = current.metadata.annotations?.[TRACEPARENT_ANNOTATION];
    const log = this.d.log.child({ sj: name, ...(traceIdOf(traceparent) ? { trace_id: traceIdOf(traceparent) } : {}) });
    const job = await this.observeJob(current);
    const action = decide({
      sj: current,
      job,
      pods: job ? this.d.lookup.pods(name) : [],
      now: this.d.clock(),
      pendingDeadlineMs: this.d.config.flow.pendingDeadlineMs,
      replyConfirmMs: this.d.config.flow.replyConfirmMs,
    });
    if (action.type === "Wait") {
      return { action: action.type, ...(action.requeueAfterMs !== undefined ? { requeueAfterMs: action.requeueAfterMs } : {}) };
    }
    const started = performance.now();
    try {
      const r = await inSpan(`reconcile ${action.type}`, traceparent, { "unmix.separationjob": name, "unmix.action": action.type }, () =>
        this.act(current, job, action, log, traceparent),
      );
      this.d.metrics.reconcileDuration.observe({ action: action.type, result: "ok" }, (performance.now() - started) / 1000);
      return r;
    } catch (err) {
      this.d.metrics.reconcileDuration.observe({ action: action.type, result: "error" }, (performance.now() - started) / 1000);
      if (reasonOf(err) === "Conflict") log.debug({ action: action.type }, "status changed meanwhile; will look again");
      else log.warn({ err, action: action.type }, "reconcile failed; retrying with back-off");
      throw err;
    }
  }

  /** The owned Job: from the cache, or from the API server when the cache says there is none but there should be. */
  private async observeJob(sj: SeparationJob): Promise<JobView | undefined> {
    const cached = this.d.lookup.job(sj.metadata.name);
    if (cached) return cached;
    const shouldExist = S.statusOf(sj, S.C.JobCreated) === "True" && !S.isFinished(sj);
    return shouldExist ? this.getJob(sj.metadata.name) : undefined;
  }

  private async act(
    sj: SeparationJob,
    job: JobView | undefined,
    a: Exclude<Action, { type: "Wait" }>,
    log: Logger,
    traceparent: string | undefined,
  ): Promise<ReconcileResult> {
    const now = this.d.clock();
    const done = (requeueAfterMs?: number): ReconcileResult => ({ action: a.type, ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}) });
    switch (a.type) {
      case "Initialize":
        await this.write(sj, S.initialize(sj, now), log);
        return done();
      case "FetchMedia":
        await this.fetchMedia(sj, log);
        return done();
      case "CreateJob":
        await this.createJob(sj, log, traceparent);
        return done();
      case "DeleteForeignJob":
        log.warn({ why: a.why }, "deleting a Job left by an earlier SeparationJob of the same name");
        await this.deleteJob(sj.metadata.name);
        return done(1000);
      case "RecordJobCreated": {
        const created = job?.metadata.creationTimestamp ? new Date(job.metadata.creationTimestamp) : now;
        await this.write(sj, S.jobCreated(sj, created, sj.metadata.name), log);
        return done();
      }
      case "UpdateProgress":
        await this.write(sj, a.patch, log);
        return done(a.requeueAfterMs);
      case "RecordFailure": {
        await this.write(sj, S.failed(sj, now, a.failure), log);
        this.d.failpoint("failure:recorded");
        // a Job still waiting for a GPU must not start later
        if (job && !jobFinished(job)) await this.deleteJob(sj.metadata.name);
        return done();
      }
      case "RecordSeparated":
        await this.recordSeparated(sj, job, a.jobMissing, log);
        return done();
      case "SendReply":
        return this.sendReply(sj, a.kind, log);
      case "ConfirmReply":
        await this.write(sj, S.sent(sj, now, a.messageId, "receipt"), log);
        log.info({ messageId: a.messageId }, "reply confirmed by a status-webhook receipt");
        return done();
      case "GiveUpReply":
        log.error({ attemptedAt: sj.status?.reply?.attemptedAt }, "the outcome of a send is unknown and no receipt came: not sending again");
        await this.write(sj, S.unconfirmed(sj, now), log);
        return done();
      case "Finalize":
        await this.finalize(sj, job, log);
        return done();
    }
  }

  // ── status writes ─────────────────────────────────────────────────────────────────────────

  /** Merge-patches /status guarded by the resourceVersion `sj` was read at; records Events for transitions. */
  private async write(sj: SeparationJob, patch: S.StatusPatch, log: Logger): Promise<SeparationJob> {
    const updated = await this.d.sjs.patchStatus(sj.metadata.name, sj.metadata.resourceVersion ?? "", patch as SeparationJob["status"] & object);
    this.written.set(sj.metadata.name, updated);
    this.recordTransitions(sj, updated, log);
    return updated;
  }

  private recordTransitions(before: SeparationJob, after: SeparationJob, log: Logger): void {
    for (const c of after.status?.conditions ?? []) {
      const old = findCondition(before.status?.conditions, c.type);
      if (old && old.status === c.status && old.reason === c.reason) continue;
      const settled = c.status !== "Unknown";
      const warn = c.status === "False" || WARNING_REASONS.has(c.reason);
      if (!settled && !warn) continue;
      log.info({ condition: c.type, status: c.status, reason: c.reason }, c.message);
      // not awaited: an Event is a courtesy to the reader of `kubectl describe`, not part of the step
      void this.d.events.record(
        { name: after.metadata.name, namespace: this.ns, uid: after.metadata.uid, resourceVersion: after.metadata.resourceVersion },
        { type: warn ? "Warning" : "Normal", reason: c.reason, note: `${c.type}: ${c.message}`, action: c.type },
      );
    }
  }

  // ── step 1: the media ─────────────────────────────────────────────────────────────────────

  private async fetchMedia(sj: SeparationJob, log: Logger): Promise<void> {
    const name = sj.metadata.name;
    const key = inputKey(name);
    const flow = this.d.config.flow;
    let hex: string;
    try {
      hex = normalizeSha256(sj.spec.media.sha256);
    } catch {
      await this.write(
        sj,
        S.failed(sj, this.d.clock(), { class: "MediaUnavailable", message: "the media's sha256 in the spec is neither hex nor base64 of 32 bytes" }),
        log,
      );
      return;
    }
    const existing = await this.d.store.stat(key);
    let bytes: number;
    if (existing && existing.metadata.sha256 === hex) {
      bytes = existing.size; // stored before a crash: the same bytes, checked then
    } else {
      const started = performance.now();
      try {
        const media = await this.d.whatsapp.fetchMedia(sj.spec.media.id, {
          maxBytes: flow.maxInputBytes,
          phoneNumberId: sj.spec.message.phoneNumberId,
          expectedSha256: sj.spec.media.sha256,
        });
        bytes = media.bytes.length;
        await this.d.store.put(key, media.bytes, bytes, media.info.mimeType || sj.spec.media.mimeType, {
          sha256: hex,
          "separationjob-uid": sj.metadata.uid ?? "",
        });
        log.info({ bytes, ms: Math.round(performance.now() - started) }, "media fetched from WhatsApp and stored");
      } catch (err) {
        const failure = this.fetchFailure(sj, err);
        if (!failure) throw err;
        await this.write(sj, S.failed(sj, this.d.clock(), failure), log);
        return;
      }
    }
    this.d.failpoint("fetch:stored");
    await this.write(sj, S.fetched(sj, this.d.clock(), { inputKey: key, bytes }), log);
    this.d.failpoint("fetch:recorded");
  }

  /** A fetch error that ends the job (undefined: retry it). */
  private fetchFailure(sj: SeparationJob, err: unknown): Classification | undefined {
    const age = this.d.clock().getTime() - Date.parse(sj.metadata.creationTimestamp ?? this.d.clock().toISOString());
    if (err instanceof MediaTooLargeError) return { class: "TooLarge", message: `the media is larger than ${err.maxBytes} bytes` };
    if (err instanceof MediaIntegrityError) return { class: "MediaUnavailable", message: err.message };
    if (err instanceof GraphApiError) {
      const ours = err.kind === "auth" || err.kind === "permission"; // our token, not the user's media
      if (!err.retryable && !ours) return { class: "MediaUnavailable", message: `WhatsApp: ${err.message} (${err.kind}, code ${err.code ?? err.status})` };
      if (age >= this.d.config.flow.fetchDeadlineMs)
        return { class: "MediaUnavailable", message: `WhatsApp kept failing for ${Math.round(age / 1000)} s: ${err.message} (${err.kind})` };
      throw new RetryAfter(err.retryAfterMs ?? (ours ? 30_000 : 1000), err.message);
    }
    return undefined;
  }

  // ── step 2: the Job ───────────────────────────────────────────────────────────────────────

  private jobsPath(): string {
    return `/apis/batch/v1/namespaces/${this.ns}/jobs`;
  }

  private async getJob(name: string): Promise<JobView | undefined> {
    try {
      return await this.d.client.request<JobView>("GET", `${this.jobsPath()}/${name}`);
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  private async deleteJob(name: string): Promise<void> {
    // the options go in the body too: the client may drop query parameters when a body is sent
    const options = { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Background" };
    try {
      await this.d.client.request("DELETE", `${this.jobsPath()}/${name}?propagationPolicy=Background`, { body: options });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
    }
  }

  private async createJob(sj: SeparationJob, log: Logger, traceparent: string | undefined): Promise<void> {
    const name = sj.metadata.name;
    const expiry = this.d.config.flow.presignSeconds;
    const [input, output, manifest] = await Promise.all([
      this.d.store.presignedGet(inputKey(name), expiry),
      this.d.store.presignedPut(outputKey(name), expiry),
      this.d.store.presignedPut(manifestKey(name), expiry),
    ]);
    const body = buildJob(sj, this.d.config.job, { input, output, manifest }, currentTraceparent() ?? traceparent);
    let createdAt = this.d.clock();
    try {
      await this.d.client.request("POST", this.jobsPath(), { body });
      log.info({ job: name }, "Job created");
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err;
      const existing = await this.getJob(name);
      if (!existing) throw new RetryAfter(500, "the Job is being deleted");
      if (controllerOf(existing)?.uid !== sj.metadata.uid) {
        await this.deleteJob(name);
        throw new RetryAfter(1000, "a Job of an earlier SeparationJob of the same name is in the way");
      }
      if (existing.metadata.creationTimestamp) createdAt = new Date(existing.metadata.creationTimestamp);
    }
    this.d.failpoint("job:created");
    await this.write(sj, S.jobCreated(sj, createdAt, name), log);
    this.d.failpoint("job:recorded");
  }

  // ── step 4: the result ────────────────────────────────────────────────────────────────────

  private async recordSeparated(sj: SeparationJob, job: JobView | undefined, jobMissing: boolean, log: Logger): Promise<void> {
    const name = sj.metadata.name;
    const now = this.d.clock();
    const flow = this.d.config.flow;
    const [manifestInfo, out] = await Promise.all([this.d.store.stat(manifestKey(name)), this.d.store.stat(outputKey(name))]);
    if (!manifestInfo || !out) {
      const message = jobMissing
        ? "the Job disappeared before the controller saw it finish, and left no result"
        : "the Job completed without writing its result";
      await this.write(sj, S.failed(sj, now, { class: "Internal", message }), log);
      return;
    }
    let manifest: z.infer<typeof Manifest>;
    try {
      manifest = Manifest.parse(JSON.parse((await this.d.store.getBuffer(manifestKey(name))).toString("utf8")));
    } catch (err) {
      await this.write(
        sj,
        S.failed(sj, now, { class: "Internal", message: `the result manifest is unreadable: ${(err as Error).message.slice(0, 300)}` }),
        log,
      );
      return;
    }
    if (out.size > WHATSAPP_MAX_BYTES) {
      await this.write(
        sj,
        S.failed(sj, now, { class: "OutputTooLarge", message: `the result is ${out.size} bytes, over WhatsApp's ${WHATSAPP_MAX_BYTES}` }),
        log,
      );
      return;
    }
    const result: S.Result = {
      mimeType: manifest.mimeType ?? (out.contentType !== "application/octet-stream" ? out.contentType : mimeTypeOfFormat(sj.spec.output.format)),
      sizeBytes: out.size,
      ...(manifest.mediaSeconds !== undefined ? { mediaSeconds: manifest.mediaSeconds } : {}),
      ...(manifest.separateSeconds !== undefined ? { separateSeconds: manifest.separateSeconds } : {}),
      ...(manifest.realTimeFactor !== undefined ? { realTimeFactor: manifest.realTimeFactor } : {}),
      ...(manifest.device ? { device: manifest.device } : {}),
      // What the job says it ran, so the cache key names the engine and version that made the result.
      model: manifest.model ?? flow.model,
      engine: manifest.engine ?? MODELS[flow.model].engine,
      modelId: manifest.modelId ?? modelId(flow.model),
    };
    await this.write(sj, S.separated(sj, now, result, job?.status?.completionTime ?? now.toISOString()), log);
    this.d.failpoint("separated:recorded");
  }

  // ── the reply, at most once ───────────────────────────────────────────────────────────────

  private recipient(sj: SeparationJob): Recipient {
    return { ...(sj.spec.sender.waId ? { waId: sj.spec.sender.waId } : {}), ...(sj.spec.sender.userId ? { userId: sj.spec.sender.userId } : {}) };
  }

  private failureText(cls: FailureClass): string {
    const f = this.d.config.flow;
    const text = replies.failure[cls];
    if (typeof text === "string") return text;
    return text(cls === "TooLarge" ? f.maxInputMb : f.maxDurationMinutes);
  }

  /**
   * The reply protocol. Nothing is sent unless this pass first wrote reply.state=Sending guarded by
   * the resourceVersion it decided on, so two passes (two replicas in a split brain, or a retry
   * racing a stale cache) cannot both send. Sent and the wamid are written after WhatsApp answers.
   * A crash between the two leaves Sending without a wamid: decide() then waits for a status
   * webhook receipt and otherwise gives up; it never sends again.
   */
  private async sendReply(sj: SeparationJob, kind: S.ReplyKind, log: Logger): Promise<ReconcileResult> {
    const name = sj.metadata.name;
    const pn = sj.spec.message.phoneNumberId;
    let mediaId = sj.status?.reply?.mediaId;
    const mime = sj.status?.result?.mimeType ?? mimeTypeOfFormat(sj.spec.output.format);
    if (kind === "Result" && !mediaId) {
      const out = await this.d.store.stat(outputKey(name));
      if (!out) {
        await this.write(sj, S.failed(sj, this.d.clock(), { class: "Internal", message: "the result vanished from the object store before it was sent" }), log);
        return { action: "SendReply" };
      }
      try {
        mediaId = await this.d.whatsapp.uploadMedia(
          pn,
          await this.d.store.getBuffer(outputKey(name)),
          mime,
          `unmix.${EXTENSION[sj.spec.output.format] ?? "bin"}`,
        );
      } catch (err) {
        if (err instanceof GraphApiError && !err.retryable && err.kind !== "auth" && err.kind !== "permission") {
          await this.write(
            sj,
            S.failed(sj, this.d.clock(), { class: "Internal", message: `WhatsApp refused the result upload: ${err.message} (${err.details ?? err.kind})` }),
            log,
          );
          return { action: "SendReply" };
        }
        if (err instanceof GraphApiError) throw new RetryAfter(err.retryAfterMs ?? 30_000, err.message);
        throw err;
      }
      this.d.failpoint("reply:uploaded");
    }

    // commit the intent: from here on this SeparationJob may have a reply
    const committed = await this.write(sj, S.sending(sj, this.d.clock(), kind, mediaId), log);
    this.d.failpoint("reply:sending");

    const replyTo = sj.spec.message.id;
    const to = this.recipient(sj);
    let messageId: string;
    try {
      if (kind === "Failure") {
        const cls = sj.status?.failure?.class ?? "Internal";
        messageId = await this.d.whatsapp.sendText(pn, to, this.failureText(cls), { replyTo, callbackData: name });
      } else if (sj.spec.output.format === "mp4") {
        messageId = await this.d.whatsapp.sendVideo(pn, to, mediaId as string, { replyTo, callbackData: name });
      } else {
        const voice = sj.spec.media.voice && sj.spec.output.format === "ogg-opus";
        messageId = await this.d.whatsapp.sendAudio(pn, to, mediaId as string, { voice, replyTo, callbackData: name });
      }
    } catch (err) {
      return this.onSendError(committed, kind, err, log);
    }
    this.d.failpoint("reply:sent");
    this.d.metrics.replies.inc({ kind });
    log.info({ messageId, kind }, "reply sent");
    await this.recordSent(committed, messageId, log);
    this.d.failpoint("reply:recorded");
    // ✅ / ❌ on the user's message: best effort (sending the same reaction twice changes nothing)
    await this.d.whatsapp.sendReaction(pn, to, replyTo, kind === "Result" ? "✅" : "❌").catch((err) => log.warn({ err }, "could not react to the message"));
    return { action: "SendReply" };
  }

  /** Writes Sent; a write conflict (say, an annotation was added) is retried while the state is still ours to settle. */
  private async recordSent(committed: SeparationJob, messageId: string, log: Logger): Promise<void> {
    let sj = committed;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.write(sj, S.sent(sj, this.d.clock(), messageId, "response"), log);
        return;
      } catch (err) {
        if (reasonOf(err) !== "Conflict" || attempt >= 10) throw err;
        const fresh = await this.d.sjs.get(sj.metadata.name);
        if (!fresh || fresh.status?.reply?.state === "Sent") return;
        sj = fresh;
      }
    }
  }

  private async onSendError(committed: SeparationJob, kind: S.ReplyKind, err: unknown, log: Logger): Promise<ReconcileResult> {
    const now = this.d.clock();
    const cause = (err as { cause?: { cause?: { code?: string }; code?: string } }).cause;
    const neverConnected = ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN"].includes(cause?.cause?.code ?? cause?.code ?? "");
    const answered = err instanceof GraphApiError && (err.status > 0 || neverConnected);
    if (!answered) {
      // no answer: the message may or may not have gone out; treat it like a crash mid-send
      log.error({ err }, "no answer to the send: its outcome is unknown; waiting for a receipt instead of sending again");
      return { action: "SendReply", requeueAfterMs: this.d.config.flow.replyConfirmMs };
    }
    const e = err as GraphApiError;
    const why = `WhatsApp refused the reply: ${e.message} (${e.details ?? e.kind})`;
    log.warn({ kind: e.kind, code: e.code, status: e.status }, why);
    if (e.retryable || e.kind === "auth" || e.kind === "permission" || e.status === 0) {
      await this.write(committed, S.refused(committed, now, why), log);
      throw new RetryAfter(e.retryAfterMs ?? 30_000, why);
    }
    if (kind === "Result" && (e.kind === "media-rejected" || e.kind === "bad-request")) {
      // the result itself was refused: tell the user it failed instead
      const refused = S.refused(committed, now, why);
      const failure = S.failed({ ...committed, status: { ...committed.status, conditions: refused.conditions } }, now, { class: "Internal", message: why });
      await this.write(committed, { ...refused, ...failure }, log);
      return { action: "SendReply" };
    }
    // the user cannot be reached (outside the 24-hour window, undeliverable, …)
    await this.write(committed, S.replyFailed(committed, now, why), log);
    return { action: "SendReply" };
  }

  // ── step 5: cache, cleanup, done ──────────────────────────────────────────────────────────

  private async finalize(sj: SeparationJob, job: JobView | undefined, log: Logger): Promise<void> {
    const name = sj.metadata.name;
    let cacheKey: string | undefined;
    if (S.statusOf(sj, S.C.Separated) === "True") {
      const key: CacheKey = {
        sha256: normalizeSha256(sj.spec.media.sha256),
        format: sj.spec.output.format,
        model: sj.status?.result?.modelId ?? modelId(this.d.config.flow.model),
      };
      const user = sj.metadata.labels?.[USER_LABEL];
      if (!user) {
        log.warn("no user label: the result is not cached, since it could not be deleted on the user's request");
      } else if (await this.d.store.stat(outputKey(name))) {
        await this.d.cache.record(key, outputKey(name), user, sj.status?.reply?.mediaId);
        cacheKey = resultKey(key);
      } else if (await this.d.store.stat(resultKey(key))) {
        await this.d.cache.addOwner(key, user); // recorded before a crash
        cacheKey = resultKey(key);
      }
      this.d.failpoint("finalize:cached");
    }
    await this.removeStored(name);
    this.d.failpoint("finalize:cleaned");
    if (job && !jobFinished(job)) await this.deleteJob(name);
    const finished = await this.write(sj, S.finalized(sj, this.d.clock(), cacheKey), log);
    this.observeOutcome(finished);
  }

  /** The input and everything the job wrote (policy: source and intermediates deleted after processing). */
  private async removeStored(name: string): Promise<void> {
    const keys = [inputKey(name), outputKey(name), manifestKey(name)];
    for await (const o of this.d.store.list(workPrefix(name))) if (!keys.includes(o.key)) keys.push(o.key);
    await this.d.store.remove(keys);
  }

  /** After the SeparationJob was deleted (a user's "delete", retention): remove what it stored. */
  private async cleanupDeleted(name: string): Promise<void> {
    this.written.delete(name);
    await this.removeStored(name);
  }

  private observeOutcome(sj: SeparationJob): void {
    const c = findCondition(sj.status?.conditions, S.C.Succeeded);
    if (!c) return;
    this.d.metrics.jobs.inc({ outcome: c.status === "True" ? "succeeded" : "failed", reason: c.reason });
    const st = sj.status?.steps ?? {};
    const at = (s: string | undefined) => (s ? Date.parse(s) : undefined);
    const span = (step: "fetch" | "queue" | "separate" | "reply" | "total", from: number | undefined, to: number | undefined) => {
      // the Kubernetes times have whole seconds, ours milliseconds: a step can seem to end before it began
      if (from !== undefined && to !== undefined) this.d.metrics.stepSeconds.observe({ step }, Math.max(0, to - from) / 1000);
    };
    span("fetch", at(sj.metadata.creationTimestamp), at(st.fetchedAt));
    span("queue", at(st.jobCreatedAt), at(st.scheduledAt));
    span("separate", at(st.scheduledAt), at(st.separatedAt));
    span("reply", at(st.separatedAt), at(st.repliedAt));
    span("total", at(sj.spec.message.timestamp), at(st.repliedAt));
  }
}
