// A WhatsApp Cloud API simulator for tests and `make dev`: the Graph routes the product uses,
// signed webhooks to the ingress, fault injection, and a chat page at `/`. It follows
// shared/reference/whatsapp-cloud-api.md; the production client talks to it unchanged.
import Fastify, { type FastifyError, type FastifyRequest } from "fastify";
import { registerChatRoutes } from "./chat.ts";
import { type ReadMark, type RecordedRequest, SimCore, type SimTemplate, type UserMessageResult } from "./core.ts";
import { type Fault, invalidParameter, metaErrorBody, type SimRoute } from "./faults.ts";
import { registerGraphRoutes } from "./graph-routes.ts";
import type { SentMessage } from "./outgoing.ts";
import type { BatchLayout, DeliveryOptions, Receipt, Sender, UserMessage, WebhookDelivery } from "./webhooks.ts";

export type { ReadMark, RecordedRequest, SimTemplate, UserMessageResult } from "./core.ts";
export type { Fault, MetaError, MetaErrorName, SimRoute } from "./faults.ts";
export { META_ERRORS } from "./faults.ts";
export { MEDIA_URL_TTL_MS } from "./media.ts";
export type { SentMessage } from "./outgoing.ts";
export type { BatchLayout, DeliveryOptions, Receipt, Sender, UserMessage, WebhookDelivery } from "./webhooks.ts";

export interface WhatsAppSimulatorOptions {
  appSecret: string;
  accessToken: string;
  /** Where webhooks go (the ingress's POST /webhook); can be set later with setWebhookUrl. */
  webhookUrl?: string;
  /** Milliseconds since the epoch; inject one to move time (URL expiry, the 24-hour window). */
  clock?: () => number;
  port?: number;
  host?: string;
  version?: string;
  phoneNumberId?: string;
  displayPhoneNumber?: string;
  wabaId?: string;
  /** How GET /{media-id} reports sha256 (webhooks always use base64, as in Meta's examples). */
  sha256Encoding?: "base64" | "hex";
  /** Send sent/delivered/failed status webhooks for the bot's messages. */
  statusReceipts?: boolean;
  /** The user of the chat page and of messages sent without `from`. */
  defaultUser?: Sender;
}

export interface SentUserMessage {
  id: string;
  mediaId?: string;
  body: string;
  deliveries: WebhookDelivery[];
}

export interface WhatsAppSimulator {
  /** Give this and `version` to the WhatsApp client. */
  baseUrl: string;
  version: string;
  phoneNumberId: string;
  displayPhoneNumber: string;
  wabaId: string;
  defaultUser: Sender;
  /** Every Graph API request, in order. */
  readonly requests: readonly RecordedRequest[];
  /** Every webhook posted, in order. */
  readonly webhooks: readonly WebhookDelivery[];
  setWebhookUrl(url: string | undefined): void;
  /** Media as if a user had sent it; returns its media id. */
  addMedia(bytes: Buffer, mimeType: string): string;
  /** Any media by id (what a user sent or the bot uploaded). */
  media(mediaId: string): { bytes: Buffer; mimeType: string } | undefined;
  /** Media ids deleted through the Graph API (DELETE /{media-id}), in order. */
  readonly deletedMedia: readonly string[];
  sendUserMessage(message: UserMessage, options?: DeliveryOptions): Promise<SentUserMessage>;
  /** Several messages in one POST, laid out as one value, one change each or one entry each. */
  sendBatch(messages: UserMessage[], options?: DeliveryOptions & { layout?: BatchLayout }): Promise<UserMessageResult>;
  /** A status receipt for a message the bot sent. */
  sendReceipt(receipt: Omit<Receipt, "timestampMs">, options?: DeliveryOptions): Promise<WebhookDelivery[]>;
  /** Posts these exact bytes, signed (e.g. a `body` delivered before, or odd whitespace). */
  deliverRaw(body: string, options?: DeliveryOptions): Promise<WebhookDelivery[]>;
  failNext(route: SimRoute, fault: Fault, times?: number): void;
  /** Adds or changes a message template of the business account (its review status). */
  setTemplate(name: string, languageCode: string, status: SimTemplate["status"], category?: SimTemplate["category"]): void;
  /** Drops the failures and delays still queued. */
  clearFaults(): void;
  delayNext(route: SimRoute, ms: number, times?: number): void;
  /** The bot's messages (text, audio, video, reaction, template), in order. */
  sentMessages(): SentMessage[];
  markedRead(): ReadMark[];
  waitForMessage(predicate: (m: SentMessage) => boolean, timeoutMs?: number): Promise<SentMessage>;
  stop(): Promise<void>;
}

const MAX_UPLOAD_BYTES = 110 * 1024 * 1024; // above every WhatsApp limit, so oversize gets Meta's error, not ours

export async function startWhatsAppSimulator(o: WhatsAppSimulatorOptions): Promise<WhatsAppSimulator> {
  const version = o.version ?? "v24.0";
  const business = {
    wabaId: o.wabaId ?? "318842120093457",
    phoneNumberId: o.phoneNumberId ?? "487201336590124",
    displayPhoneNumber: o.displayPhoneNumber ?? "4915120004711",
  };
  const defaultUser = o.defaultUser ?? { waId: "4917623456789", userId: "DE.58201947736120048815", name: "Zoë Müller" };
  const core = new SimCore({
    business,
    accessToken: o.accessToken,
    appSecret: o.appSecret,
    webhookUrl: o.webhookUrl,
    clock: o.clock ?? Date.now,
    sha256Encoding: o.sha256Encoding ?? "base64",
    statusReceipts: o.statusReceipts ?? false,
    defaultUser,
  });

  const app = Fastify({ logger: false });
  app.addContentTypeParser("multipart/form-data", { parseAs: "buffer", bodyLimit: MAX_UPLOAD_BYTES }, async (req: FastifyRequest, body: Buffer) => {
    try {
      return await new Response(body, { headers: { "content-type": String(req.headers["content-type"]) } }).formData();
    } catch {
      throw Object.assign(new Error("malformed multipart/form-data body"), { statusCode: 400 });
    }
  });
  // malformed requests get Meta's error shape, as a client would see from Graph
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    const status = err.statusCode && err.statusCode < 500 ? err.statusCode : 500;
    reply.code(status).send(metaErrorBody({ ...invalidParameter(err.message), httpStatus: status }));
  });
  registerGraphRoutes(app, core);
  registerChatRoutes(app, core);

  const host = o.host ?? "127.0.0.1";
  await app.listen({ host, port: o.port ?? 0 });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : o.port;
  const baseUrl = `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${port}`;
  core.baseUrl = () => baseUrl;

  return {
    baseUrl,
    version,
    ...business,
    defaultUser,
    requests: core.requests,
    webhooks: core.webhooks,
    setWebhookUrl: (url) => {
      core.webhookUrl = url;
    },
    addMedia: (bytes, mimeType) => core.media.add(bytes, mimeType, business.phoneNumberId, "received").id,
    media: (id) => {
      const m = core.media.get(id);
      return m && { bytes: m.bytes, mimeType: m.mimeType };
    },
    deletedMedia: core.media.deleted,
    async sendUserMessage(message, options) {
      const r = await core.sendUserMessages([message], "messages", options);
      return { id: r.ids[0] as string, mediaId: r.mediaIds[0], body: r.body, deliveries: r.deliveries };
    },
    sendBatch: (messages, options = {}) => core.sendUserMessages(messages, options.layout ?? "messages", options),
    sendReceipt: (receipt, options) => core.sendReceipt(receipt, options),
    deliverRaw: (body, options) => core.deliver(body, options),
    failNext: (route, fault, times = 1) => core.faults.failNext(route, fault, times),
    setTemplate: (name, language, status, category = "UTILITY") => {
      const key = `${name}/${language}`;
      const id = core.templates.get(key)?.id ?? String(1_000_000_000_000 + core.templates.size);
      core.templates.set(key, { id, name, language, status, category });
    },
    clearFaults: () => core.faults.clear(),
    delayNext: (route, ms, times = 1) => core.faults.delayNext(route, ms, times),
    sentMessages: () => [...core.sent],
    markedRead: () => [...core.reads],
    waitForMessage: (predicate, timeoutMs = 10_000) => core.waitForMessage(predicate, timeoutMs),
    async stop() {
      await core.settle();
      await app.close();
    },
  };
}
