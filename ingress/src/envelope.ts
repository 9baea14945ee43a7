// The WhatsApp webhook at the edge: a zod schema of Meta's envelope (loose, since Meta adds fields),
// and the extraction of what the product may keep (policy promise P1): the sender (wa_id and/or
// business-scoped user id), the profile name, the type, the media reference, the message id and
// timestamp, and the business phone_number_id. Text bodies are reduced to the command they name;
// captions, locations, contacts, reactions, referrals and everything else are dropped here.
import { ReceiptStatus, SEPARATION_JOB_NAME } from "@unmix/api/separationjob";
import { messageRef } from "@unmix/core/audit";
import { z } from "zod";

const Id = z.string().min(1).max(256);
const UnixSeconds = z.string().regex(/^\d{1,12}$/, "Unix seconds");
const ErrorEntry = z.object({ code: z.number().int(), title: z.string().max(512).optional() }).loose();

const Media = z
  .object({
    id: z.string().min(1).max(128),
    mime_type: z.string().max(256).optional(),
    sha256: z.string().max(128).optional(),
    voice: z.boolean().optional(),
  })
  .loose();

const Message = z
  .object({
    id: Id,
    timestamp: UnixSeconds,
    type: z.string().min(1).max(64),
    from: z.string().min(1).max(32).optional(),
    from_user_id: z.string().min(1).max(160).optional(),
    text: z
      .object({ body: z.string().max(65536) })
      .loose()
      .optional(),
    audio: Media.optional(),
    video: Media.optional(),
    errors: z.array(ErrorEntry).max(100).optional(),
  })
  .loose();

const Contact = z
  .object({
    wa_id: z.string().max(32).optional(),
    user_id: z.string().max(160).optional(),
    profile: z
      .object({ name: z.string().max(1024).optional() })
      .loose()
      .optional(),
  })
  .loose();

const Status = z
  .object({
    id: Id,
    status: z.string().min(1).max(32),
    timestamp: UnixSeconds,
    errors: z.array(ErrorEntry).max(100).optional(),
    biz_opaque_callback_data: z.string().max(512).optional(),
  })
  .loose();

const MessagesValue = z
  .object({
    messaging_product: z.literal("whatsapp").optional(),
    metadata: z
      .object({ phone_number_id: z.string().min(1).max(64) })
      .loose()
      .optional(),
    contacts: z.array(Contact).max(1000).optional(),
    messages: z.array(Message).max(1000).optional(),
    statuses: z.array(Status).max(1000).optional(),
    errors: z.array(ErrorEntry).max(100).optional(),
  })
  .loose()
  .refine((v) => !v.messages?.length || v.metadata !== undefined, { message: "messages without metadata.phone_number_id", path: ["metadata"] });

export const Envelope = z
  .object({
    object: z.literal("whatsapp_business_account"),
    entry: z
      .array(
        z
          .object({
            id: z.string().max(64).optional(),
            changes: z.array(z.object({ field: z.string().min(1).max(128), value: z.unknown() }).loose()).max(1000),
          })
          .loose(),
      )
      .min(1)
      .max(1000),
  })
  .loose();
export type Envelope = z.infer<typeof Envelope>;

export const Command = z.enum(["help", "delete", "stop", "start"]);
export type Command = z.infer<typeof Command>;

/** A text that is one of the commands, any case, with surrounding spaces, a leading slash or trailing punctuation. */
export function parseCommand(text: string): Command | undefined {
  const word = /^[\s/]*([a-z]+)[\s.!?]*$/.exec(text.toLowerCase())?.[1];
  const parsed = Command.safeParse(word);
  return parsed.success ? parsed.data : undefined;
}

/** What goes onto the inbound stream for one message: nothing the policy does not list. */
export const InboundMessage = z
  .object({
    v: z.literal(1),
    id: Id.describe("wamid"),
    timestamp: UnixSeconds,
    phoneNumberId: z.string().min(1).max(64),
    sender: z
      .object({ waId: z.string().max(32).optional(), userId: z.string().max(160).optional(), profileName: z.string().max(256).optional() })
      .strict()
      .refine((s) => s.waId !== undefined || s.userId !== undefined, "a sender needs a wa_id or a user id"),
    type: z.string().min(1).max(64),
    media: z
      .object({ id: z.string().min(1).max(128), mimeType: z.string().max(256), sha256: z.string().max(128).optional(), voice: z.boolean() })
      .strict()
      .optional(),
    /** Text messages: the command the text names; absent for any other text (whose body is not kept). */
    command: Command.optional(),
    /** Meta's error codes on the message (e.g. 131052: media too large to download). */
    errorCodes: z.array(z.number().int()).optional(),
  })
  .strict();
export type InboundMessage = z.infer<typeof InboundMessage>;

/** What goes onto the inbound stream for a status webhook that confirms a reply: no wamid, no user. */
export const ReceiptMessage = z.object({ v: z.literal(1), job: z.string().regex(SEPARATION_JOB_NAME), status: ReceiptStatus, timestamp: UnixSeconds }).strict();
export type ReceiptMessage = z.infer<typeof ReceiptMessage>;

export interface StatusReceipt {
  /** Hash of the wamid of our message (the wamid itself encodes the user's number). */
  ref: string;
  status: string;
  timestamp: string;
  errorCodes: number[];
  /** The SeparationJob a reply was sent for: its biz_opaque_callback_data, when that names one. */
  job?: string;
}

export interface Extracted {
  messages: InboundMessage[];
  statuses: StatusReceipt[];
  /** Codes of value-level webhook errors. */
  errors: { code: number; title?: string }[];
  /** Changes of fields other than "messages" (template status, account updates…): counted, ignored. */
  otherFields: string[];
}

export { messageRef };

export class EnvelopeError extends Error {
  readonly issues: string[];
  constructor(issues: string[]) {
    super(`not a WhatsApp webhook: ${issues.join("; ")}`);
    this.name = "EnvelopeError";
    this.issues = issues;
  }
}

const issuesOf = (e: z.ZodError, prefix: (string | number)[]) => e.issues.slice(0, 5).map((i) => `${[...prefix, ...i.path].join(".")}: ${i.message}`);

function senderOf(m: z.infer<typeof Message>, contacts: z.infer<typeof Contact>[]) {
  const contact =
    contacts.find((c) => (m.from !== undefined && c.wa_id === m.from) || (m.from_user_id !== undefined && c.user_id === m.from_user_id)) ??
    (contacts.length === 1 ? contacts[0] : undefined);
  const waId = m.from ?? contact?.wa_id;
  const userId = m.from_user_id ?? contact?.user_id;
  const profileName = contact?.profile?.name?.slice(0, 256);
  return { ...(waId ? { waId } : {}), ...(userId ? { userId } : {}), ...(profileName ? { profileName } : {}) };
}

/** Validates a parsed body as a WhatsApp envelope and keeps only what P1 allows; throws EnvelopeError. */
export function extract(body: unknown): Extracted {
  const envelope = Envelope.safeParse(body);
  if (!envelope.success) throw new EnvelopeError(issuesOf(envelope.error, []));
  const out: Extracted = { messages: [], statuses: [], errors: [], otherFields: [] };
  for (const [e, entry] of envelope.data.entry.entries()) {
    for (const [c, change] of entry.changes.entries()) {
      if (change.field !== "messages") {
        out.otherFields.push(change.field);
        continue;
      }
      const parsed = MessagesValue.safeParse(change.value);
      if (!parsed.success) throw new EnvelopeError(issuesOf(parsed.error, ["entry", e, "changes", c, "value"]));
      const value = parsed.data;
      for (const err of value.errors ?? []) out.errors.push({ code: err.code, ...(err.title ? { title: err.title } : {}) });
      for (const s of value.statuses ?? []) {
        const job = s.biz_opaque_callback_data;
        out.statuses.push({
          ref: messageRef(s.id),
          status: s.status,
          timestamp: s.timestamp,
          errorCodes: (s.errors ?? []).map((x) => x.code),
          ...(job !== undefined && SEPARATION_JOB_NAME.test(job) ? { job } : {}),
        });
      }
      for (const [i, m] of (value.messages ?? []).entries()) {
        const sender = senderOf(m, value.contacts ?? []);
        if (!sender.waId && !sender.userId) throw new EnvelopeError([`entry.${e}.changes.${c}.value.messages.${i}: no from or from_user_id`]);
        const media = m.type === "audio" ? m.audio : m.type === "video" ? m.video : undefined;
        const command = m.type === "text" && m.text ? parseCommand(m.text.body) : undefined;
        out.messages.push({
          v: 1,
          id: m.id,
          timestamp: m.timestamp,
          phoneNumberId: value.metadata?.phone_number_id as string,
          sender,
          type: m.type,
          ...(media
            ? { media: { id: media.id, mimeType: media.mime_type ?? "", ...(media.sha256 ? { sha256: media.sha256 } : {}), voice: media.voice === true } }
            : {}),
          ...(command ? { command } : {}),
          ...(m.errors?.length ? { errorCodes: m.errors.map((x) => x.code) } : {}),
        });
      }
    }
  }
  return out;
}
