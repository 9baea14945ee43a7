// The chat page's JSON API: the thread between the simulated user and the bot, sending as that user
// (the simulator turns it into a signed webhook), and media for inline players.
import { readFileSync } from "node:fs";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { InboundMessage, SimCore } from "./core.ts";
import type { SentMessage } from "./outgoing.ts";
import type { UserMessage } from "./webhooks.ts";

const PAGE = readFileSync(new URL("./chat.html", import.meta.url), "utf8");
const TYPING_SHOWN_MS = 25_000;

export interface ThreadItem {
  id: string;
  direction: "in" | "out";
  type: string;
  time: number;
  text?: string;
  caption?: string;
  media?: { src: string; mimeType: string; voice: boolean };
  replyTo?: string;
  /** The bot's current reaction to a user message. */
  reaction?: string;
  read?: boolean;
  status?: SentMessage["status"];
  errorCode?: number;
  /** HTTP status the webhook got for a user message. */
  webhookStatus?: number;
}

const mediaSrc = (id: string | undefined) => (id ? `/sim/chat/media/${id}` : undefined);

function userItem(m: InboundMessage): ThreadItem {
  const body = (m.message[m.type] ?? {}) as Record<string, unknown>;
  const id = typeof body.id === "string" ? body.id : undefined;
  const item: ThreadItem = { id: m.id, direction: "in", type: m.type, time: m.time };
  if (m.type === "text") item.text = String(body.body);
  if (typeof body.caption === "string") item.caption = body.caption;
  if (m.type === "location") item.text = `📍 ${body.latitude}, ${body.longitude}`;
  if (m.type === "reaction") item.text = body.emoji ? `reacted ${body.emoji}` : "removed a reaction";
  const src = mediaSrc(id);
  if (src) item.media = { src, mimeType: String(body.mime_type), voice: body.voice === true };
  return item;
}

function botItem(core: SimCore, m: SentMessage): ThreadItem {
  const item: ThreadItem = { id: m.id, direction: "out", type: m.type, time: m.time, replyTo: m.replyTo, status: m.status, errorCode: m.errorCode };
  if (m.text) item.text = m.text;
  if (m.caption) item.caption = m.caption;
  if (m.template) item.text = `[template ${m.template.name}] ${JSON.stringify(m.template.components ?? [])}`;
  const media = m.mediaId ? core.media.get(m.mediaId) : undefined;
  const src = mediaSrc(media?.id);
  if (media && src) item.media = { src, mimeType: media.mimeType, voice: m.voice === true };
  return item;
}

/** Serves `bytes` honouring a single Range, so <audio>/<video> can seek. */
function sendBytes(reply: FastifyReply, bytes: Buffer, mimeType: string, range: string | undefined) {
  reply.header("content-type", mimeType).header("accept-ranges", "bytes");
  const m = range?.match(/^bytes=(\d*)-(\d*)$/);
  if (!m || (m[1] === "" && m[2] === "")) return reply.send(bytes);
  const start = m[1] === "" ? Math.max(0, bytes.length - Number(m[2])) : Number(m[1]);
  const end = m[1] !== "" && m[2] !== "" ? Math.min(Number(m[2]), bytes.length - 1) : bytes.length - 1;
  if (start > end) return reply.code(416).header("content-range", `bytes */${bytes.length}`).send();
  return reply
    .code(206)
    .header("content-range", `bytes ${start}-${end}/${bytes.length}`)
    .send(bytes.subarray(start, end + 1));
}

export function registerChatRoutes(app: FastifyInstance, core: SimCore): void {
  const user = core.defaultUser;
  const isUser = (id: string) => id === user.waId || id === user.userId;
  const webhookStatus = new Map<string, number>();

  app.get("/", async (_req, reply) => reply.type("text/html; charset=utf-8").send(PAGE));

  app.get("/sim/chat/thread", async () => {
    const items: ThreadItem[] = [];
    const reactions = new Map<string, string>();
    const read = new Set<string>();
    let typingSince: number | undefined; // the bot is typing from a typing mark until its next message
    for (const event of core.timeline) {
      if (event.kind === "read") {
        if (!isUser(core.inbound.get(event.mark.messageId)?.from ?? "")) continue;
        read.add(event.mark.messageId);
        if (event.mark.typing) typingSince = event.mark.time;
      } else if (event.kind === "in") {
        const m = core.inbound.get(event.id);
        if (m && isUser(m.from)) items.push({ ...userItem(m), webhookStatus: webhookStatus.get(m.id) });
      } else {
        const m = core.sent.find((s) => s.id === event.id);
        if (!m || !isUser(m.to)) continue;
        if (m.reaction) reactions.set(m.reaction.messageId, m.reaction.emoji);
        else {
          items.push(botItem(core, m));
          typingSince = undefined;
        }
      }
    }
    for (const item of items) {
      if (item.direction !== "in") continue;
      item.read = read.has(item.id);
      const emoji = reactions.get(item.id);
      if (emoji) item.reaction = emoji;
    }
    const typing = typingSince !== undefined && core.clock() - typingSince < TYPING_SHOWN_MS;
    return { user: { name: user.name, waId: user.waId }, business: core.business.displayPhoneNumber, webhookUrl: core.webhookUrl ?? null, typing, items };
  });

  app.get<{ Params: { id: string } }>("/sim/chat/media/:id", async (req, reply) => {
    const media = core.media.get(req.params.id);
    if (!media) return reply.code(404).send({ error: "no such media" });
    return sendBytes(reply, media.bytes, media.mimeType, req.headers.range);
  });

  // JSON {text} for a text message; a multipart form {file, voice?, caption?} for media
  app.post("/sim/chat/send", async (req, reply) => {
    if (!core.webhookUrl) return reply.code(409).send({ error: "the simulator has no webhook URL, so the bot cannot hear you" });
    let message: UserMessage;
    if (req.body instanceof FormData) {
      const file = req.body.get("file");
      if (!(file instanceof File) || file.size === 0) return reply.code(400).send({ error: "no file" });
      // only OGG/Opus can be a voice note, as in WhatsApp
      const voice = req.body.get("voice") === "true" && /^audio\/(ogg|opus)/.test(file.type);
      const caption = String(req.body.get("caption") ?? "") || undefined;
      const bytes = Buffer.from(await file.arrayBuffer());
      const mimeType = voice ? "audio/ogg; codecs=opus" : file.type || "application/octet-stream";
      const kind = mimeType.split("/")[0];
      message =
        kind === "audio"
          ? { type: "audio", bytes, mimeType, voice }
          : kind === "video"
            ? { type: "video", bytes, mimeType, caption }
            : kind === "image"
              ? { type: "image", bytes, mimeType, caption }
              : { type: "document", bytes, mimeType, filename: file.name, caption };
    } else {
      const text = String((req.body as { text?: unknown } | null)?.text ?? "").trim();
      if (!text) return reply.code(400).send({ error: "empty message" });
      message = { type: "text", body: text };
    }
    const result = await core.sendUserMessages([message], "messages");
    const id = result.ids[0] as string;
    const status = result.deliveries[0]?.status ?? 0;
    webhookStatus.set(id, status);
    return { id, webhookStatus: status };
  });
}
