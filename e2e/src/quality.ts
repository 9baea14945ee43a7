// Audio quality as a user would judge it, measured rather than heard: the job image's quality
// module (job-image/src/unmix_job/quality.py) builds speech-over-recorded-music voice notes and
// scores a reply against the clean speech. One implementation of the metrics, in Python, shared by
// the job image's tests, its quality table and these end-to-end tests.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jobVenv } from "./product.ts";

export interface SpeechOverMusic {
  /** The voice note a user sends: Ogg/Opus, speech over a real music recording. */
  note: Buffer;
  /** Folder holding speech.wav (the clean speech as mixed) and note.ogg; remove() deletes it. */
  dir: string;
  snrDb: number;
  remove(): void;
}

export interface ReplyScore {
  /** The floors the reply misses (job-image quality module's DeepFilterNet3 floors), one line each. */
  failures: string[];
  offsetMs: number;
  siSdrMixDb: number;
  siSdrReplyDb: number;
  siSdrImprovementDb: number;
  musicAttenuationDb: number;
  speechLoudnessLufs: number;
  replyLoudnessLufs: number;
  loudnessDeltaLu: number;
}

const quality = (args: string[]) =>
  JSON.parse(execFileSync(join(jobVenv(), "bin", "python"), ["-m", "unmix_job.quality", ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }));

/** A voice note of `seconds` of speech over music at `snrDb` speech-to-music ratio. */
export function speechOverMusic(seconds: number, snrDb: number, seed = 0): SpeechOverMusic {
  const dir = mkdtempSync(join(tmpdir(), "unmix-quality-"));
  const made = quality(["mixture", "--out-dir", dir, "--seconds", String(seconds), "--snr-db", String(snrDb), "--seed", String(seed)]);
  return { note: readFileSync(made.note), dir, snrDb, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Scores `reply` (media bytes as WhatsApp delivers them, in `format`) against the note's clean
 * speech, and checks it against the floors the job image's tests use for that format and ratio.
 */
export function scoreReply(m: SpeechOverMusic, reply: Buffer, format: "ogg-opus" | "m4a"): ReplyScore {
  const replyPath = join(m.dir, "reply.media");
  writeFileSync(replyPath, reply);
  const speech = join(m.dir, "speech.wav");
  return quality(["score", "--speech", speech, "--mix", join(m.dir, "note.ogg"), "--reply", replyPath, "--floors", format, "--snr-db", String(m.snrDb)]);
}
