// The simulator's state and behaviour, shared by the Graph routes, the chat page and the
// programmatic API: who wrote when (the 24-hour window), what the bot sent, and webhook delivery.
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { FastifyRequest } from "fastify";
import { FaultQueue } from "./faults.ts";
import { MediaLibrary, type StoredMedia } from "./media.ts";
import { type OutgoingMessage, type SentMessage, summarize } from "./outgoing.ts";
import {
  type BatchLayout,
  type Business,
  buildMessage,
  DEFAULT_MIME_TYPES,
  type DeliveryOptions,
  MEDIA_TYPES,
  type MediaType,
  messagesEnvelope,
  metaJson,
  newWamid,
  postWebhook,
  type Receipt,
  type Sender,
  statusEnvelope,
  type UserMessage,
  type WebhookDelivery,
} from "./webhooks.ts";

const WINDOW_MS = 24 * 3600_000;

export interface RecordedRequest {
  method: string;
  /** Path and query, as received. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON; for uploads a summary of the form (the file's name, type and size). */
  body: unknown;
  time: number;
}

export interface ReadMark {
  messageId: string;
  typing: boolean;
  time: number;
}

export interface InboundMessage {
  id: string;
  /** wa_id, or the BSUID of a username-only user. */
  from: string;
  type: string;
  message: Record<string, unknown>;
  time: number;
}

export interface UserMessageResult {
  /** The wamid of each message, in order. */
  ids: string[];
  /** Media ids of media messages, in order (undefined for other types). */
  mediaIds: (string | undefined)[];
  /** The exact bytes posted, to deliver again later with `deliverRaw`. */
  body: string;
  deliveries: WebhookDelivery[];
}

/** A message template as GET /{waba-id}/message_templates lists it. */
export interface SimTemplate {
  id: string;
  name: string;
  language: string;
  status: "APPROVED" | "PENDING" | "REJECTED" | "PAUSED" | "DISABLED";
  category: "UTILITY" | "MARKETING" | "AUTHENTICATION";
}

export interface SimCoreOptions {
  business: Business;
  accessToken: string;
  appSecret: string;
  webhookUrl: string | undefined;
  clock: () => number;
  sha256Encoding: "base64" | "hex";
  statusReceipts: boolean;
  defaultUser: Sender;
}

/** Multipart forms are recorded as their fields, with each file's name, type and size. */
function summarizeBody(body: unknown): unknown {
  if (!(body instanceof FormData)) return body;
  const fields: Record<string, unknown> = {};
  for (const [name, value] of body) fields[name] = value instanceof File ? { filename: value.name, mimeType: value.type, size: value.size } : value;
  return fields;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class SimCore {
  readonly business: Business;
  readonly accessToken: string;
  readonly clock: () => number;
  readonly sha256Encoding: "base64" | "hex";
  readonly defaultUser: Sender;
  readonly media: MediaLibrary;
  readonly faults = new FaultQueue();
  readonly requests: RecordedRequest[] = [];
  readonly webhooks: WebhookDelivery[] = [];
  readonly inbound = new Map<string, InboundMessage>();
  readonly sent: SentMessage[] = [];
  readonly reads: ReadMark[] = [];
  /** The business account's templates by `name/language`; a template not listed here is sent as if approved. */
  readonly templates = new Map<string, SimTemplate>();
  /** Everything in the order it happened, for the chat thread (the clock may stand still in tests). */
  readonly timeline: ({ kind: "in" | "out"; id: string } | { kind: "read"; mark: ReadMark })[] = [];
  webhookUrl: string | undefined;
  baseUrl: () => string = () => "";
  private readonly appSecret: string;
  private readonly statusReceipts: boolean;
  private readonly lastWrote = new Map<string, number>();
  private readonly events = new EventEmitter();
  private readonly background = new Set<Promise<unknown>>();

  constructor(o: SimCoreOptions) {
    this.business = o.business;
    this.accessToken = o.accessToken;
    this.appSecret = o.appSecret;
    this.webhookUrl = o.webhookUrl;
    this.clock = o.clock;
    this.sha256Encoding = o.sha256Encoding;
    this.statusReceipts = o.statusReceipts;
    this.defaultUser = o.defaultUser;
    this.media = new MediaLibrary(o.clock);
    this.events.setMaxListeners(0);
  }

  record(req: FastifyRequest): void {
    this.requests.push({ method: req.method, path: req.url, headers: { ...req.headers }, body: summarizeBody(req.body), time: this.clock() });
  }

  markRead(messageId: string, typing: boolean): void {
    const mark = { messageId, typing, time: this.clock() };
    this.reads.push(mark);
    this.timeline.push({ kind: "read", mark });
  }

  /** Records a valid message from the bot; outside the 24-hour window it fails as on WhatsApp. */
  acceptMessage(m: OutgoingMessage): SentMessage {
    const sent = summarize(newWamid(m.to ?? m.recipient ?? ""), this.business.phoneNumberId, m, this.clock());
    const lastWrote = this.lastWrote.get(sent.to);
    if (m.type !== "template" && (lastWrote === undefined || this.clock() - lastWrote > WINDOW_MS)) {
      sent.status = "failed";
      sent.errorCode = 131047;
    }
    this.sent.push(sent);
    this.timeline.push({ kind: "out", id: sent.id });
    this.events.emit("sent", sent);
    if (this.statusReceipts && this.webhookUrl) this.inBackground(this.sendReceipts(sent));
    return sent;
  }

  private async sendReceipts(sent: SentMessage): Promise<void> {
    const receipt = (status: Receipt["status"], error?: Receipt["error"]) =>
      this.deliver(
        metaJson(
          statusEnvelope(this.business, {
            messageId: sent.id,
            status,
            recipient: sent.to,
            timestampMs: this.clock(),
            error,
            ...(sent.callbackData !== undefined ? { callbackData: sent.callbackData } : {}),
          }),
        ),
      );
    if (sent.status === "failed") {
      await receipt("failed", {
        code: 131047,
        title: "Re-engagement message",
        details: "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
      });
      return;
    }
    await receipt("sent");
    if (sent.type !== "reaction") await receipt("delivered"); // reactions only ever get `sent`
  }

  /** Builds the webhook for messages a user sends and posts it. */
  async sendUserMessages(messages: UserMessage[], layout: BatchLayout, options: DeliveryOptions = {}): Promise<UserMessageResult> {
    const built = messages.map((m) => {
      const sender = m.from ?? this.defaultUser;
      const media = MEDIA_TYPES.includes(m.type) ? this.receiveMedia(m as UserMessage & { type: MediaType }) : undefined;
      return { built: buildMessage(m, sender, this.clock(), media && this.describeMedia(media)), mediaId: media?.id };
    });
    const body = metaJson(
      messagesEnvelope(
        this.business,
        built.map((b) => b.built),
        layout,
      ),
    );
    const deliveries = await this.deliver(body, options);
    return { ids: built.map((b) => String(b.built.message.id)), mediaIds: built.map((b) => b.mediaId), body, deliveries };
  }

  private receiveMedia(m: UserMessage & { type: MediaType; bytes?: Buffer; mediaId?: string; mimeType?: string }): StoredMedia {
    if (m.mediaId) {
      const known = this.media.get(m.mediaId);
      if (!known) throw new Error(`no media ${m.mediaId} in the simulator`);
      return known;
    }
    return this.media.add(m.bytes ?? randomBytes(64), m.mimeType ?? DEFAULT_MIME_TYPES[m.type], this.business.phoneNumberId, "received");
  }

  private describeMedia(media: StoredMedia) {
    // webhooks carry base64 like Meta's examples; the media endpoint follows `sha256Encoding`
    return { id: media.id, mimeType: media.mimeType, sha256: media.sha256.toString("base64"), url: this.media.issueUrl(media, this.baseUrl()) };
  }

  async sendReceipt(receipt: Omit<Receipt, "timestampMs">, options?: DeliveryOptions): Promise<WebhookDelivery[]> {
    return this.deliver(metaJson(statusEnvelope(this.business, { ...receipt, timestampMs: this.clock() })), options);
  }

  /** Posts `body` as a signed webhook; messages in it count as received (the bot may answer them). */
  async deliver(body: string, o: DeliveryOptions = {}): Promise<WebhookDelivery[]> {
    const url = this.webhookUrl;
    if (!url) throw new Error("the WhatsApp simulator has no webhook URL: pass webhookUrl or call setWebhookUrl");
    this.noteInbound(body);
    if (o.delayMs) await sleep(o.delayMs);
    const once = async () => {
      const time = this.clock();
      const delivery = { body, time, ...(await postWebhook(url, body, this.appSecret, o.signature)) };
      this.webhooks.push(delivery);
      return delivery;
    };
    const copies = 1 + (o.duplicates ?? 0);
    if (o.concurrent) return Promise.all(Array.from({ length: copies }, once));
    const deliveries: WebhookDelivery[] = [];
    for (let i = 0; i < copies; i++) deliveries.push(await once());
    return deliveries;
  }

  private noteInbound(body: string): void {
    let payload: { entry?: { changes?: { value?: { messages?: Record<string, unknown>[] } }[] }[] };
    try {
      payload = JSON.parse(body);
    } catch {
      return; // a test posting junk on purpose
    }
    for (const entry of payload.entry ?? [])
      for (const change of entry.changes ?? [])
        for (const message of change.value?.messages ?? []) {
          const id = String(message.id);
          const from = String(message.from ?? message.from_user_id);
          if (!this.inbound.has(id)) this.timeline.push({ kind: "in", id });
          this.inbound.set(id, { id, from, type: String(message.type), message, time: this.clock() });
          for (const user of [message.from, message.from_user_id]) if (typeof user === "string") this.lastWrote.set(user, this.clock());
        }
  }

  async waitForMessage(predicate: (m: SentMessage) => boolean, timeoutMs: number): Promise<SentMessage> {
    const found = this.sent.find(predicate);
    if (found) return found;
    return new Promise((resolve, reject) => {
      const onSent = (m: SentMessage) => {
        if (!predicate(m)) return;
        clearTimeout(timer);
        this.events.off("sent", onSent);
        resolve(m);
      };
      const timer = setTimeout(() => {
        this.events.off("sent", onSent);
        const seen = this.sent.map((m) => `${m.type}${m.text ? ` "${m.text.slice(0, 40)}"` : ""}`).join(", ") || "nothing";
        reject(new Error(`no matching WhatsApp message within ${timeoutMs} ms; the bot sent: ${seen}`));
      }, timeoutMs);
      this.events.on("sent", onSent);
    });
  }

  private inBackground(work: Promise<unknown>): void {
    const tracked = work.catch(() => {}).finally(() => this.background.delete(tracked));
    this.background.add(tracked);
  }

  async settle(): Promise<void> {
    await Promise.all(this.background);
  }
}
