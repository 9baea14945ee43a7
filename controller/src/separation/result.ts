// Step 4, the result: once the Job is Complete, its manifest becomes status.result (or a failure).
import { LIMITS } from "@unmix/api/limits";
import { MODELS, type ModelName, modelId } from "@unmix/api/models";
import type { SeparationJob } from "@unmix/api/separationjob";
import type { ObjectInfo } from "@unmix/core/object-store";
import { z } from "zod";
import type { JobView } from "../framework/kube/objects.ts";
import type { Classification } from "./classify.ts";
import type { StepContext } from "./context.ts";
import { manifestKey, mimeTypeOfFormat, outputKey } from "./job-spec.ts";
import * as S from "./status.ts";

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

export interface JobOutput {
  /** The manifest's text, or why it could not be read; undefined when the job wrote none. */
  manifest: string | Error | undefined;
  /** The separated media; undefined when the job wrote none. */
  output: Pick<ObjectInfo, "size" | "contentType"> | undefined;
  /** The Job vanished before the controller saw it finish. */
  jobMissing: boolean;
}

/**
 * What the job left becomes the result, as the job reports it (so the cache key names the engine and
 * model that made it; the configured model where an older job says nothing), or the failure: no
 * result, an unreadable manifest, or media over WhatsApp's limit.
 */
export function resultOf(sj: SeparationJob, o: JobOutput, model: ModelName): { result: S.Result } | { failure: Classification } {
  if (o.manifest === undefined || !o.output) {
    const message = o.jobMissing
      ? "the Job disappeared before the controller saw it finish, and left no result"
      : "the Job completed without writing its result";
    return { failure: { class: "Internal", message } };
  }
  let m: z.infer<typeof Manifest>;
  try {
    if (o.manifest instanceof Error) throw o.manifest;
    m = Manifest.parse(JSON.parse(o.manifest));
  } catch (err) {
    return { failure: { class: "Internal", message: `the result manifest is unreadable: ${(err as Error).message.slice(0, 300)}` } };
  }
  const out = o.output;
  if (out.size > LIMITS.whatsappUploadBytes) {
    return { failure: { class: "OutputTooLarge", message: `the result is ${out.size} bytes, over WhatsApp's ${LIMITS.whatsappUploadBytes}` } };
  }
  return {
    result: {
      mimeType: m.mimeType ?? (out.contentType !== "application/octet-stream" ? out.contentType : mimeTypeOfFormat(sj.spec.output.format)),
      sizeBytes: out.size,
      ...(m.mediaSeconds !== undefined ? { mediaSeconds: m.mediaSeconds } : {}),
      ...(m.separateSeconds !== undefined ? { separateSeconds: m.separateSeconds } : {}),
      ...(m.realTimeFactor !== undefined ? { realTimeFactor: m.realTimeFactor } : {}),
      ...(m.device ? { device: m.device } : {}),
      model: m.model ?? model,
      engine: m.engine ?? MODELS[model].engine,
      modelId: m.modelId ?? modelId(model),
    },
  };
}

export async function recordSeparated(ctx: StepContext, sj: SeparationJob, job: JobView | undefined, jobMissing: boolean): Promise<void> {
  const name = sj.metadata.name;
  const now = ctx.clock();
  const [info, output] = await Promise.all([ctx.store.stat(manifestKey(name)), ctx.store.stat(outputKey(name))]);
  const manifest =
    info && output
      ? await ctx.store.getBuffer(manifestKey(name)).then(
          (b) => b.toString("utf8"),
          (err: Error) => err,
        )
      : undefined;
  const r = resultOf(sj, { manifest, output, jobMissing }, ctx.config.flow.model);
  if ("failure" in r) {
    await ctx.write(sj, S.failed(sj, now, r.failure));
    return;
  }
  await ctx.write(sj, S.separated(sj, now, r.result, job?.status?.completionTime ?? now.toISOString()));
  ctx.failpoint("separated:recorded");
}
