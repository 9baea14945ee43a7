// What the worker does with one message (policy promise P3: the type routes it). Audio and video go
// to the result cache (hit: reply at once) or become a SeparationJob; text is a command or gets a
// hint; every other type gets a short explanation. It throws only for failures worth retrying
// (JetStream, the API server, the object store, a temporary WhatsApp error); what retrying cannot fix
// is answered or recorded and returns normally.

import { SeparationJobSpec } from "@unmix/api/separationjob";
import type { SeparationJobs } from "@unmix/core/kube";
import type { Logger } from "@unmix/core/log";
import type { ObjectStore } from "@unmix/core/object-store";
import { replies } from "@unmix/core/replies";
import type { CacheHit, CacheKey, ResultCache } from "@unmix/core/result-cache";
import { normalizeSha256 } from "@unmix/core/sha256";
import { currentTraceparent } from "@unmix/core/spans";
import { GraphApiError, type MediaInfo, type Recipient, type WhatsAppClient } from "@unmix/core/whatsapp";
import type { InboundMessage, ReceiptMessage } from "./envelope.ts";
import { type EraseDeps, eraseUser } from "./erase.ts";
import { type AcceptedMedia, classifyMedia, OUTPUT_MIME_TYPES } from "./media.ts";
import type { Metrics } from "./metrics.ts";
import type { UserKeys, UserState } from "./users.ts";

/** What happened to a message: the metric label and the audit event. */
export type Outcome =
  | "job_created"
  | "job_exists"
  | "cache_hit"
  | "help"
  | "deleted"
  | "stopped"
  | "started"
  | "opted_out"
  | "rate_limited"
  | "unsupported_type"
  | "unsupported_media"
  | "too_large"
  | "media_unavailable"
  | "unknown_text"
  | "ignored"
  | "reply_failed";

export interface HandlerConfig {
  /** Model id (`htdemucs-4.1.0`): the cache key's model part. */
  model: string;
  maxMediaBytes: number;
  jobsPerHour: number;
  /** How long the audit trail keeps an entry, as the `delete` reply states it. */
  auditDays: number;
}

export interface HandlerDeps extends EraseDeps {
  whatsapp: WhatsAppClient;
  store: ObjectStore;
  cache: ResultCache;
  jobs: SeparationJobs;
  users: UserState;
  metrics: Metrics;
  log: Logger;
  config: HandlerConfig;
}

const MB = 1024 * 1024;
/** Message types with nothing to answer: WhatsApp's own notices (e.g. the user changed number). */
const SILENT_TYPES = new Set(["system"]);
const WAITING = "⏳";

const isRetryable = (err: unknown) => err instanceof GraphApiError && err.retryable;

function tryNormalize(sha: string | undefined): string | undefined {
  if (!sha) return undefined;
  try {
    return normalizeSha256(sha);
  } catch {
    return undefined;
  }
}

export class MessageHandler {
  private readonly d: HandlerDeps;
  constructor(d: HandlerDeps) {
    this.d = d;
  }

  /** A status webhook that proves a reply went out: recorded on its SeparationJob while the reply's outcome is open. */
  confirmReply(r: ReceiptMessage): Promise<"recorded" | "unneeded" | "gone"> {
    return this.d.jobs.recordReplyReceipt(r.job, { status: r.status, at: new Date(Number(r.timestamp) * 1000).toISOString() });
  }

  async handle(m: InboundMessage, ref: string): Promise<Outcome> {
    const { users } = this.d;
    const to: Recipient = { ...(m.sender.waId ? { waId: m.sender.waId } : {}), ...(m.sender.userId ? { userId: m.sender.userId } : {}) };
    const keys = users.keysOf(m.sender);
    // blue ticks and "typing…" while we work; a failure here must not cost the user their answer
    const read = this.d.whatsapp.markRead(m.phoneNumberId, m.id, { typing: !SILENT_TYPES.has(m.type) }).catch((err) => this.graphFailed("mark_read", err));
    try {
      return await this.route(m, ref, to, keys);
    } finally {
      await read;
    }
  }

  private async route(m: InboundMessage, ref: string, to: Recipient, keys: UserKeys): Promise<Outcome> {
    const { users } = this.d;
    const reply = (text: string, outcome: Outcome) => this.reply(m, to, text, outcome);
    switch (m.command) {
      case "help":
        if (!(await users.isOptedOut(keys))) await users.touch(keys, m.sender, m.phoneNumberId);
        return reply(replies.help, "help");
      case "delete": {
        const erased = await eraseUser(m.sender, this.d);
        this.d.log.info(
          { ref, results: erased.results, jobs: erased.jobs, entries: erased.keyValueEntries, deadLetters: erased.deadLetters },
          "erased a user's data on request",
        );
        return reply(replies.deleted({ results: erased.results, jobs: erased.jobs, optedOut: erased.optedOut, auditDays: this.d.config.auditDays }), "deleted");
      }
      case "stop":
        await users.optOut(keys);
        return reply(replies.stopped, "stopped");
      case "start":
        await users.optIn(keys);
        await users.touch(keys, m.sender, m.phoneNumberId);
        return reply(replies.started, "started");
    }
    if (SILENT_TYPES.has(m.type)) return "ignored";
    if (await users.isOptedOut(keys)) return reply(replies.optedOut, "opted_out");
    await users.touch(keys, m.sender, m.phoneNumberId);
    if (m.type === "text") return reply(replies.unknownText, "unknown_text");
    if ((m.type === "audio" || m.type === "video") && m.media) return this.media(m, m.media, ref, to, keys);
    if (m.errorCodes?.includes(131052)) return reply(replies.tooLarge(Math.floor(this.d.config.maxMediaBytes / MB)), "too_large");
    return reply(replies.unsupportedType, "unsupported_type");
  }

  private async media(m: InboundMessage, media: NonNullable<InboundMessage["media"]>, ref: string, to: Recipient, keys: UserKeys): Promise<Outcome> {
    const { config, cache, jobs, users } = this.d;
    const reply = (text: string, outcome: Outcome) => this.reply(m, to, text, outcome);
    const accepted = classifyMedia(media.mimeType);
    if (!accepted) return reply(replies.unsupportedMedia(media.mimeType.split(";")[0] || "unknown"), "unsupported_media");

    let info: MediaInfo | undefined;
    let sha256 = tryNormalize(media.sha256);
    if (!sha256) {
      info = await this.mediaInfo(m, media.id);
      if (!info) return reply(replies.failure.MediaUnavailable, "media_unavailable");
      sha256 = tryNormalize(info.sha256);
    }

    // the 24-hour cache (P12): the same input, format and model → the result we already have
    if (sha256) {
      const key: CacheKey = { sha256, format: accepted.format, model: config.model };
      const hit = await cache.lookup(key);
      if (hit) {
        await cache.addOwner(key, keys.primary);
        return this.replyFromCache(m, to, accepted, hit);
      }
    }

    // WhatsApp's webhook carries no size: ask the media endpoint before committing a GPU to it
    info ??= await this.mediaInfo(m, media.id);
    if (!info) return reply(replies.failure.MediaUnavailable, "media_unavailable");
    if (info.fileSize > config.maxMediaBytes) return reply(replies.tooLarge(Math.floor(config.maxMediaBytes / MB)), "too_large");

    const slot = await users.takeJobSlot(keys.primary, ref);
    if (!slot.allowed) return reply(replies.rateLimited(slot.limit), "rate_limited");

    const spec = SeparationJobSpec.parse({
      message: { timestamp: new Date(Number(m.timestamp) * 1000).toISOString(), phoneNumberId: m.phoneNumberId },
      media: { id: media.id, mimeType: media.mimeType || info.mimeType, sha256: media.sha256 ?? info.sha256, kind: accepted.kind, voice: media.voice },
      output: { format: accepted.format },
    });
    const traceparent = currentTraceparent();
    const created = await jobs.create({ spec, sender: { messageId: m.id, ...m.sender }, userKey: keys.primary, ...(traceparent ? { traceparent } : {}) });
    // ⏳ on the user's message until the controller replies (a retry of the same message re-sends it, harmlessly)
    await this.d.whatsapp.sendReaction(m.phoneNumberId, to, m.id, WAITING).catch((err) => this.graphFailed("reaction", err));
    this.d.log.info(
      { ref, job: created.name, created: created.created, kind: accepted.kind, format: accepted.format },
      created.created ? "created a SeparationJob" : "the SeparationJob already exists",
    );
    return created.created ? "job_created" : "job_exists";
  }

  private async replyFromCache(m: InboundMessage, to: Recipient, accepted: AcceptedMedia, hit: CacheHit): Promise<Outcome> {
    const send = (mediaId: string) =>
      accepted.kind === "video"
        ? this.d.whatsapp.sendVideo(m.phoneNumberId, to, mediaId, { replyTo: m.id })
        : this.d.whatsapp.sendAudio(m.phoneNumberId, to, mediaId, { replyTo: m.id, voice: accepted.format === "ogg-opus" && m.media?.voice === true });
    try {
      if (hit.whatsappMediaId) {
        try {
          await send(hit.whatsappMediaId);
          return "cache_hit";
        } catch (err) {
          // the media id was deleted or expired early: fall back to uploading the cached bytes again
          if (!(err instanceof GraphApiError) || err.retryable || (err.kind !== "bad-request" && err.kind !== "media-rejected")) throw err;
          this.graphFailed("send_media", err);
        }
      }
      const bytes = await this.d.store.getBuffer(hit.objectKey);
      const contentType = hit.contentType.startsWith(`${accepted.kind}/`) ? hit.contentType : OUTPUT_MIME_TYPES[accepted.format];
      const mediaId = await this.d.whatsapp.uploadMedia(
        m.phoneNumberId,
        bytes,
        contentType,
        `unmixed.${accepted.format === "ogg-opus" ? "ogg" : accepted.format}`,
      );
      await send(mediaId);
      return "cache_hit";
    } catch (err) {
      if (isRetryable(err) || !(err instanceof GraphApiError)) throw err;
      this.graphFailed("send_media", err);
      return "reply_failed";
    }
  }

  private async mediaInfo(m: InboundMessage, mediaId: string): Promise<MediaInfo | undefined> {
    try {
      return await this.d.whatsapp.getMediaInfo(mediaId, m.phoneNumberId);
    } catch (err) {
      if (isRetryable(err) || !(err instanceof GraphApiError)) throw err;
      this.graphFailed("media_info", err);
      return undefined;
    }
  }

  /** Sends a text quoting the user's message; a refusal retrying cannot fix is recorded, not thrown. */
  private async reply(m: InboundMessage, to: Recipient, text: string, outcome: Outcome): Promise<Outcome> {
    try {
      await this.d.whatsapp.sendText(m.phoneNumberId, to, text, { replyTo: m.id });
      return outcome;
    } catch (err) {
      if (isRetryable(err) || !(err instanceof GraphApiError)) throw err;
      this.graphFailed("send_text", err);
      return "reply_failed";
    }
  }

  private graphFailed(call: string, err: unknown): void {
    const kind = err instanceof GraphApiError ? err.kind : "network";
    this.d.metrics.graphErrors.inc({ call, kind });
    const e =
      err instanceof GraphApiError ? { code: err.code, kind: err.kind, status: err.status, fbtraceId: err.fbtraceId } : { message: (err as Error).message };
    this.d.log.warn({ call, err: e }, "WhatsApp API call failed");
  }
}
