// Webhooks as Meta sends them (reference §2–3, §9): the envelope, one builder per message type,
// status receipts, and delivery: JSON with non-ASCII escaped, signed with the app secret.
import { randomBytes } from "node:crypto";
import { escapeNonAscii, signWebhookBody } from "@unmix/core/whatsapp";

/** A WhatsApp user. Leave out waId for a username-only user known by BSUID alone. */
export interface Sender {
  waId?: string;
  /** Business-scoped user id, e.g. "DE.58201947736120048815". */
  userId?: string;
  name?: string;
}

/** Media a user sends: their bytes, or a media id already in the simulator. */
interface MediaInput {
  bytes?: Buffer;
  mediaId?: string;
  mimeType?: string;
}

export type UserMessageContent =
  | ({ type: "audio"; voice?: boolean } & MediaInput)
  | ({ type: "video"; caption?: string } & MediaInput)
  | ({ type: "image"; caption?: string } & MediaInput)
  | ({ type: "document"; filename?: string; caption?: string } & MediaInput)
  | ({ type: "sticker"; animated?: boolean } & MediaInput)
  | { type: "text"; body: string }
  | { type: "location"; latitude: number; longitude: number; name?: string; address?: string }
  /** Omit emoji for "the user removed their reaction". */
  | { type: "reaction"; messageId: string; emoji?: string }
  | { type: "unsupported"; unsupportedType?: string };

export type UserMessage = UserMessageContent & {
  from?: Sender;
  /** The wamid of a message the user quotes. */
  quoting?: string;
  /** Defaults to a fresh wamid. */
  id?: string;
};

export type MediaType = "audio" | "video" | "image" | "document" | "sticker";
export const MEDIA_TYPES: readonly string[] = ["audio", "video", "image", "document", "sticker"] satisfies MediaType[];

/** Used when a test sends media without bytes: only the routing matters. */
export const DEFAULT_MIME_TYPES: Record<MediaType, string> = {
  audio: "audio/ogg; codecs=opus",
  video: "video/mp4",
  image: "image/jpeg",
  document: "application/pdf",
  sticker: "image/webp",
};

/**
 * A message id shaped like Meta's: `wamid.` + base64 of a small protobuf-like record that holds the
 * user's number in ASCII digits (0x1c 0x18 <length> <digits> …), then random bytes. So, as on WhatsApp,
 * a wamid quoted anywhere leaks the number in base64 (`wamid.HBgNNDkxNzYyMzQ1Njc4ORUCABIYFDNB…`);
 * the simulator's ids let the tests catch that. `party`: the sender's number for a message from a
 * user, the recipient's for one from the business (a BSUID for a username-only user).
 */
export function newWamid(party: string): string {
  const digits = Buffer.from(party.replace(/^\+/, ""), "ascii");
  const random = Buffer.from(randomBytes(10).toString("hex").toUpperCase(), "ascii");
  const record = Buffer.concat([
    Buffer.from([0x1c, 0x18, digits.length]),
    digits,
    Buffer.from([0x15, 0x02, 0x00, 0x12, 0x18, random.length]),
    random,
    Buffer.from([0x00]),
  ]);
  return `wamid.${record.toString("base64")}`;
}

export interface Business {
  wabaId: string;
  phoneNumberId: string;
  displayPhoneNumber: string;
}

interface ResolvedMedia {
  id: string;
  mimeType: string;
  sha256: string;
  url: string;
}

/** One entry of `value.messages[]` and the contact it comes from. */
interface BuiltMessage {
  contact: Record<string, unknown>;
  message: Record<string, unknown>;
}

export function buildMessage(m: UserMessage, sender: Sender, timestampMs: number, media: ResolvedMedia | undefined): BuiltMessage {
  const contact = {
    profile: { name: sender.name ?? "" },
    ...(sender.waId ? { wa_id: sender.waId } : {}),
    ...(sender.userId ? { user_id: sender.userId } : {}),
  };
  const head = {
    ...(sender.waId ? { from: sender.waId } : {}),
    ...(sender.userId ? { from_user_id: sender.userId } : {}),
    ...(m.quoting ? { context: { from: sender.waId ?? sender.userId, id: m.quoting } } : {}),
    id: m.id ?? newWamid(sender.waId ?? sender.userId ?? ""),
    timestamp: String(Math.floor(timestampMs / 1000)),
    type: m.type,
  };
  const mediaFields = media ? { mime_type: media.mimeType, sha256: media.sha256, id: media.id, url: media.url } : {};
  switch (m.type) {
    case "audio":
      return { contact, message: { ...head, audio: { ...mediaFields, voice: m.voice ?? media?.mimeType.startsWith("audio/ogg") === true } } };
    case "video":
    case "image":
      return { contact, message: { ...head, [m.type]: { ...(m.caption ? { caption: m.caption } : {}), ...mediaFields } } };
    case "document":
      return {
        contact,
        message: { ...head, document: { ...(m.caption ? { caption: m.caption } : {}), filename: m.filename ?? "document.pdf", ...mediaFields } },
      };
    case "sticker":
      return { contact, message: { ...head, sticker: { ...mediaFields, animated: m.animated ?? false } } };
    case "text":
      return { contact, message: { ...head, text: { body: m.body } } };
    case "location":
      return {
        contact,
        message: {
          ...head,
          location: { latitude: m.latitude, longitude: m.longitude, ...(m.name ? { name: m.name } : {}), ...(m.address ? { address: m.address } : {}) },
        },
      };
    case "reaction":
      return { contact, message: { ...head, reaction: { message_id: m.messageId, ...(m.emoji ? { emoji: m.emoji } : {}) } } };
    case "unsupported":
      return {
        contact,
        message: {
          ...head,
          errors: [
            {
              code: 131051,
              title: "Message type unknown",
              message: "Message type unknown",
              error_data: { details: "Message type is currently not supported." },
            },
          ],
          unsupported: { type: m.unsupportedType ?? "poll" },
        },
      };
  }
}

/** How several messages share one POST: all in one `value`, one change each, or one entry each. */
export type BatchLayout = "messages" | "changes" | "entries";

const changeValue = (b: Business, fields: Record<string, unknown>) => ({
  messaging_product: "whatsapp",
  metadata: { display_phone_number: b.displayPhoneNumber, phone_number_id: b.phoneNumberId },
  ...fields,
});

const dedupe = (contacts: Record<string, unknown>[]) => [...new Map(contacts.map((c) => [JSON.stringify(c), c])).values()];

export function messagesEnvelope(b: Business, built: BuiltMessage[], layout: BatchLayout = "messages") {
  const change = (items: BuiltMessage[]) => ({
    field: "messages",
    value: changeValue(b, { contacts: dedupe(items.map((i) => i.contact)), messages: items.map((i) => i.message) }),
  });
  const entries =
    layout === "messages"
      ? [{ id: b.wabaId, changes: [change(built)] }]
      : layout === "changes"
        ? [{ id: b.wabaId, changes: built.map((i) => change([i])) }]
        : built.map((i) => ({ id: b.wabaId, changes: [change([i])] }));
  return { object: "whatsapp_business_account", entry: entries };
}

export type ReceiptStatus = "sent" | "delivered" | "read" | "played" | "failed";

export interface Receipt {
  messageId: string;
  status: ReceiptStatus;
  /** wa_id or BSUID of the user the message went to. */
  recipient: string;
  timestampMs: number;
  error?: { code: number; title: string; details?: string };
  /** The biz_opaque_callback_data the message was sent with: Meta echoes it in every status. */
  callbackData?: string;
}

export function statusEnvelope(b: Business, r: Receipt) {
  const isBsuid = r.recipient.includes(".");
  const status = {
    id: r.messageId,
    status: r.status,
    timestamp: String(Math.floor(r.timestampMs / 1000)),
    ...(isBsuid ? { recipient_user_id: r.recipient } : { recipient_id: r.recipient }),
    ...(r.callbackData !== undefined ? { biz_opaque_callback_data: r.callbackData } : {}),
    ...(r.status === "sent" || r.status === "delivered"
      ? { pricing: { billable: false, pricing_model: "PMP", type: "free_customer_service", category: "service" } }
      : {}),
    ...(r.error
      ? {
          errors: [
            { code: r.error.code, title: r.error.title, message: r.error.title, ...(r.error.details ? { error_data: { details: r.error.details } } : {}) },
          ],
        }
      : {}),
  };
  return { object: "whatsapp_business_account", entry: [{ id: b.wabaId, changes: [{ field: "messages", value: changeValue(b, { statuses: [status] }) }] }] };
}

/** Meta's bytes for a payload: compact JSON, non-ASCII escaped. */
export const metaJson = (payload: unknown) => escapeNonAscii(JSON.stringify(payload));

export interface DeliveryOptions {
  /** Wait this long before posting. */
  delayMs?: number;
  /** Post the same bytes this many extra times (Meta's redeliveries and fan-out). */
  duplicates?: number;
  /** Post the duplicates at the same time rather than one after another. */
  concurrent?: boolean;
  /** For negative tests: a wrong signature, or none at all. */
  signature?: "valid" | "wrong" | "none";
}

export interface WebhookDelivery {
  body: string;
  /** HTTP status of the webhook's answer; 0 when it could not be reached. */
  status: number;
  time: number;
  durationMs: number;
  error?: string;
}

export async function postWebhook(url: string, body: string, appSecret: string, signature: DeliveryOptions["signature"] = "valid") {
  const headers: Record<string, string> = { "content-type": "application/json", "user-agent": "facebookexternalua" };
  if (signature === "valid") headers["x-hub-signature-256"] = signWebhookBody(body, appSecret);
  if (signature === "wrong") headers["x-hub-signature-256"] = signWebhookBody(body, `${appSecret}-wrong`);
  const started = performance.now();
  try {
    const res = await fetch(url, { method: "POST", headers, body, signal: AbortSignal.timeout(30_000) });
    await res.arrayBuffer();
    return { status: res.status, durationMs: performance.now() - started };
  } catch (err) {
    return { status: 0, durationMs: performance.now() - started, error: (err as Error).message };
  }
}
