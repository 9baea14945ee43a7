// Step 6, done: the result cached for the user (24 hours), the input and everything the job wrote
// deleted, the sender and URL Secrets deleted, a Job still waiting deleted, Succeeded written; and
// the step durations measured.
import { findCondition } from "@unmix/api/conditions";
import { modelId } from "@unmix/api/models";
import { type SeparationJob, senderSecretName, USER_LABEL } from "@unmix/api/separationjob";
import type { ObjectStore } from "@unmix/core/object-store";
import { type CacheKey, inputKey, resultKey } from "@unmix/core/result-cache";
import { normalizeSha256 } from "@unmix/core/sha256";
import { type JobView, jobFinished } from "../framework/kube/objects.ts";
import { exemplar } from "../framework/tracing.ts";
import type { Step } from "../metrics.ts";
import { auditStep, type StepContext } from "./context.ts";
import { jobSecretName, manifestKey, outputKey, workPrefix } from "./job-spec.ts";
import * as S from "./status.ts";

/** How long each step took, in seconds, from the times in the status; a step not reached is left out. */
export function stepSeconds(sj: SeparationJob): Partial<Record<Step, number>> {
  const st = sj.status?.steps ?? {};
  const at = (s: string | undefined) => (s ? Date.parse(s) : undefined);
  const spans: [Step, number | undefined, number | undefined][] = [
    ["fetch", at(sj.metadata.creationTimestamp), at(st.fetchedAt)],
    ["queue", at(st.jobCreatedAt), at(st.scheduledAt)],
    ["separate", at(st.scheduledAt), at(st.separatedAt)],
    ["reply", at(st.separatedAt), at(st.repliedAt)],
    ["total", at(sj.spec.message.timestamp), at(st.repliedAt)],
  ];
  const seconds: Partial<Record<Step, number>> = {};
  // the Kubernetes times have whole seconds, ours milliseconds: a step can seem to end before it began
  for (const [step, from, to] of spans) if (from !== undefined && to !== undefined) seconds[step] = Math.max(0, to - from) / 1000;
  return seconds;
}

export async function finalize(ctx: StepContext, sj: SeparationJob, job: JobView | undefined): Promise<void> {
  const name = sj.metadata.name;
  let cacheKey: string | undefined;
  if (S.statusOf(sj, S.C.Separated) === "True") {
    const key: CacheKey = {
      sha256: normalizeSha256(sj.spec.media.sha256),
      format: sj.spec.output.format,
      model: sj.status?.result?.modelId ?? modelId(ctx.config.flow.model),
    };
    const user = sj.metadata.labels?.[USER_LABEL];
    if (!user) {
      ctx.log.warn("no user label: the result is not cached, since it could not be deleted on the user's request");
    } else if (await ctx.store.stat(outputKey(name))) {
      await ctx.cache.record(key, outputKey(name), user, sj.status?.reply?.mediaId);
      cacheKey = resultKey(key);
    } else if (await ctx.store.stat(resultKey(key))) {
      await ctx.cache.addOwner(key, user); // recorded before a crash
      cacheKey = resultKey(key);
    }
    ctx.failpoint("finalize:cached");
  }
  await removeStored(ctx.store, name);
  // who the user is and the Job's URLs are needed no more (the owner reference would take them only with the SeparationJob, days later)
  await Promise.all([ctx.kube.secrets.delete(senderSecretName(name)), ctx.kube.secrets.delete(jobSecretName(name))]);
  ctx.failpoint("finalize:cleaned");
  if (job && !jobFinished(job)) await ctx.kube.jobs.delete(name);
  // the audit trail before Succeeded is written: a refused entry repeats the step, never skips it
  const failure = sj.status?.failure;
  const reply = replyOutcome(sj);
  await auditStep(ctx.audit, name, failure ? { event: "failed", class: failure.class, reason: reply } : { event: "replied", reason: reply });
  await auditStep(ctx.audit, name, { event: "input-deleted", reason: "finished" });
  ctx.failpoint("finalize:audited");
  const finished = await ctx.write(sj, S.finalized(sj, ctx.clock(), cacheKey));
  const succeeded = findCondition(finished.status?.conditions, S.C.Succeeded);
  if (!succeeded) return;
  ctx.metrics.jobs.inc({ outcome: succeeded.status === "True" ? "succeeded" : "failed", reason: succeeded.reason });
  const trace = exemplar();
  for (const [step, value] of Object.entries(stepSeconds(finished))) ctx.metrics.stepSeconds.observe({ labels: { step }, value, exemplarLabels: trace });
  const rtf = finished.status?.result?.realTimeFactor;
  if (succeeded.status === "True" && rtf !== undefined) ctx.metrics.realTimeFactor.observe(rtf);
}

/** How the reply ended, for the audit trail: sent, unconfirmed (a send whose outcome is unknown), failed or none. */
function replyOutcome(sj: SeparationJob): string {
  if (sj.status?.reply?.state === "Sent") return "sent";
  const reason = S.reasonOf(sj, S.C.Replied);
  if (reason === "ReplyUnconfirmed") return "unconfirmed";
  if (reason === "ReplyFailed") return "failed";
  return "none";
}

/** The input and everything the job wrote (policy: source and intermediates deleted after processing). */
export async function removeStored(store: ObjectStore, name: string): Promise<void> {
  const keys = [inputKey(name), outputKey(name), manifestKey(name)];
  for await (const o of store.list(workPrefix(name))) if (!keys.includes(o.key)) keys.push(o.key);
  await store.remove(keys);
}
