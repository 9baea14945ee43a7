// Step 1, the media: streamed from WhatsApp (a 404 gets a fresh URL once, inside the client), size
// capped and sha256 checked as it flows, into inputs/<sj> with its sha256 in the metadata, so a
// retry after a crash finds it and skips the download. Never whole in memory.
import type { SeparationJob } from "@unmix/api/separationjob";
import { inputKey } from "@unmix/core/result-cache";
import { normalizeSha256 } from "@unmix/core/sha256";
import { GraphApiError, MediaHostRefusedError, MediaIntegrityError, MediaTooLargeError } from "@unmix/core/whatsapp";
import type { Classification } from "./classify.ts";
import { afterError, type StepContext } from "./context.ts";
import { type AfterError, ourToken } from "./graph-errors.ts";
import { requireSender } from "./sender.ts";
import * as S from "./status.ts";

const fail = (cls: Classification["class"], message: string): AfterError => ({ outcome: "fail", failure: { class: cls, message } });

/**
 * What a failed fetch means. `ageMs` is how long ago the SeparationJob was created: WhatsApp's
 * retryable errors, and our own token's, are retried until `deadlineMs`; the media WhatsApp no
 * longer has, or will not give, is MediaUnavailable at once.
 */
export function afterFetchError(err: unknown, ageMs: number, deadlineMs: number): AfterError {
  if (err instanceof MediaTooLargeError) return fail("TooLarge", `the media is larger than ${err.maxBytes} bytes`);
  if (err instanceof MediaIntegrityError) return fail("MediaUnavailable", err.message);
  // a media URL on a host not allowed to see the token: nothing was fetched, and retrying cannot change where it points
  if (err instanceof MediaHostRefusedError) return fail("MediaUnavailable", err.message);
  if (!(err instanceof GraphApiError)) return { outcome: "backOff" };
  const ours = ourToken(err);
  if (!err.retryable && !ours) return fail("MediaUnavailable", `WhatsApp: ${err.message} (${err.kind}, code ${err.code ?? err.status})`);
  if (ageMs >= deadlineMs) return fail("MediaUnavailable", `WhatsApp kept failing for ${Math.round(ageMs / 1000)} s: ${err.message} (${err.kind})`);
  return { outcome: "retry", afterMs: err.retryAfterMs ?? (ours ? 30_000 : 1000), why: err.message };
}

export async function fetchMedia(ctx: StepContext, sj: SeparationJob): Promise<void> {
  // no media fetched, no GPU spent for a message nobody can be answered for
  if (!(await requireSender(ctx, sj))) return;
  const key = inputKey(sj.metadata.name);
  let hex: string;
  try {
    hex = normalizeSha256(sj.spec.media.sha256);
  } catch {
    const message = "the media's sha256 in the spec is neither hex nor base64 of 32 bytes";
    await ctx.write(sj, S.failed(sj, ctx.clock(), { class: "MediaUnavailable", message }));
    return;
  }
  const existing = await ctx.store.stat(key);
  let bytes: number;
  if (existing && existing.metadata.sha256 === hex) {
    bytes = existing.size; // stored before a crash: the same bytes, checked then
  } else {
    const started = performance.now();
    try {
      // streamed from WhatsApp into the object store: the object completes only if the sha256 matched
      const media = await ctx.whatsapp.fetchMedia(
        sj.spec.media.id,
        { maxBytes: ctx.config.flow.maxInputBytes, phoneNumberId: sj.spec.message.phoneNumberId, expectedSha256: sj.spec.media.sha256 },
        (body, { size, info }) =>
          ctx.store.put(key, body, size, info.mimeType || sj.spec.media.mimeType, { sha256: hex, "separationjob-uid": sj.metadata.uid ?? "" }),
      );
      bytes = media.size;
      ctx.log.info({ bytes, ms: Math.round(performance.now() - started) }, "media fetched from WhatsApp and stored");
    } catch (err) {
      const now = ctx.clock();
      const age = now.getTime() - Date.parse(sj.metadata.creationTimestamp ?? now.toISOString());
      await afterError(ctx, sj, err, afterFetchError(err, age, ctx.config.flow.fetchDeadlineMs));
      return;
    }
  }
  ctx.failpoint("fetch:stored");
  await ctx.write(sj, S.fetched(sj, ctx.clock(), { inputKey: key, bytes }));
  ctx.failpoint("fetch:recorded");
}
