// What media the pipeline accepts: the MIME types users send → what kind of job it is and which
// format the reply comes back in (policy promise P9: the original format), and the size limits.

import { LIMITS } from "@unmix/api/limits";
import { type MediaKind, MIME_TYPE_MAX_CHARS, type OutputFormat } from "@unmix/api/separationjob";
import { env } from "@unmix/core/config";
import { z } from "zod";

export const MediaConfig = z.object({
  /** The largest input the pipeline takes; above WhatsApp's upload limit a reply rarely fits anyway. */
  MAX_INPUT_BYTES: env
    .int(LIMITS.defaultMaxInputBytes, 1)
    .pipe(z.number().max(LIMITS.whatsappInboundBytes, `at most ${LIMITS.whatsappInboundBytes} (WhatsApp's own limit)`)),
});
export type MediaConfig = z.infer<typeof MediaConfig>;

export interface AcceptedMedia {
  kind: MediaKind;
  format: OutputFormat;
  /** The MIME type without parameters, lower case. */
  mimeType: string;
}

const ACCEPTED: Record<string, { kind: MediaKind; format: OutputFormat }> = {
  "audio/ogg": { kind: "audio", format: "ogg-opus" },
  "audio/opus": { kind: "audio", format: "ogg-opus" },
  "audio/mpeg": { kind: "audio", format: "mp3" },
  "audio/mp3": { kind: "audio", format: "mp3" },
  "audio/mp4": { kind: "audio", format: "m4a" },
  "audio/aac": { kind: "audio", format: "m4a" },
  "audio/x-m4a": { kind: "audio", format: "m4a" },
  "video/mp4": { kind: "video", format: "mp4" },
  "video/3gpp": { kind: "video", format: "mp4" },
};

/** The MIME type of each output format, as the reply is uploaded. */
export const OUTPUT_MIME_TYPES: Record<OutputFormat, string> = {
  "ogg-opus": "audio/ogg",
  mp3: "audio/mpeg",
  m4a: "audio/mp4",
  mp4: "video/mp4",
};

export const baseMimeType = (mimeType: string) => (mimeType.split(";")[0] ?? "").trim().toLowerCase();

/** The kind and reply format of media with this MIME type; undefined when the pipeline cannot take it. */
export function classifyMedia(mimeType: string): AcceptedMedia | undefined {
  // Longer than a SeparationJob keeps: no real media type is, and building the resource would fail
  if (mimeType.length > MIME_TYPE_MAX_CHARS) return undefined;
  const base = baseMimeType(mimeType);
  const accepted = ACCEPTED[base];
  if (!accepted) return undefined;
  // WhatsApp plays only Opus in OGG: an OGG/Vorbis or FLAC file cannot come back as a voice note
  const codecs = /codecs="?([^";]+)/i.exec(mimeType)?.[1]?.toLowerCase();
  if (base === "audio/ogg" && codecs !== undefined && codecs !== "opus") return undefined;
  return { ...accepted, mimeType: base };
}
