// Every text the bot sends, in one place: friendly, specific, and saying what to do next.
import { LIMITS } from "@unmix/api/limits";
import type { FailureClass } from "@unmix/api/separationjob";

export const replies = {
  help: [
    "👋 Send me a voice note, an audio file (MP3, M4A, OGG) or a video (MP4) with music in the background, and I'll send it back with the music removed and the voice kept.",
    "",
    "Commands:",
    "• help — this message",
    "• delete — erase your results and jobs (I'll tell you the little that is kept, and for how long)",
    "• stop — I won't process anything more from you",
    "• start — undo stop",
    "",
    "Results are cached for 24 hours so a re-send comes back instantly; then they're deleted. Our data policy explains the rest.",
  ].join("\n"),
  unsupportedType:
    "I can only clean up voice notes, audio files and videos. Send one with music in the background and I'll remove the music. Type help for more.",
  unknownText: "I work with voice notes, audio files and videos: send one and I'll remove the background music. Type help to see the commands.",
  unsupportedMedia: (mime: string) =>
    `Sorry, I can't work with this kind of file (${mime}). Please send a voice note, an MP3/M4A/OGG audio file or an MP4 video.`,
  tooLarge: (maxMb: number) => `This file is too large for me (the limit is ${maxMb} MB). Please send a shorter clip.`,
  rateLimited: (perHour: number) => `You've sent a lot in a short time (the limit is ${perHour} per hour). Please try again a little later.`,
  stopped: "Done: I won't process anything more you send. Send start at any time to use the bot again. To erase what we stored, send delete.",
  started: "Welcome back! Send a voice note or a video and I'll remove the background music.",
  optedOut: "You asked me to stop, so I'm not processing this. Send start to use the bot again.",
  /** Says truthfully what went and what is kept, and for how long (docs/data-retention.md). */
  deleted: (d: { results: number; jobs: number; optedOut: boolean; auditDays: number }) =>
    [
      `Done. I deleted ${d.results} cached result${d.results === 1 ? "" : "s"}${d.results ? ` (and ${d.results === 1 ? "its copy" : "their copies"} on WhatsApp's media server)` : ""}, ${d.jobs} pending or recent job${d.jobs === 1 ? "" : "s"} and your recent activity.`,
      "What is kept, without your number or any of your files:",
      ...(d.optedOut ? ["• your stop, until you send start"] : []),
      "• how many files you sent this hour, so the hourly limit still applies (gone within 2 hours)",
      `• a log of when your messages were handled, for ${d.auditDays} days`,
      "• technical notes on your recent jobs (Kubernetes events), for about an hour",
      "This chat itself stays in WhatsApp, under WhatsApp's own terms.",
    ].join("\n"),
  failure: {
    BadInput: "Sorry, I couldn't read this file: it seems damaged or in a format I can't decode. Could you send it again, or export it as MP3 or MP4?",
    NoAudio: "This video has no sound track, so there's no music to remove. Send a video with sound and I'll clean it up.",
    TooLong: (maxMinutes: number) => `This recording is too long for me: I can handle up to ${maxMinutes} minutes. Please send a shorter clip.`,
    Silent: "This recording seems to be silent, so there's nothing to clean up. Please check it has sound and send it again.",
    OutputTooLarge: "The cleaned file came out larger than WhatsApp allows (16 MB). Please send a shorter clip.",
    VideoTooLarge: `This video's picture is sharper or faster than I can handle (up to 4K, ${(LIMITS.maxVideoPixels / 1e6).toFixed(1)} megapixels, at ${LIMITS.maxVideoFrameRate} frames per second). Please send it in standard quality instead of HD.`,
    TooLarge: (maxMb: number) => `This file is too large for me (the limit is ${maxMb} MB). Please send a shorter clip.`,
    MediaUnavailable: "I couldn't download your file from WhatsApp (it may have expired). Please send it again.",
    Busy: "Sorry, we're very busy right now and couldn't get to your file in time. Please send it again in a few minutes.",
    DeadlineExceeded: "Sorry, processing your file took too long and was stopped. A shorter clip will work better.",
    Internal: "Sorry, something went wrong on our side while cleaning your file. Please send it again in a little while.",
  } satisfies Record<FailureClass, string | ((n: number) => string)>,
};
