// WhatsApp sends media hashes as base64 in webhooks and sometimes as hex from the media endpoint:
// compare them in one canonical form.
export function normalizeSha256(value: string): string {
  const v = value.trim();
  if (/^[0-9a-fA-F]{64}$/.test(v)) return v.toLowerCase();
  const bytes = Buffer.from(v.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  if (bytes.length !== 32) throw new Error("not a sha256 digest in hex or base64");
  return bytes.toString("hex");
}
