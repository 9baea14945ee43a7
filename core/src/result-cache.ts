// The 24-hour result cache (policy promise P12), keyed by the input's sha256 + output format + model id
// (name and version, models.ts: a result of one engine or version is never served as another's).
// Layout in the object store:
//   results/<sha256hex>/<format>.<modelId>      the cleaned media; metadata: WhatsApp media id + when it was uploaded
//                                               (an id WhatsApp issued, no number in it; its copy there is deleted with the entry)
//   owners/<userKey>/<sha256hex>.<format>.<modelId>   an empty marker, so `delete` finds a user's entries
// Expiry is enforced by the controller's garbage collector (object age > TTL), not by bucket
// lifecycle rules, whose day granularity cannot keep a 24-hour promise.

import type { OutputFormat } from "@unmix/api/separationjob";
import type { Logger } from "./log.ts";
import type { ObjectStore } from "./object-store.ts";
import { GraphApiError, type WhatsAppClient } from "./whatsapp.ts";

/** The data policy's 24 hours: the most a TTL setting may say (both services refuse more at start-up). */
export const CACHE_TTL_MAX_SECONDS = 24 * 3600;
export const CACHE_TTL_TOO_LONG = `at most ${CACHE_TTL_MAX_SECONDS} (24 h): the data policy deletes cached results after 24 hours`;

export const RESULTS_PREFIX = "results/";
export const OWNERS_PREFIX = "owners/";
export const INPUTS_PREFIX = "inputs/";
/** A WhatsApp media id we uploaded stays usable for 30 days; re-use it well inside that. */
const MEDIA_ID_REUSE_MS = 29 * 24 * 3600 * 1000;

export interface CacheKey {
  sha256: string; // hex
  format: OutputFormat;
  /** The model id (`htdemucs-4.1.0`, `dfn3-0.1.0`: models.ts) that made or would make the result. */
  model: string;
}

export interface CacheHit {
  objectKey: string;
  contentType: string;
  size: number;
  storedAt: Date;
  /** Still-valid WhatsApp media id of this result, when we have one. */
  whatsappMediaId?: string;
}

export const resultKey = (k: CacheKey) => `${RESULTS_PREFIX}${k.sha256}/${k.format}.${k.model}`;
const ownerKey = (user: string, k: CacheKey) => `${OWNERS_PREFIX}${user}/${k.sha256}.${k.format}.${k.model}`;
export const inputKey = (separationJobName: string) => `${INPUTS_PREFIX}${separationJobName}`;

/** Deletes our upload from WhatsApp's media store (whatsapp.ts mediaDeleter); false when it could not. */
export type MediaDeleter = (whatsappMediaId: string) => Promise<boolean>;

/**
 * DELETE /{media-id} on the Graph API. An id WhatsApp no longer knows (code 100: deleted already,
 * or past its own 30 days) counts as deleted; another failure is logged and the copy left to
 * WhatsApp's 30 days, for the cache entry itself goes at its time whatever WhatsApp answers.
 */
export function whatsappMediaDeleter(client: Pick<WhatsAppClient, "deleteMedia">, log: Logger): MediaDeleter {
  return async (id) => {
    try {
      await client.deleteMedia(id);
      return true;
    } catch (err) {
      if (err instanceof GraphApiError && err.code === 100) return true;
      log.warn({ err, whatsappMediaId: id }, "could not delete a cached result's copy at WhatsApp; WhatsApp drops it after 30 days");
      return false;
    }
  };
}

export interface Expired {
  /** The objects deleted: results and owner markers. */
  keys: string[];
  /** Their WhatsApp media deleted too. */
  whatsappMedia: number;
}

export class ResultCache {
  private readonly store: ObjectStore;
  private readonly ttlMs: number;
  private readonly now: () => Date;
  private readonly deleteMedia: MediaDeleter | undefined;
  /** Without `deleteMedia` the entries' copies at WhatsApp are left to WhatsApp's own 30 days. */
  constructor(store: ObjectStore, ttlMs: number, now: () => Date = () => new Date(), deleteMedia?: MediaDeleter) {
    this.store = store;
    this.ttlMs = ttlMs;
    this.now = now;
    this.deleteMedia = deleteMedia;
  }

  /** Deletes the WhatsApp copies of these results (read from their metadata) before the results themselves go. */
  private async forgetMedia(resultKeys: string[]): Promise<number> {
    if (!this.deleteMedia) return 0;
    let deleted = 0;
    for (const key of resultKeys) {
      const id = (await this.store.stat(key))?.metadata["whatsapp-media-id"];
      if (id && (await this.deleteMedia(id))) deleted++;
    }
    return deleted;
  }

  /** A hit only while younger than the TTL, even if the collector has not run yet. */
  async lookup(k: CacheKey): Promise<CacheHit | undefined> {
    const info = await this.store.stat(resultKey(k));
    if (!info || this.now().getTime() - info.lastModified.getTime() >= this.ttlMs) return undefined;
    const uploadedAt = Number(info.metadata["whatsapp-uploaded-at"] ?? 0);
    const mediaId = info.metadata["whatsapp-media-id"];
    return {
      objectKey: info.key,
      contentType: info.contentType,
      size: info.size,
      storedAt: info.lastModified,
      ...(mediaId && this.now().getTime() - uploadedAt < MEDIA_ID_REUSE_MS ? { whatsappMediaId: mediaId } : {}),
    };
  }

  /** Records a finished result (copied from where the job wrote it) for `user`. Safe to repeat. */
  async record(k: CacheKey, fromKey: string, user: string, whatsappMediaId?: string): Promise<void> {
    const metadata: Record<string, string> = whatsappMediaId
      ? { "whatsapp-media-id": whatsappMediaId, "whatsapp-uploaded-at": String(this.now().getTime()) }
      : {};
    await this.store.copy(fromKey, resultKey(k), metadata);
    await this.addOwner(k, user);
  }

  /** Marks `user` as having received this result (a cache hit for another user's media counts too). */
  async addOwner(k: CacheKey, user: string): Promise<void> {
    await this.store.put(ownerKey(user, k), Buffer.alloc(0), 0, "application/octet-stream");
  }

  /** The owner markers of this user and the cached results they name that still exist. */
  private async resultsOf(user: string): Promise<{ markers: string[]; existing: string[] }> {
    const markers: string[] = [];
    const results: string[] = [];
    for await (const o of this.store.list(`${OWNERS_PREFIX}${user}/`)) {
      markers.push(o.key);
      const [sha, format, ...model] = o.key.slice(`${OWNERS_PREFIX}${user}/`.length).split(".");
      results.push(`${RESULTS_PREFIX}${sha}/${format}.${model.join(".")}`);
    }
    const existing = (await Promise.all(results.map(async (r) => ((await this.store.stat(r)) ? r : undefined)))).filter((r): r is string => !!r);
    return { markers, existing };
  }

  /** How many cached results this user received that are still held (what forgetUser would delete). */
  async countUser(user: string): Promise<number> {
    return (await this.resultsOf(user)).existing.length;
  }

  /** Deletes every cached result this user received (and its WhatsApp copy) and their markers; returns how many results went. */
  async forgetUser(user: string): Promise<number> {
    const { markers, existing } = await this.resultsOf(user);
    await this.forgetMedia(existing);
    await this.store.remove([...existing, ...markers]);
    return existing.length;
  }

  /**
   * Deletes results (with their WhatsApp copies) and owner markers older than the TTL; `before` sees
   * their keys first (the audit trail) and stops the deletion by throwing.
   */
  async expire(before?: (keys: string[]) => Promise<void>): Promise<Expired> {
    const cutoff = this.now().getTime() - this.ttlMs;
    const old: string[] = [];
    for (const prefix of [RESULTS_PREFIX, OWNERS_PREFIX]) {
      for await (const o of this.store.list(prefix)) if (o.lastModified.getTime() <= cutoff) old.push(o.key);
    }
    await before?.(old);
    const whatsappMedia = await this.forgetMedia(old.filter((k) => k.startsWith(RESULTS_PREFIX)));
    await this.store.remove(old);
    return { keys: old, whatsappMedia };
  }
}
