// The webhook signs every inbound message it publishes and the worker handles only what it signed.
// NATS credentials keep other pods off the inbound subjects; the signature also keeps a leaked or
// misused credential from injecting a `delete` for someone else or altering a queued message.
// HMAC-SHA256 with INBOUND_SIGNING_KEY (a Secret only the webhook and the worker mount) over the
// subject (it carries the user key a message is filed and purged under), the deduplication id and
// the payload. node:crypto: one HMAC each way needs no library.
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "Unmix-Signature";
const VERSION = "v1=";

function mac(key: string, subject: string, msgId: string, data: Uint8Array | string): Buffer {
  return createHmac("sha256", key).update(`${subject}\n${msgId}\n`).update(data).digest();
}

/** The header value for a message the webhook publishes. */
export function signInbound(key: string, subject: string, msgId: string, data: Uint8Array | string): string {
  return VERSION + mac(key, subject, msgId, data).toString("hex");
}

/** "valid", or why not: "unsigned" (no signature) or "forged" (one that does not match). */
export function verifyInbound(
  key: string,
  subject: string,
  msgId: string | undefined,
  data: Uint8Array,
  header: string | undefined,
): "valid" | "unsigned" | "forged" {
  if (!header) return "unsigned";
  if (!header.startsWith(VERSION) || msgId === undefined) return "forged";
  const given = Buffer.from(header.slice(VERSION.length), "hex");
  const expected = mac(key, subject, msgId, data);
  return given.length === expected.length && timingSafeEqual(given, expected) ? "valid" : "forged";
}
