// Step 5, the reply, at most once: the result (uploaded to WhatsApp, then sent quoting the user's
// message) or the failure notice, never both, then a ✅ or ❌ reaction.
import { type FailureClass, type Sender, type SeparationJob, senderSecretName } from "@unmix/api/separationjob";
import { apiReason } from "@unmix/core/kube-errors";
import { replies } from "@unmix/core/replies";
import { GraphApiError, type Recipient } from "@unmix/core/whatsapp";
import type { FlowSettings } from "../config.ts";
import { RetryAfter } from "../framework/workqueue.ts";
import { afterError, type StepContext } from "./context.ts";
import { type AfterError, ourToken } from "./graph-errors.ts";
import { mimeTypeOfFormat, outputKey } from "./job-spec.ts";
import { readSender } from "./sender.ts";
import * as S from "./status.ts";

const EXTENSION: Record<string, string> = { "ogg-opus": "ogg", mp3: "mp3", m4a: "m4a", mp4: "mp4" };

/** The result as an upload to WhatsApp: its type and a file name with the right extension. */
export function resultUpload(sj: SeparationJob): { mimeType: string; filename: string } {
  const format = sj.spec.output.format;
  return { mimeType: sj.status?.result?.mimeType ?? mimeTypeOfFormat(format), filename: `unmix.${EXTENSION[format] ?? "bin"}` };
}

/** What the user is told about a failure: plain words, what to do (`replies.failure`), with our limits. */
export function failureText(cls: FailureClass, flow: Pick<FlowSettings, "maxInputMb" | "maxDurationMinutes">): string {
  const text = replies.failure[cls];
  if (typeof text === "string") return text;
  return text(cls === "TooLarge" ? flow.maxInputMb : flow.maxDurationMinutes);
}

export type ReplyMessage = { type: "text"; body: string } | { type: "video"; mediaId: string } | { type: "audio"; mediaId: string; voice: boolean };

/** The message: the failure notice as text; the result as a video for a video, as a voice note for a voice note, else as audio. */
export function replyMessage(sj: SeparationJob, kind: S.ReplyKind, mediaId: string | undefined, flow: Parameters<typeof failureText>[1]): ReplyMessage {
  if (kind === "Failure") return { type: "text", body: failureText(sj.status?.failure?.class ?? "Internal", flow) };
  const format = sj.spec.output.format;
  if (format === "mp4") return { type: "video", mediaId: mediaId as string };
  return { type: "audio", mediaId: mediaId as string, voice: sj.spec.media.voice && format === "ogg-opus" };
}

/** A failed upload of the result: refused for good (the user gets the failure notice), or retried. */
export function afterUploadError(err: unknown): AfterError {
  if (!(err instanceof GraphApiError)) return { outcome: "backOff" };
  if (!err.retryable && !ourToken(err)) {
    return { outcome: "fail", failure: { class: "Internal", message: `WhatsApp refused the result upload: ${err.message} (${err.details ?? err.kind})` } };
  }
  return { outcome: "retry", afterMs: err.retryAfterMs ?? 30_000, why: err.message };
}

export type AfterSendError =
  /** No answer: the message may or may not have gone out; treated like a crash mid-send (wait for a receipt). */
  | { outcome: "unknown" }
  /** WhatsApp answered and sent nothing (rate limit, 5xx, our token): send again later. */
  | { outcome: "refused"; why: string; retryAfterMs: number }
  /** The result itself was refused: the user is told it failed instead. */
  | { outcome: "resultRejected"; why: string }
  /** The user cannot be reached (outside the 24-hour window, undeliverable, …). */
  | { outcome: "unreachable"; why: string };

const NEVER_CONNECTED = ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN"];

export function afterSendError(err: unknown, kind: S.ReplyKind): AfterSendError {
  const cause = (err as { cause?: { cause?: { code?: string }; code?: string } }).cause;
  const neverConnected = NEVER_CONNECTED.includes(cause?.cause?.code ?? cause?.code ?? "");
  const answered = err instanceof GraphApiError && (err.status > 0 || neverConnected);
  if (!answered) return { outcome: "unknown" };
  const why = `WhatsApp refused the reply: ${err.message} (${err.details ?? err.kind})`;
  if (err.retryable || ourToken(err) || err.status === 0) return { outcome: "refused", why, retryAfterMs: err.retryAfterMs ?? 30_000 };
  if (kind === "Result" && (err.kind === "media-rejected" || err.kind === "bad-request")) return { outcome: "resultRejected", why };
  return { outcome: "unreachable", why };
}

const recipient = (sender: Sender): Recipient => ({
  ...(sender.waId ? { waId: sender.waId } : {}),
  ...(sender.userId ? { userId: sender.userId } : {}),
});

/**
 * The reply protocol. Nothing is sent unless this pass first wrote reply.state=Sending guarded by the
 * resourceVersion it decided on, so two passes (two replicas in a split brain, or a retry racing a
 * stale cache) cannot both send. Sent and the wamid are written after WhatsApp answers. A crash
 * between the two leaves Sending: decide() then waits for a status-webhook receipt, and without one
 * sends once more (`resend`), never a third time. Resolves with when to look again, if not at once.
 */
export async function sendReply(ctx: StepContext, sj: SeparationJob, kind: S.ReplyKind, resend = false): Promise<number | undefined> {
  const name = sj.metadata.name;
  const pn = sj.spec.message.phoneNumberId;
  const sender = await readSender(ctx, sj);
  if (!sender) {
    await ctx.write(sj, S.replyFailed(sj, ctx.clock(), `no valid sender Secret ${senderSecretName(name)}: nobody to reply to`));
    return undefined;
  }
  let mediaId = sj.status?.reply?.mediaId;
  if (kind === "Result" && !mediaId) {
    const stored = await ctx.store.stat(outputKey(name));
    if (!stored) {
      await ctx.write(sj, S.failed(sj, ctx.clock(), { class: "Internal", message: "the result vanished from the object store before it was sent" }));
      return undefined;
    }
    const { mimeType, filename } = resultUpload(sj);
    try {
      // streamed from the object store to WhatsApp, never whole in memory
      mediaId = await ctx.whatsapp.uploadMedia(pn, { body: await ctx.store.get(outputKey(name)), size: stored.size }, mimeType, filename);
    } catch (err) {
      await afterError(ctx, sj, err, afterUploadError(err));
      return undefined;
    }
    ctx.failpoint("reply:uploaded");
  }

  // commit the intent: from here on this SeparationJob may have a reply
  const committed = await ctx.write(sj, S.sending(sj, ctx.clock(), kind, mediaId, resend));
  ctx.failpoint("reply:sending");

  const replyTo = sender.messageId;
  const to = recipient(sender);
  const options = { replyTo, callbackData: name };
  const message = replyMessage(sj, kind, mediaId, ctx.config.flow);
  // the reply's wamid is not kept: it embeds the user's number, and nothing reads it
  try {
    if (message.type === "text") await ctx.whatsapp.sendText(pn, to, message.body, options);
    else if (message.type === "video") await ctx.whatsapp.sendVideo(pn, to, message.mediaId, options);
    else await ctx.whatsapp.sendAudio(pn, to, message.mediaId, { voice: message.voice, ...options });
  } catch (err) {
    return onSendError(ctx, committed, kind, err);
  }
  ctx.failpoint("reply:sent");
  ctx.metrics.replies.inc({ kind });
  ctx.log.info({ kind }, "reply sent");
  await recordSent(ctx, committed);
  ctx.failpoint("reply:recorded");
  // ✅ / ❌ on the user's message: best effort (sending the same reaction twice changes nothing)
  await ctx.whatsapp.sendReaction(pn, to, replyTo, kind === "Result" ? "✅" : "❌").catch((err) => ctx.log.warn({ err }, "could not react to the message"));
  return undefined;
}

/** Writes Sent; a write conflict (say, an annotation was added) is retried while the state is still ours to settle. */
async function recordSent(ctx: StepContext, committed: SeparationJob): Promise<void> {
  let sj = committed;
  for (let attempt = 0; ; attempt++) {
    try {
      await ctx.write(sj, S.sent(sj, ctx.clock(), "response"));
      return;
    } catch (err) {
      if (apiReason(err) !== "Conflict" || attempt >= 10) throw err;
      const fresh = await ctx.kube.separationJobs.get(sj.metadata.name);
      if (!fresh || fresh.status?.reply?.state === "Sent") return;
      sj = fresh;
    }
  }
}

async function onSendError(ctx: StepContext, committed: SeparationJob, kind: S.ReplyKind, err: unknown): Promise<number | undefined> {
  const now = ctx.clock();
  const after = afterSendError(err, kind);
  if (after.outcome === "unknown") {
    ctx.log.error({ err }, "no answer to the send: its outcome is unknown; waiting for a receipt instead of sending again");
    return ctx.config.flow.replyConfirmMs;
  }
  const e = err as GraphApiError;
  // our own token refused: nobody gets a reply until someone renews it (the alert's log line)
  if (ourToken(e)) ctx.log.error({ kind: e.kind, code: e.code, status: e.status }, `${after.why}: the access token was refused; renew it`);
  else ctx.log.warn({ kind: e.kind, code: e.code, status: e.status }, after.why);
  switch (after.outcome) {
    case "refused":
      await ctx.write(committed, S.refused(committed, now, after.why, after.retryAfterMs));
      throw new RetryAfter(after.retryAfterMs, after.why);
    case "resultRejected": {
      const refused = S.refused(committed, now, after.why);
      const failure = S.failed({ ...committed, status: { ...committed.status, conditions: refused.conditions } }, now, {
        class: "Internal",
        message: after.why,
      });
      await ctx.write(committed, { ...refused, ...failure });
      return undefined;
    }
    case "unreachable":
      await ctx.write(committed, S.replyFailed(committed, now, after.why));
      return undefined;
  }
}
