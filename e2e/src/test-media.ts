// Media a user would send, generated with ffmpeg and espeak-ng (speech over a little "music": a
// chord of sines with a beat), in each format the product handles. Used by the end-to-end tests,
// the browser test and the journey benchmark.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function ffmpeg(args: string[]) {
  execFileSync("ffmpeg", ["-nostdin", "-loglevel", "error", "-y", ...args], { stdio: ["ignore", "ignore", "pipe"] });
}

const SENTENCE = "Hello, this is a voice note with music in the background. Please remove the music and keep my voice.";

/** Speech (espeak-ng, looped) over music, `seconds` long, as a 44.1 kHz stereo WAV in `dir`. */
function mix(dir: string, seconds: number): string {
  const speech = join(dir, "speech.wav");
  execFileSync("espeak-ng", ["-w", speech, SENTENCE], { stdio: "ignore" });
  const out = join(dir, "mix.wav");
  ffmpeg([
    "-stream_loop",
    "-1",
    "-i",
    speech,
    "-f",
    "lavfi",
    "-i",
    `sine=frequency=220:duration=${seconds}`,
    "-f",
    "lavfi",
    "-i",
    `sine=frequency=330:duration=${seconds}`,
    "-filter_complex",
    "[1][2]amix=inputs=2,volume=0.3,tremolo=f=2:d=0.6[m];[0]aresample=44100[s];[s][m]amix=inputs=2:duration=shortest,aformat=sample_rates=44100:channel_layouts=stereo",
    "-t",
    String(seconds),
    out,
  ]);
  return out;
}

export type MediaKind = "voice" | "mp3" | "mp4" | "mp4-silent" | "corrupt";

export interface GeneratedMedia {
  bytes: Buffer;
  mimeType: string;
  type: "audio" | "video";
  voice?: boolean;
}

/** `seed` changes the bytes (so the cache does not answer) without changing what is heard. */
export function makeMedia(kind: MediaKind, seconds = 4, seed = 0): GeneratedMedia {
  const dir = mkdtempSync(join(tmpdir(), "unmix-media-"));
  try {
    const meta = ["-metadata", `comment=seed-${seed}`];
    switch (kind) {
      case "voice": {
        const out = join(dir, "note.ogg");
        ffmpeg(["-i", mix(dir, seconds), "-ac", "1", "-ar", "48000", "-c:a", "libopus", "-b:a", "24k", "-application", "voip", ...meta, out]);
        return { bytes: readFileSync(out), mimeType: "audio/ogg; codecs=opus", type: "audio", voice: true };
      }
      case "mp3": {
        const out = join(dir, "song.mp3");
        ffmpeg(["-i", mix(dir, seconds), "-c:a", "libmp3lame", "-b:a", "128k", ...meta, out]);
        return { bytes: readFileSync(out), mimeType: "audio/mpeg", type: "audio", voice: false };
      }
      case "mp4":
      case "mp4-silent": {
        const out = join(dir, "clip.mp4");
        const video = ["-f", "lavfi", "-i", `testsrc2=size=320x240:rate=25:duration=${seconds}`];
        const audio = kind === "mp4" ? ["-i", mix(dir, seconds), "-c:a", "aac", "-b:a", "96k"] : ["-an"];
        ffmpeg([
          ...video,
          ...audio,
          "-c:v",
          "libx264",
          "-preset",
          "veryfast",
          "-pix_fmt",
          "yuv420p",
          "-profile:v",
          "main",
          "-movflags",
          "+faststart",
          "-shortest",
          ...meta,
          out,
        ]);
        return { bytes: readFileSync(out), mimeType: "video/mp4", type: "video" };
      }
      case "corrupt": {
        // an Ogg page header and then nothing decodable: what a broken upload looks like
        const bytes = Buffer.concat([Buffer.from("OggS"), Buffer.alloc(24), Buffer.from("OpusHead"), Buffer.alloc(6000, seed + 7)]);
        return { bytes, mimeType: "audio/ogg; codecs=opus", type: "audio", voice: true };
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** ffprobe's JSON for media bytes. */
export function probe(bytes: Buffer): {
  format: { format_name: string; duration?: string };
  streams: { codec_type: string; codec_name: string; channels?: number; sample_rate?: string }[];
} {
  const dir = mkdtempSync(join(tmpdir(), "unmix-probe-"));
  try {
    const file = join(dir, "media");
    execFileSync("tee", [file], { input: bytes, stdio: ["pipe", "ignore", "ignore"] });
    return JSON.parse(execFileSync("ffprobe", ["-v", "error", "-show_format", "-show_streams", "-of", "json", file], { encoding: "utf8" }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** MD5 of a stream's packets copied without decoding (`0:v`, `0:a`): equal means bit-identical. */
export function streamMd5(bytes: Buffer, map: string): string {
  const dir = mkdtempSync(join(tmpdir(), "unmix-md5-"));
  try {
    const file = join(dir, "media");
    execFileSync("tee", [file], { input: bytes, stdio: ["pipe", "ignore", "ignore"] });
    return execFileSync("ffmpeg", ["-nostdin", "-loglevel", "error", "-i", file, "-map", map, "-c", "copy", "-f", "md5", "-"], { encoding: "utf8" }).trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
