// What every step of the lifecycle works with: the outside systems, the settings, the clock, the
// crash points, and the one way to write status.
import type { SeparationJob } from "@unmix/api/separationjob";
import { type AuditFields, type AuditLog, refOfSeparationJob } from "@unmix/core/audit";
import type { Logger } from "@unmix/core/log";
import type { ObjectStore } from "@unmix/core/object-store";
import type { ResultCache } from "@unmix/core/result-cache";
import type { WhatsAppClient } from "@unmix/core/whatsapp";
import type { ControllerConfig } from "../config.ts";
import type { KubeApi } from "../framework/kube/api.ts";
import { RetryAfter } from "../framework/workqueue.ts";
import type { Metrics } from "../metrics.ts";
import type { FailpointHook } from "./failpoints.ts";
import type { AfterError } from "./graph-errors.ts";
import * as S from "./status.ts";

export interface Services {
  config: ControllerConfig;
  kube: KubeApi;
  store: ObjectStore;
  cache: ResultCache;
  whatsapp: WhatsAppClient;
  metrics: Metrics;
  clock: () => Date;
  failpoint: FailpointHook;
  /** The audit trail (P5): a step is not done before its entry is stored. */
  audit: AuditLog;
}

export interface StepContext extends Services {
  /** The SeparationJob's own logger (its trace id on every line). */
  log: Logger;
  /** Merge-patches /status guarded by the resourceVersion `sj` was read at; records Events for the transitions. */
  write(sj: SeparationJob, patch: S.StatusPatch): Promise<SeparationJob>;
}

/** Appends the entry of a step for the SeparationJob's message (once: deduplicated); throws, and so requeues, when not stored. */
export async function auditStep(audit: AuditLog, sjName: string, fields: Omit<AuditFields, "ref">): Promise<void> {
  await audit.write({ ...fields, ref: refOfSeparationJob(sjName) });
}

/** Carries out what a WhatsApp error means (graph-errors.ts): a failure is written, a retry or back-off thrown to the queue. */
export async function afterError(ctx: StepContext, sj: SeparationJob, err: unknown, after: AfterError): Promise<void> {
  if (after.outcome === "backOff") throw err;
  if (after.outcome === "retry") throw new RetryAfter(after.afterMs, after.why);
  await ctx.write(sj, S.failed(sj, ctx.clock(), after.failure));
}
