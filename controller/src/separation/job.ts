// Step 2, the Job: created with presigned URLs only (input GET, output and manifest PUT, in a Secret
// written first: a pod of the Job never starts without them), named like the SeparationJob
// (AlreadyExists is the lock) and owned by it.
import type { SeparationJob } from "@unmix/api/separationjob";
import { inputKey } from "@unmix/core/result-cache";
import { currentTraceparent } from "../framework/tracing.ts";
import { RetryAfter } from "../framework/workqueue.ts";
import { auditStep, type StepContext } from "./context.ts";
import { jobNameTaken, jobOwnership } from "./decide.ts";
import { buildJob, buildJobSecret, manifestKey, outputKey } from "./job-spec.ts";
import * as S from "./status.ts";

export async function createJob(ctx: StepContext, sj: SeparationJob, traceparent: string | undefined): Promise<void> {
  const name = sj.metadata.name;
  const expiry = ctx.config.flow.presignSeconds;
  const [input, output, manifest] = await Promise.all([
    ctx.store.presignedGet(inputKey(name), expiry),
    ctx.store.presignedPut(outputKey(name), expiry),
    ctx.store.presignedPut(manifestKey(name), expiry),
  ]);
  // replaced when left by a crash: fresh URLs are as good for a pod not started yet
  await ctx.kube.secrets.put(buildJobSecret(sj, { input, output, manifest }));
  const job = buildJob(sj, ctx.config.job, currentTraceparent() ?? traceparent);
  let createdAt = ctx.clock();
  if (await ctx.kube.jobs.create(job)) {
    ctx.log.info({ job: name }, "Job created");
  } else {
    // created before a crash, left by an earlier SeparationJob of the same name, or someone else's
    const existing = await ctx.kube.jobs.get(name);
    if (!existing) throw new RetryAfter(500, "the Job is being deleted");
    const ownership = jobOwnership(existing, sj);
    if (ownership === "Stale") {
      await ctx.kube.jobs.delete(name);
      throw new RetryAfter(1000, "a Job of an earlier SeparationJob of the same name is in the way");
    }
    if (ownership === "Foreign") {
      const failure = jobNameTaken(existing);
      ctx.log.error({ job: name, why: failure.message }, "a Job that is not ours has this SeparationJob's name: failing it, the Job left untouched");
      await ctx.write(sj, S.failed(sj, ctx.clock(), failure));
      return;
    }
    if (existing.metadata.creationTimestamp) createdAt = new Date(existing.metadata.creationTimestamp);
  }
  ctx.failpoint("job:created");
  await auditStep(ctx.audit, name, { event: "job-created" });
  ctx.failpoint("job:audited");
  await ctx.write(sj, S.jobCreated(sj, createdAt, name));
  ctx.failpoint("job:recorded");
}
