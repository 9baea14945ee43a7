// Phone numbers never appear in clear in logs, metric labels or spans: they are masked for humans
// and replaced by a keyed hash where something must be correlated (KV keys, labels, purges).
import { createHmac } from "node:crypto";

/** Keyed hash of a user id (wa_id or BSUID): stable per deployment, useless without the key. */
export function userKey(userId: string, key: string): string {
  return `u${createHmac("sha256", key).update(userId).digest("hex").slice(0, 24)}`;
}

/** "4917623456789" → "49*******789": enough for a human to tell two users apart in support. */
export function maskPhone(phone: string): string {
  const digits = phone.replace(/\D/g, "");
  if (digits.length < 6) return "***";
  return `${digits.slice(0, 2)}${"*".repeat(digits.length - 5)}${digits.slice(-3)}`;
}

/**
 * "4917623456789" → "+49 ••• ••• 89": the support console's form of a number, the first two and last
 * two digits, so an operator can tell two users apart and confirm a caller's number without the
 * console showing it (the full number never leaves the server).
 */
export function maskNumber(waId: string): string {
  const digits = waId.replace(/\D/g, "");
  if (digits.length < 8) return "+•••";
  return `+${digits.slice(0, 2)} ••• ••• ${digits.slice(-2)}`;
}

// 7 to 15 digits, optionally with a leading +, not inside a longer run of digits or hex (so hashes,
// media ids of 16+ digits and timestamps of 10 digits mostly survive; a phone number never does).
const PHONE = /(?<![\w.])\+?\d{7,15}(?![\w])/g;
const TEN_DIGIT_TIMESTAMP = /^1\d{9}$/;
// a WhatsApp message id (wamid.<base64>) embeds the sender's number
const MESSAGE_ID = /wamid\.[\w+/=-]+/g;

/** Masks anything that looks like a phone number or a WhatsApp message id inside free text. */
export function scrubText(text: string): string {
  return text.replace(MESSAGE_ID, "[message id]").replace(PHONE, (m) => (TEN_DIGIT_TIMESTAMP.test(m) ? m : maskPhone(m)));
}

/** Deep copy of a log record with phone-like strings masked. */
export function scrubValue(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return scrubText(value);
  if (depth > 8 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => scrubValue(v, depth + 1));
  if (value instanceof Error) return { type: value.name, message: scrubText(value.message), stack: value.stack && scrubText(value.stack) };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = scrubValue(v, depth + 1);
  return out;
}
