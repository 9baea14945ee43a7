// The WhatsApp Cloud API client: the only module that talks to Meta's Graph API. It is narrow on
// purpose (the calls the bot makes), turns Meta's errors into one typed error that says whether and
// when to retry, and logs nothing, so it cannot leak a phone number. Also the webhook signature
// helpers, shared by the ingress (verify) and the simulator (sign).
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { Readable, Transform } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { z } from "zod";
import { env } from "./config.ts";
import { normalizeSha256 } from "./sha256.ts";

/** Where Meta's media URLs point (reference §4: `https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=…`). */
export const DEFAULT_MEDIA_HOSTS = ["lookaside.fbsbx.com"] as const;

export const WhatsAppConfig = z.object({
  WHATSAPP_API_URL: env.url().default("https://graph.facebook.com"),
  WHATSAPP_API_VERSION: z
    .string()
    .regex(/^v\d+\.\d+$/, "a Graph API version such as v24.0")
    .default("v24.0"),
  WHATSAPP_ACCESS_TOKEN: z.string().min(1),
  /**
   * Hosts a media URL may name: the access token goes to these (over HTTPS) and to the Graph API
   * itself, nowhere else (P4). Meta serves media from lookaside.fbsbx.com (reference §4).
   */
  WHATSAPP_MEDIA_HOSTS: z
    .string()
    .default(DEFAULT_MEDIA_HOSTS.join(","))
    .transform((v) =>
      v
        .split(",")
        .map((h) => h.trim().toLowerCase())
        .filter(Boolean),
    )
    .pipe(z.array(z.string().regex(/^[a-z0-9.-]+$/, "a host name, without scheme, port or path")).min(1)),
});
export type WhatsAppConfig = z.infer<typeof WhatsAppConfig>;

export interface WhatsAppClientOptions {
  /** e.g. https://graph.facebook.com (or the simulator's URL) */
  baseUrl: string;
  /** Graph API version, e.g. v24.0 */
  version: string;
  accessToken: string;
  /** Hosts (HTTPS) a media URL may name besides the API's own origin; default DEFAULT_MEDIA_HOSTS. */
  mediaHosts?: readonly string[];
  userAgent?: string;
  fetch?: typeof globalThis.fetch;
  /** Per API call; media downloads get `downloadTimeoutMs`. */
  timeoutMs?: number;
  downloadTimeoutMs?: number;
}

/** Who a message goes to: the user's wa_id, or their business-scoped user id when that is all we know. */
export interface Recipient {
  waId?: string;
  userId?: string;
}

export interface MediaInfo {
  id: string;
  /** Lives 5 minutes; download it with `downloadMedia`. */
  url: string;
  mimeType: string;
  /** As Meta sent it: base64 or hex. */
  sha256: string;
  fileSize: number;
}

export interface Template {
  name: string;
  languageCode: string;
  /** Positional `{{1}}`, `{{2}}`… values of the template's body. */
  bodyParameters?: string[];
}

export interface WhatsAppClient {
  getMediaInfo(mediaId: string, phoneNumberId?: string): Promise<MediaInfo>;
  /** Throws MediaUrlExpiredError on 404: get a fresh URL with getMediaInfo. */
  downloadMedia(url: string, options: { maxBytes: number }): Promise<Buffer>;
  /**
   * getMediaInfo + the download as a stream handed to `consume` (e.g. into the object store), with
   * one URL refresh. Never whole in memory: the size is capped while it flows, and the sha256 (the
   * one WhatsApp announces, and `expectedSha256`) checked before the last chunk is let through, so
   * a consumer that stores what it reads never completes an object with the wrong bytes. `consume`
   * sees a too-large, interrupted or mismatching download as its stream's error; fetchMedia then
   * rejects with that error. Resolves once `consume` has read it all.
   */
  fetchMedia(
    mediaId: string,
    options: { maxBytes: number; phoneNumberId?: string; expectedSha256?: string },
    consume: (body: Readable, media: { size: number; info: MediaInfo }) => Promise<void>,
  ): Promise<{ size: number; info: MediaInfo }>;
  /** Returns the new media id (usable for 30 days). A stream of known size is sent as it is read. */
  uploadMedia(phoneNumberId: string, media: Uint8Array | { body: Readable; size: number }, mimeType: string, filename: string): Promise<string>;
  deleteMedia(mediaId: string): Promise<void>;
  /**
   * Each send returns the wamid of the message sent. `callbackData` goes out as
   * biz_opaque_callback_data and comes back in the message's status webhooks.
   */
  sendText(phoneNumberId: string, to: Recipient, body: string, options?: { replyTo?: string; callbackData?: string }): Promise<string>;
  sendAudio(phoneNumberId: string, to: Recipient, mediaId: string, options?: { voice?: boolean; replyTo?: string; callbackData?: string }): Promise<string>;
  sendVideo(phoneNumberId: string, to: Recipient, mediaId: string, options?: { caption?: string; replyTo?: string; callbackData?: string }): Promise<string>;
  /** An empty emoji removes our reaction. */
  sendReaction(phoneNumberId: string, to: Recipient, messageId: string, emoji: string): Promise<string>;
  /** The only kind of message allowed outside the 24-hour customer-service window. */
  sendTemplate(phoneNumberId: string, to: Recipient, template: Template): Promise<string>;
  /**
   * The review status of a message template in one language (APPROVED, PENDING, REJECTED, PAUSED,
   * DISABLED…), from GET /{waba-id}/message_templates; undefined when there is no such template.
   */
  templateStatus(businessAccountId: string, name: string, languageCode: string): Promise<string | undefined>;
  /** The account's APPROVED templates (the first 100), for an operator to pick one from. */
  approvedTemplates(businessAccountId: string): Promise<{ name: string; languageCode: string }[]>;
  /** Blue ticks; with `typing` the user also sees "typing…" until we reply (25 s at most). */
  markRead(phoneNumberId: string, messageId: string, options?: { typing?: boolean }): Promise<void>;
}

// ── errors ────────────────────────────────────────────────────────────────────────────────────

/** What a Graph error means for the caller (reference §8). */
export type GraphErrorKind =
  | "auth" // token expired or invalid: renew it
  | "permission"
  | "rate-limit"
  | "pair-rate-limit" // too many messages to one user: wait 4^X s
  | "temporary"
  | "outside-window" // 24 h window closed: only a template may be sent
  | "undeliverable"
  | "media-unavailable" // the user's media cannot be downloaded (e.g. > 100 MB)
  | "media-rejected" // our upload or the media in our message was refused
  | "bad-request"
  | "withheld"
  | "template"
  | "restricted"
  | "unknown";

function kindOf(code: number | undefined, status: number): GraphErrorKind {
  switch (code) {
    case 0:
    case 190:
      return "auth";
    case 10:
    case 131005:
      return "permission";
    case 1:
    case 2:
    case 131000:
    case 131016:
    case 133004:
      return "temporary";
    case 4:
    case 80007:
    case 130429:
    case 131057:
      return "rate-limit";
    case 131056:
      return "pair-rate-limit";
    case 131047:
      return "outside-window";
    case 131026:
      return "undeliverable";
    case 131052:
      return "media-unavailable";
    case 131053:
      return "media-rejected";
    case 100:
    case 131008:
    case 131009:
      return "bad-request";
    case 131049:
    case 131050:
      return "withheld";
    case 368:
    case 131031:
      return "restricted";
  }
  if (code !== undefined && code >= 200 && code <= 299) return "permission";
  if (code !== undefined && code >= 132000 && code <= 132016) return "template";
  // no Graph error in the body (a proxy, a network failure): judge by the HTTP status
  if (status === 0 || status === 429 || status >= 500) return status === 429 ? "rate-limit" : "temporary";
  if (status === 401) return "auth";
  if (status === 403) return "permission";
  return "unknown";
}

export interface GraphErrorFields {
  /** HTTP status; 0 when no response arrived. */
  status: number;
  /** Meta's error code; undefined when the response carried no Graph error. */
  code: number | undefined;
  subcode?: number;
  details?: string;
  fbtraceId?: string;
}

export class GraphApiError extends Error implements GraphErrorFields {
  readonly status: number;
  readonly code: number | undefined;
  readonly subcode?: number;
  readonly details?: string;
  readonly fbtraceId?: string;
  readonly kind: GraphErrorKind;
  readonly retryable: boolean;
  /** The wait before the first retry; see retryDelayMs for later ones. */
  readonly retryAfterMs?: number;

  constructor(message: string, fields: GraphErrorFields, options?: ErrorOptions) {
    super(message, options);
    this.name = "GraphApiError";
    this.status = fields.status;
    this.code = fields.code;
    this.subcode = fields.subcode;
    this.details = fields.details;
    this.fbtraceId = fields.fbtraceId;
    this.kind = kindOf(fields.code, fields.status);
    this.retryable = this.kind === "temporary" || this.kind === "rate-limit" || this.kind === "pair-rate-limit";
    this.retryAfterMs = this.retryDelayMs(0);
  }

  /** How long to wait before retry number `attempt` (0-based); undefined when retrying cannot help. */
  retryDelayMs(attempt: number): number | undefined {
    if (!this.retryable) return undefined;
    if (this.code === 131056) return 4 ** attempt * 1000; // Meta's rule for the pair rate: 4^X seconds
    if (this.code === 131057) return 60_000; // the number is being upgraded for at most a minute
    if (this.code === 4 || this.code === 80007) return Math.min(60_000 * 2 ** attempt, 3_600_000); // hourly app quota
    return Math.min(1000 * 2 ** attempt, 60_000);
  }
}

/** The media URL is older than its 5 minutes (or was revoked): ask getMediaInfo for a new one. */
export class MediaUrlExpiredError extends Error {
  constructor() {
    super("the WhatsApp media URL has expired; fetch a new one by media id");
    this.name = "MediaUrlExpiredError";
  }
}

export class MediaTooLargeError extends Error {
  readonly maxBytes: number;
  constructor(maxBytes: number) {
    super(`the media is larger than ${maxBytes} bytes`);
    this.name = "MediaTooLargeError";
    this.maxBytes = maxBytes;
  }
}

/** The downloaded bytes do not hash to the sha256 WhatsApp announced. */
/** A media URL naming a host the access token must not go to: nothing was sent there. */
export class MediaHostRefusedError extends Error {
  readonly host: string;
  constructor(host: string) {
    super(`refused to send the access token to ${host}, which is neither the Graph API nor an allowed media host (WHATSAPP_MEDIA_HOSTS)`);
    this.name = "MediaHostRefusedError";
    this.host = host;
  }
}

export class MediaIntegrityError extends Error {
  constructor() {
    super("the downloaded media does not match its sha256");
    this.name = "MediaIntegrityError";
  }
}

const GraphErrorBody = z.object({
  error: z.object({
    message: z.string().optional(),
    code: z.number().int(),
    error_subcode: z.number().int().optional(),
    error_data: z.object({ details: z.string().optional() }).loose().optional(),
    fbtrace_id: z.string().optional(),
  }),
});

async function errorFrom(res: Response): Promise<GraphApiError> {
  const text = await res.text().catch(() => "");
  let parsed: z.infer<typeof GraphErrorBody> | undefined;
  try {
    parsed = GraphErrorBody.parse(JSON.parse(text));
  } catch {
    parsed = undefined;
  }
  if (!parsed) return new GraphApiError(`WhatsApp API answered HTTP ${res.status}`, { status: res.status, code: undefined });
  const e = parsed.error;
  return new GraphApiError(e.message ?? `WhatsApp API error ${e.code}`, {
    status: res.status,
    code: e.code,
    subcode: e.error_subcode,
    details: e.error_data?.details,
    fbtraceId: e.fbtrace_id,
  });
}

// ── responses ─────────────────────────────────────────────────────────────────────────────────

const MediaInfoBody = z.object({
  id: z.string(),
  url: z.string().url(),
  mime_type: z.string(),
  sha256: z.string(),
  // a string in Meta's examples; accept a number too
  file_size: z.union([z.string().regex(/^\d+$/), z.number().int()]).transform(Number),
});
const SendBody = z.object({ messages: z.tuple([z.object({ id: z.string() })], z.unknown()) });
const UploadBody = z.object({ id: z.string() });
const Success = z.object({ success: z.literal(true) });
// Meta's `name` filter also matches other names that contain it: the exact match is picked here
const TemplatesBody = z.object({ data: z.array(z.object({ name: z.string(), language: z.string(), status: z.string() }).loose()) });

// ── media as streams ──────────────────────────────────────────────────────────────────────────

const interrupted = (why: string, cause?: unknown) =>
  new GraphApiError(`media download interrupted: ${why}`, { status: 0, code: undefined }, cause ? { cause } : undefined);

/**
 * A download's body as a Node stream: at most `maxBytes` (and exactly `size` when known), hashed as
 * it flows. The last chunk is held back until the sha256 matches every one in `sha256s`, so a
 * reader never sees all the bytes of a wrong file. Destroying it cancels the download.
 */
function checked(res: Response, o: { maxBytes: number; size?: number; sha256s: string[]; onVerified?: () => void }): Readable {
  const hash = createHash("sha256");
  let seen = 0;
  let held: Buffer | undefined;
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > o.maxBytes) return done(new MediaTooLargeError(o.maxBytes));
      if (o.size !== undefined && seen > o.size) return done(interrupted(`more than the ${o.size} bytes announced`));
      hash.update(chunk);
      const previous = held;
      held = chunk;
      done(null, previous);
    },
    flush(done) {
      if (o.size !== undefined && seen !== o.size) return done(interrupted(`${seen} of the ${o.size} bytes announced`));
      const actual = hash.digest("hex");
      if (o.sha256s.some((s) => normalizeSha256(s) !== actual)) return done(new MediaIntegrityError());
      o.onVerified?.();
      done(null, held);
    },
  });
  if (!res.body) {
    check.end();
    return check;
  }
  const source = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  source.on("error", (err) => check.destroy(interrupted(err.message, err)));
  check.on("close", () => source.destroy());
  source.pipe(check);
  return check;
}

/**
 * A multipart/form-data body of known length whose file part is a stream: undici's FormData needs
 * the whole file as a Blob, which is what streaming the reply avoids.
 */
class Multipart {
  private readonly boundary = `unmix-${randomBytes(16).toString("hex")}`;
  private readonly head: Buffer;
  private readonly tail = Buffer.from(`\r\n--${this.boundary}--\r\n`);
  private readonly file: { body: Readable; size: number };
  constructor(fields: [string, string][], file: { name: string; filename: string; mimeType: string; body: Readable; size: number }) {
    const part = (disposition: string) => `--${this.boundary}\r\nContent-Disposition: form-data; ${disposition}\r\n`;
    this.head = Buffer.from(
      fields.map(([name, value]) => `${part(`name="${name}"`)}\r\n${value}\r\n`).join("") +
        `${part(`name="${file.name}"; filename="${file.filename.replace(/["\r\n]/g, "_")}"`)}Content-Type: ${file.mimeType}\r\n\r\n`,
    );
    this.file = file;
  }
  get contentType(): string {
    return `multipart/form-data; boundary=${this.boundary}`;
  }
  get length(): number {
    return this.head.length + this.file.size + this.tail.length;
  }
  stream(): AsyncIterable<Uint8Array> {
    const { head, file, tail } = this;
    return (async function* () {
      yield head;
      let sent = 0;
      for await (const chunk of file.body) {
        sent += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
      if (sent !== file.size) throw new Error(`the file had ${sent} bytes, not the ${file.size} announced`);
      yield tail;
    })();
  }
}

// ── the client ────────────────────────────────────────────────────────────────────────────────

function addressee(r: Recipient): Record<string, string> {
  // Meta reads a number without "+" as local to the business number's country
  if (r.waId) return { to: r.waId.startsWith("+") ? r.waId : `+${r.waId}` };
  if (r.userId) return { recipient: r.userId };
  throw new TypeError("a recipient needs a waId or a userId");
}

const context = (replyTo: string | undefined) => (replyTo ? { context: { message_id: replyTo } } : {});
const callback = (data: string | undefined) => (data ? { biz_opaque_callback_data: data } : {});

export function createWhatsAppClient(options: WhatsAppClientOptions): WhatsAppClient {
  const fetch = options.fetch ?? globalThis.fetch;
  const apiRoot = `${options.baseUrl.replace(/\/+$/, "")}/${options.version}/`;
  const apiOrigin = new URL(options.baseUrl).origin;
  const mediaHosts = new Set((options.mediaHosts ?? DEFAULT_MEDIA_HOSTS).map((h) => h.toLowerCase()));
  const timeoutMs = options.timeoutMs ?? 30_000;
  const downloadTimeoutMs = options.downloadTimeoutMs ?? 120_000;
  const headers = { authorization: `Bearer ${options.accessToken}`, "user-agent": options.userAgent ?? "unmix/0.1" };

  async function call(url: string, init: RequestInit, timeout: number): Promise<Response> {
    try {
      return await fetch(url, { ...init, headers: { ...headers, ...init.headers }, signal: AbortSignal.timeout(timeout) });
    } catch (err) {
      throw new GraphApiError(`WhatsApp API unreachable: ${(err as Error).message}`, { status: 0, code: undefined }, { cause: err });
    }
  }

  /** GET /{waba-id}/message_templates with Meta's filters (one page of 100). */
  async function templates(businessAccountId: string, filter: { name?: string; status?: string }) {
    const query = new URLSearchParams({ ...filter, fields: "name,language,status", limit: "100" });
    return (await graph("GET", `${encodeURIComponent(businessAccountId)}/message_templates?${query}`, TemplatesBody)).data;
  }

  async function graph<T>(method: string, path: string, schema: z.ZodType<T>, body?: Multipart | object): Promise<T> {
    const init: RequestInit = { method };
    if (body instanceof Multipart) {
      // a stream body: fetch needs half duplex; the length is known, so no chunked encoding
      Object.assign(init, { body: body.stream(), duplex: "half" });
      init.headers = { "content-type": body.contentType, "content-length": String(body.length) };
    } else if (body) {
      init.body = JSON.stringify(body);
      init.headers = { "content-type": "application/json" };
    }
    const res = await call(apiRoot + path, init, timeoutMs);
    if (!res.ok) throw await errorFrom(res);
    const parsed = schema.safeParse(await res.json().catch(() => undefined));
    if (!parsed.success)
      throw new GraphApiError(`unexpected WhatsApp API response to ${method} ${path.split("?")[0]}`, { status: res.status, code: undefined });
    return parsed.data;
  }

  const send = async (phoneNumberId: string, message: object) =>
    (
      await graph("POST", `${encodeURIComponent(phoneNumberId)}/messages`, SendBody, {
        messaging_product: "whatsapp",
        recipient_type: "individual",
        ...message,
      })
    ).messages[0].id;

  /** The media URL's response, its status checked and its announced length within `maxBytes` (body unread). */
  async function download(url: string, maxBytes: number): Promise<{ res: Response; length: number | undefined }> {
    // the bearer token goes only where the API itself lives or to an allowed media host over HTTPS (P4)
    const target = new URL(url);
    if (target.origin !== apiOrigin && (target.protocol !== "https:" || !mediaHosts.has(target.hostname.toLowerCase()))) {
      throw new MediaHostRefusedError(target.protocol === "https:" ? target.hostname : `${target.protocol}//${target.hostname}`);
    }
    const res = await call(url, {}, downloadTimeoutMs);
    if (res.status === 404) {
      await res.body?.cancel();
      throw new MediaUrlExpiredError();
    }
    if (!res.ok) throw await errorFrom(res);
    const header = res.headers.get("content-length");
    const length = header ? Number(header) : undefined;
    if ((length ?? 0) > maxBytes) {
      await res.body?.cancel();
      throw new MediaTooLargeError(maxBytes);
    }
    return { res, length };
  }

  const client: WhatsAppClient = {
    async getMediaInfo(mediaId, phoneNumberId) {
      const query = phoneNumberId ? `?phone_number_id=${encodeURIComponent(phoneNumberId)}` : "";
      const m = await graph("GET", `${encodeURIComponent(mediaId)}${query}`, MediaInfoBody);
      return { id: m.id, url: m.url, mimeType: m.mime_type, sha256: m.sha256, fileSize: m.file_size };
    },

    async downloadMedia(url, { maxBytes }) {
      const { res } = await download(url, maxBytes);
      return Buffer.concat(await checked(res, { maxBytes, sha256s: [] }).toArray());
    },

    async fetchMedia(mediaId, { maxBytes, phoneNumberId, expectedSha256 }, consume) {
      for (let refreshed = false; ; refreshed = true) {
        const info = await client.getMediaInfo(mediaId, phoneNumberId);
        if (info.fileSize > maxBytes) throw new MediaTooLargeError(maxBytes);
        let opened: Awaited<ReturnType<typeof download>>;
        try {
          opened = await download(info.url, maxBytes);
        } catch (err) {
          if (err instanceof MediaUrlExpiredError && !refreshed) continue;
          throw err;
        }
        const size = opened.length ?? info.fileSize;
        const sha256s = [info.sha256, ...(expectedSha256 !== undefined ? [expectedSha256] : [])];
        let failure: unknown;
        let verified = false;
        const body = checked(opened.res, { maxBytes, size, sha256s, onVerified: () => (verified = true) });
        body.on("error", (err) => (failure ??= err));
        try {
          await consume(body, { size, info });
        } catch (err) {
          throw failure ?? err;
        } finally {
          body.destroy();
        }
        if (failure) throw failure;
        if (!verified) throw new Error("the media was not read to its end, so its sha256 was not checked");
        return { size, info };
      }
    },

    async uploadMedia(phoneNumberId, media, mimeType, filename) {
      const file = media instanceof Uint8Array ? { body: Readable.from([media]), size: media.byteLength } : media;
      const form = new Multipart(
        [
          ["messaging_product", "whatsapp"],
          ["type", mimeType],
        ],
        { name: "file", filename, mimeType, ...file },
      );
      try {
        return (await graph("POST", `${encodeURIComponent(phoneNumberId)}/media`, UploadBody, form)).id;
      } finally {
        file.body.destroy();
      }
    },

    async deleteMedia(mediaId) {
      await graph("DELETE", encodeURIComponent(mediaId), Success);
    },

    sendText: (phoneNumberId, to, body, o = {}) =>
      send(phoneNumberId, { ...addressee(to), ...context(o.replyTo), ...callback(o.callbackData), type: "text", text: { body, preview_url: false } }),

    sendAudio: (phoneNumberId, to, mediaId, o = {}) =>
      send(phoneNumberId, {
        ...addressee(to),
        ...context(o.replyTo),
        ...callback(o.callbackData),
        type: "audio",
        audio: { id: mediaId, ...(o.voice ? { voice: true } : {}) },
      }),

    sendVideo: (phoneNumberId, to, mediaId, o = {}) =>
      send(phoneNumberId, {
        ...addressee(to),
        ...context(o.replyTo),
        ...callback(o.callbackData),
        type: "video",
        video: { id: mediaId, ...(o.caption ? { caption: o.caption } : {}) },
      }),

    sendReaction: (phoneNumberId, to, messageId, emoji) =>
      send(phoneNumberId, { ...addressee(to), type: "reaction", reaction: { message_id: messageId, emoji } }),

    sendTemplate: (phoneNumberId, to, t) =>
      send(phoneNumberId, {
        ...addressee(to),
        type: "template",
        template: {
          name: t.name,
          language: { code: t.languageCode },
          ...(t.bodyParameters?.length ? { components: [{ type: "body", parameters: t.bodyParameters.map((text) => ({ type: "text", text })) }] } : {}),
        },
      }),

    async templateStatus(businessAccountId, name, languageCode) {
      const data = await templates(businessAccountId, { name });
      return data.find((t) => t.name === name && t.language === languageCode)?.status;
    },

    async approvedTemplates(businessAccountId) {
      const data = await templates(businessAccountId, { status: "APPROVED" });
      return data.filter((t) => t.status === "APPROVED").map((t) => ({ name: t.name, languageCode: t.language }));
    },

    async markRead(phoneNumberId, messageId, o = {}) {
      await graph("POST", `${encodeURIComponent(phoneNumberId)}/messages`, Success, {
        messaging_product: "whatsapp",
        status: "read",
        message_id: messageId,
        ...(o.typing ? { typing_indicator: { type: "text" } } : {}),
      });
    },
  };
  return client;
}

// ── webhook signatures ────────────────────────────────────────────────────────────────────────

/** Meta's JSON: every non-ASCII UTF-16 unit as \uXXXX in lowercase hex. Meta signs these bytes. */
export function escapeNonAscii(json: string): string {
  return json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** The X-Hub-Signature-256 value Meta sends for `rawBody`. */
export function signWebhookBody(rawBody: Buffer | string, appSecret: string): string {
  return `sha256=${createHmac("sha256", appSecret).update(rawBody).digest("hex")}`;
}

/** True when `header` is the signature of exactly these bytes (never of a re-serialised body). */
export function verifyWebhookSignature(rawBody: Buffer, header: string | undefined, appSecret: string): boolean {
  const hex = header?.startsWith("sha256=") ? header.slice(7) : undefined;
  if (!hex || !/^[0-9a-fA-F]{64}$/.test(hex)) return false;
  const given = Buffer.from(hex, "hex");
  const expected = createHmac("sha256", appSecret).update(rawBody).digest();
  return given.length === expected.length && timingSafeEqual(given, expected);
}
