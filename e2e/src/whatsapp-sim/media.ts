// The simulator's media: what users sent and what the bot uploaded, each with WhatsApp's lifetimes
// (7 days for received media, 30 days for uploads) and download URLs that expire after 5 minutes.
import { createHash, randomBytes, randomInt } from "node:crypto";

export const MEDIA_URL_TTL_MS = 5 * 60_000;
const RECEIVED_MEDIA_TTL_MS = 7 * 24 * 3600_000;
const UPLOADED_MEDIA_TTL_MS = 30 * 24 * 3600_000;
const MB = 1024 * 1024;

export interface StoredMedia {
  id: string;
  bytes: Buffer;
  mimeType: string;
  /** Raw digest; encoded as base64 or hex where it is shown. */
  sha256: Buffer;
  /** The phone_number_id the media belongs to. */
  owner: string;
  expiresAt: number;
}

/** Media ids look like Meta's: 15–16 digits. */
const newMediaId = () => `${randomInt(1, 10)}${String(randomInt(0, 1e9)).padStart(9, "0")}${String(randomInt(0, 1e6)).padStart(6, "0")}`;

export const baseMimeType = (mimeType: string) => (mimeType.split(";")[0] ?? "").trim().toLowerCase();

export class MediaLibrary {
  private readonly items = new Map<string, StoredMedia>();
  private readonly urls = new Map<string, { mediaId: string; expiresAt: number }>();
  private readonly clock: () => number;
  /** Ids deleted with DELETE /{media-id}, in order. */
  readonly deleted: string[] = [];

  constructor(clock: () => number) {
    this.clock = clock;
  }

  add(bytes: Buffer, mimeType: string, owner: string, how: "received" | "uploaded"): StoredMedia {
    const media = {
      id: newMediaId(),
      bytes,
      mimeType,
      sha256: createHash("sha256").update(bytes).digest(),
      owner,
      expiresAt: this.clock() + (how === "received" ? RECEIVED_MEDIA_TTL_MS : UPLOADED_MEDIA_TTL_MS),
    };
    this.items.set(media.id, media);
    return media;
  }

  /** undefined when unknown, deleted or past its lifetime. */
  get(id: string): StoredMedia | undefined {
    const media = this.items.get(id);
    return media && media.expiresAt > this.clock() ? media : undefined;
  }

  delete(id: string): boolean {
    if (this.get(id) === undefined || !this.items.delete(id)) return false;
    this.deleted.push(id);
    return true;
  }

  /** A fresh lookaside-style download URL, valid for 5 minutes. */
  issueUrl(media: StoredMedia, baseUrl: string): string {
    const hash = randomBytes(12).toString("base64url");
    const expiresAt = this.clock() + MEDIA_URL_TTL_MS;
    this.urls.set(hash, { mediaId: media.id, expiresAt });
    return `${baseUrl}/whatsapp_business/attachments/?mid=${media.id}&ext=${Math.floor(expiresAt / 1000)}&hash=${hash}`;
  }

  /** The media behind a download URL, or undefined when the URL is unknown or has expired. */
  resolveUrl(mid: string, hash: string): StoredMedia | undefined {
    const url = this.urls.get(hash);
    if (!url || url.mediaId !== mid || url.expiresAt <= this.clock()) return undefined;
    return this.get(mid);
  }
}

// What WhatsApp accepts for upload (reference §5), with a look at the first bytes, because Meta
// rejects a file whose content is not what its MIME type says.
const isoBmff = (b: Buffer) => b.subarray(4, 8).toString("latin1") === "ftyp";
const UPLOAD_RULES: Record<string, { maxBytes: number; looksRight: (b: Buffer) => boolean }> = {
  "audio/aac": { maxBytes: 16 * MB, looksRight: (b) => b[0] === 0xff && ((b[1] ?? 0) & 0xf6) === 0xf0 },
  "audio/amr": { maxBytes: 16 * MB, looksRight: (b) => b.subarray(0, 5).toString("latin1") === "#!AMR" },
  "audio/mpeg": { maxBytes: 16 * MB, looksRight: (b) => b.subarray(0, 3).toString("latin1") === "ID3" || (b[0] === 0xff && ((b[1] ?? 0) & 0xe0) === 0xe0) },
  "audio/mp4": { maxBytes: 16 * MB, looksRight: isoBmff },
  // Opus only: WhatsApp plays no other codec in OGG
  "audio/ogg": { maxBytes: 16 * MB, looksRight: (b) => b.subarray(0, 4).toString("latin1") === "OggS" && b.subarray(0, 128).includes("OpusHead") },
  "video/mp4": { maxBytes: 16 * MB, looksRight: isoBmff },
  "video/3gpp": { maxBytes: 16 * MB, looksRight: isoBmff },
};

/** Why WhatsApp would refuse this upload (error 131053), or undefined when it is fine. */
export function uploadRejection(bytes: Buffer, mimeType: string): string | undefined {
  const type = baseMimeType(mimeType);
  const rule = UPLOAD_RULES[type];
  if (!rule) return `Unsupported media type ${type || "(none)"}`;
  if (bytes.length > rule.maxBytes) return `Media file size ${bytes.length} bytes exceeds the ${rule.maxBytes / MB} MB limit for ${type}`;
  if (type === "audio/ogg" && /codecs=/i.test(mimeType) && !/codecs="?opus/i.test(mimeType)) return "OGG audio must be Opus";
  if (!rule.looksRight(bytes)) return `The file content is not ${type}`;
  return undefined;
}
