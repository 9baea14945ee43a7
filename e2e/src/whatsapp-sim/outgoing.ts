// What the bot may POST to /{phone-number-id}/messages (reference §6–7), checked as strictly as
// Meta does, so a malformed reply fails in tests instead of in production.
import { z } from "zod";

const Addressing = {
  messaging_product: z.literal("whatsapp"),
  recipient_type: z.literal("individual").optional(),
  to: z
    .string()
    .regex(/^\+?\d{5,20}$/, "a phone number or wa_id")
    .optional(),
  recipient: z
    .string()
    .regex(/^[A-Z]{2}\.[A-Za-z0-9]{1,128}$/, "a business-scoped user id")
    .optional(),
  context: z
    .object({ message_id: z.string().min(1) })
    .strict()
    .optional(),
  biz_opaque_callback_data: z.string().max(512).optional(),
};

const mediaSource = { id: z.string().min(1).optional(), link: z.string().url().optional() };
const oneSource = [(m: { id?: string; link?: string }) => (m.id === undefined) !== (m.link === undefined), "exactly one of id or link"] as const;

const Text = z
  .object({ ...Addressing, type: z.literal("text"), text: z.object({ body: z.string().min(1).max(4096), preview_url: z.boolean().optional() }).strict() })
  .strict();
const Audio = z
  .object({
    ...Addressing,
    type: z.literal("audio"),
    audio: z
      .object({ ...mediaSource, voice: z.boolean().optional() })
      .strict()
      .refine(...oneSource),
  })
  .strict();
const Video = z
  .object({
    ...Addressing,
    type: z.literal("video"),
    video: z
      .object({ ...mediaSource, caption: z.string().max(1024).optional() })
      .strict()
      .refine(...oneSource),
  })
  .strict();
const Reaction = z
  .object({ ...Addressing, type: z.literal("reaction"), reaction: z.object({ message_id: z.string().min(1), emoji: z.string() }).strict() })
  .strict();
const Template = z
  .object({
    ...Addressing,
    type: z.literal("template"),
    template: z
      .object({
        name: z.string().min(1).max(512),
        language: z.object({ code: z.string().min(2) }).strict(),
        components: z.array(z.object({ type: z.string() }).loose()).optional(),
      })
      .strict(),
  })
  .strict();

export const OutgoingMessage = z
  .discriminatedUnion("type", [Text, Audio, Video, Reaction, Template])
  .refine((m) => (m.to === undefined) !== (m.recipient === undefined), "exactly one of to or recipient")
  .refine((m) => m.type !== "reaction" || m.context === undefined, "a reaction cannot be a contextual reply");
export type OutgoingMessage = z.infer<typeof OutgoingMessage>;

export const MarkRead = z
  .object({
    messaging_product: z.literal("whatsapp"),
    status: z.literal("read"),
    message_id: z.string().min(1),
    typing_indicator: z
      .object({ type: z.literal("text") })
      .strict()
      .optional(),
  })
  .strict();

/** "Param text['body'] …", close to how Meta names a bad parameter. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const [head, ...rest] = i.path.map(String);
      return `Param ${head ?? "(body)"}${rest.map((p) => `['${p}']`).join("")}: ${i.message}`;
    })
    .join("; ");
}

/** One message the bot sent, as a test or the chat page sees it. */
export interface SentMessage {
  id: string;
  phoneNumberId: string;
  /** The user's wa_id (digits, no "+") or their BSUID, whichever the bot addressed. */
  to: string;
  addressedBy: "to" | "recipient";
  type: OutgoingMessage["type"];
  /** context.message_id: the user message this one quotes. */
  replyTo?: string;
  text?: string;
  mediaId?: string;
  voice?: boolean;
  caption?: string;
  reaction?: { messageId: string; emoji: string };
  template?: { name: string; languageCode: string; components?: unknown[] };
  time: number;
  /** biz_opaque_callback_data: echoed in the message's status webhooks, as Meta does. */
  callbackData?: string;
  /** `failed`: accepted by the API but not delivered (e.g. 131047, outside the 24-hour window). */
  status: "accepted" | "failed";
  errorCode?: number;
}

export function summarize(id: string, phoneNumberId: string, m: OutgoingMessage, time: number): SentMessage {
  const to = m.to !== undefined ? m.to.replace(/^\+/, "") : (m.recipient as string);
  const base = {
    id,
    phoneNumberId,
    to,
    addressedBy: m.to !== undefined ? "to" : "recipient",
    type: m.type,
    time,
    status: "accepted",
    ...(m.biz_opaque_callback_data !== undefined ? { callbackData: m.biz_opaque_callback_data } : {}),
  } as const;
  const replyTo = m.context?.message_id;
  switch (m.type) {
    case "text":
      return { ...base, replyTo, text: m.text.body };
    case "audio":
      return { ...base, replyTo, mediaId: m.audio.id, voice: m.audio.voice === true };
    case "video":
      return { ...base, replyTo, mediaId: m.video.id, caption: m.video.caption };
    case "reaction":
      return { ...base, reaction: { messageId: m.reaction.message_id, emoji: m.reaction.emoji } };
    case "template":
      return { ...base, replyTo, template: { name: m.template.name, languageCode: m.template.language.code, components: m.template.components } };
  }
}
