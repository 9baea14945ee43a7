// How what the job left (manifest, output) becomes status.result, or a failure. Pure, one row per case.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { LIMITS } from "@unmix/api/limits";
import { type JobOutput, resultOf } from "../src/separation/result.ts";
import { newSj } from "./fixtures.ts";

const manifest = JSON.stringify({
  model: "htdemucs",
  engine: "demucs",
  modelId: "htdemucs-4.1.0",
  device: "cuda",
  mediaSeconds: 5,
  mimeType: "audio/ogg",
  sizeBytes: 900,
  separateSeconds: 1,
  realTimeFactor: 0.2,
  extra: "ignored",
});
const output = { size: 900, contentType: "audio/ogg" };
const ok = (o: Partial<JobOutput> = {}): JobOutput => ({ manifest, output, jobMissing: false, ...o });

describe("resultOf: the manifest becomes the result", () => {
  test("everything the job reports, as it reports it", () =>
    assert.deepEqual(resultOf(newSj(), ok(), "htdemucs"), {
      result: {
        mimeType: "audio/ogg",
        sizeBytes: 900,
        mediaSeconds: 5,
        separateSeconds: 1,
        realTimeFactor: 0.2,
        device: "cuda",
        model: "htdemucs",
        engine: "demucs",
        modelId: "htdemucs-4.1.0",
      },
    }));
  const cases: [string, JobOutput, Record<string, unknown>][] = [
    ["the size is the object's, not the manifest's", ok({ output: { size: 901, contentType: "audio/ogg" } }), { sizeBytes: 901 }],
    [
      "a job that says nothing of its model: the configured one",
      ok({ manifest: "{}", output: { size: 10, contentType: "audio/mpeg" } }),
      { mimeType: "audio/mpeg", model: "dfn3", engine: "deepfilternet3", modelId: "dfn3-0.1.0" },
    ],
    [
      "no type anywhere: the type of the requested format",
      ok({ manifest: "{}", output: { size: 10, contentType: "application/octet-stream" } }),
      { mimeType: "audio/ogg" },
    ],
    [
      "exactly WhatsApp's limit is fine",
      ok({ output: { size: LIMITS.whatsappUploadBytes, contentType: "audio/ogg" } }),
      { sizeBytes: LIMITS.whatsappUploadBytes },
    ],
  ];
  for (const [what, o, expected] of cases) {
    test(what, () => {
      const r = resultOf(newSj(), o, "dfn3");
      assert.ok("result" in r, JSON.stringify(r));
      assert.deepEqual(Object.fromEntries(Object.keys(expected).map((k) => [k, (r.result as Record<string, unknown>)[k]])), expected);
    });
  }
});

describe("resultOf: no result", () => {
  const cases: [string, JobOutput, string, RegExp][] = [
    ["no manifest", ok({ manifest: undefined }), "Internal", /^the Job completed without writing its result$/],
    ["no output", ok({ output: undefined }), "Internal", /^the Job completed without writing its result$/],
    [
      "the Job vanished and left nothing",
      ok({ manifest: undefined, jobMissing: true }),
      "Internal",
      /^the Job disappeared before the controller saw it finish/,
    ],
    ["a manifest that is not JSON", ok({ manifest: "{not json" }), "Internal", /^the result manifest is unreadable: /],
    ["a manifest with a negative duration", ok({ manifest: '{"mediaSeconds": -1}' }), "Internal", /^the result manifest is unreadable: /],
    ["a manifest that could not be read", ok({ manifest: new Error("S3 timed out") }), "Internal", /^the result manifest is unreadable: S3 timed out$/],
    [
      "a result over WhatsApp's 16 MB",
      ok({ output: { size: LIMITS.whatsappUploadBytes + 1, contentType: "audio/ogg" } }),
      "OutputTooLarge",
      /^the result is 16000001 bytes, over WhatsApp's 16000000$/,
    ],
  ];
  for (const [what, o, cls, message] of cases) {
    test(`${what} → ${cls}`, () => {
      const r = resultOf(newSj(), o, "htdemucs");
      assert.ok("failure" in r, JSON.stringify(r));
      assert.equal(r.failure.class, cls);
      assert.match(r.failure.message, message);
    });
  }
});
