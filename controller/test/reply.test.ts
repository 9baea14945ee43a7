// The reply's pure decisions: which message, which file, which words, and what a failed upload or
// send means (the at-most-once protocol depends on "unknown" never being sent again). One row per case.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { FailureClass, SeparationJob } from "@unmix/api/separationjob";
import { replies } from "@unmix/core/replies";
import { GraphApiError } from "@unmix/core/whatsapp";
import type { AfterError } from "../src/separation/graph-errors.ts";
import { type AfterSendError, afterSendError, afterUploadError, failureText, type ReplyMessage, replyMessage, resultUpload } from "../src/separation/reply.ts";
import * as S from "../src/separation/status.ts";
import { apply, at, newSj, sjAt } from "./fixtures.ts";

const FLOW = { maxInputMb: 16, maxDurationMinutes: 10 };
const graph = (status: number, code?: number, cause?: unknown) => new GraphApiError("boom", { status, code }, cause ? { cause } : undefined);
const withFormat = (format: SeparationJob["spec"]["output"]["format"], voice: boolean): SeparationJob => {
  const sj = sjAt("separated");
  return { ...sj, spec: { ...sj.spec, output: { format }, media: { ...sj.spec.media, voice } } };
};
const failed = (cls: FailureClass) => apply(sjAt("jobCreated"), S.failed(sjAt("jobCreated"), at(30), { class: cls, message: "x" }));

describe("replyMessage: which message the user gets", () => {
  const cases: [string, SeparationJob, S.ReplyKind, ReplyMessage][] = [
    ["a voice note for a voice note", withFormat("ogg-opus", true), "Result", { type: "audio", mediaId: "m1", voice: true }],
    ["audio for an Opus file that was not a voice note", withFormat("ogg-opus", false), "Result", { type: "audio", mediaId: "m1", voice: false }],
    ["audio, never a voice note, for an MP3", withFormat("mp3", true), "Result", { type: "audio", mediaId: "m1", voice: false }],
    ["audio for M4A", withFormat("m4a", false), "Result", { type: "audio", mediaId: "m1", voice: false }],
    ["a video for a video", withFormat("mp4", false), "Result", { type: "video", mediaId: "m1" }],
    ["the failure notice as text", failed("Busy"), "Failure", { type: "text", body: replies.failure.Busy }],
    ["a failure with no class recorded is Internal", sjAt("separated"), "Failure", { type: "text", body: replies.failure.Internal }],
  ];
  for (const [what, sj, kind, expected] of cases) test(what, () => assert.deepEqual(replyMessage(sj, kind, "m1", FLOW), expected));
});

describe("failureText: the limits in the words", () => {
  test("TooLarge names the input cap in MB", () => assert.match(failureText("TooLarge", FLOW), /the limit is 16 MB/));
  test("TooLong names the duration cap in minutes", () => assert.match(failureText("TooLong", FLOW), /up to 10 minutes/));
  test("the rest are fixed words", () => assert.equal(failureText("NoAudio", FLOW), replies.failure.NoAudio));
});

describe("resultUpload: the file uploaded to WhatsApp", () => {
  const cases: [SeparationJob["spec"]["output"]["format"], string][] = [
    ["ogg-opus", "unmix.ogg"],
    ["mp3", "unmix.mp3"],
    ["m4a", "unmix.m4a"],
    ["mp4", "unmix.mp4"],
  ];
  for (const [format, filename] of cases) test(`${format} → ${filename}`, () => assert.equal(resultUpload(withFormat(format, false)).filename, filename));
  test("the type the job reported wins", () => assert.equal(resultUpload(sjAt("separated")).mimeType, "audio/ogg"));
  test("without a result, the type of the format", () => assert.equal(resultUpload({ ...newSj({ output: { format: "mp4" } }) }).mimeType, "video/mp4"));
});

describe("afterUploadError: a failed upload of the result", () => {
  const cases: [string, unknown, AfterError][] = [
    [
      "refused for good (131053): the user is told it failed",
      graph(400, 131053),
      { outcome: "fail", failure: { class: "Internal", message: "WhatsApp refused the result upload: boom (media-rejected)" } },
    ],
    ["a 5xx: again after WhatsApp's wait", graph(503), { outcome: "retry", afterMs: 1000, why: "boom" }],
    ["our token: again after 30 s", graph(401, 190), { outcome: "retry", afterMs: 30_000, why: "boom" }],
    ["not WhatsApp's answer: the queue's back-off", new Error("the object store is down"), { outcome: "backOff" }],
  ];
  for (const [what, err, expected] of cases) test(`${what} → ${expected.outcome}`, () => assert.deepEqual(afterUploadError(err), expected));
});

describe("afterSendError: what a failed send means", () => {
  const refused = (retryAfterMs: number, kind: string) => ({ outcome: "refused", why: `WhatsApp refused the reply: boom (${kind})`, retryAfterMs }) as const;
  const refusedConnection = { cause: { code: "ECONNREFUSED" } };
  const cases: [string, unknown, S.ReplyKind, AfterSendError][] = [
    ["no answer at all (a reset mid-request): the message may have gone out", graph(0, undefined, { code: "ECONNRESET" }), "Result", { outcome: "unknown" }],
    ["not a Graph error: unknown too, never sent again", new Error("socket hang up"), "Failure", { outcome: "unknown" }],
    ["never connected (ECONNREFUSED): nothing went out, so again later", graph(0, undefined, refusedConnection), "Result", refused(1000, "temporary")],
    ["never connected, DNS (ENOTFOUND)", graph(0, undefined, { code: "ENOTFOUND" }), "Failure", refused(1000, "temporary")],
    ["a 5xx: again later", graph(503), "Result", refused(1000, "temporary")],
    ["the hourly quota (4): after WhatsApp's wait", graph(400, 4), "Result", refused(60_000, "rate-limit")],
    ["our token", graph(401, 190), "Failure", refused(30_000, "auth")],
    [
      "the result itself refused (131053): the user gets the failure notice",
      graph(400, 131053),
      "Result",
      { outcome: "resultRejected", why: "WhatsApp refused the reply: boom (media-rejected)" },
    ],
    ["a bad request for the result", graph(400, 100), "Result", { outcome: "resultRejected", why: "WhatsApp refused the reply: boom (bad-request)" }],
    [
      "a bad request for the failure notice: nothing else to send",
      graph(400, 100),
      "Failure",
      { outcome: "unreachable", why: "WhatsApp refused the reply: boom (bad-request)" },
    ],
    ["outside the 24-hour window (131047)", graph(400, 131047), "Result", { outcome: "unreachable", why: "WhatsApp refused the reply: boom (outside-window)" }],
    ["undeliverable (131026)", graph(400, 131026), "Failure", { outcome: "unreachable", why: "WhatsApp refused the reply: boom (undeliverable)" }],
  ];
  for (const [what, err, kind, expected] of cases) test(`${what} → ${expected.outcome}`, () => assert.deepEqual(afterSendError(err, kind), expected));
});
