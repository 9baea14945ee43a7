// What a failed media fetch means: the job fails (and why), WhatsApp is asked again (and when), or
// the work queue backs off. Pure, one row per case.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { GraphApiError, MediaHostRefusedError, MediaIntegrityError, MediaTooLargeError } from "@unmix/core/whatsapp";
import { afterFetchError } from "../src/separation/fetch.ts";
import type { AfterError } from "../src/separation/graph-errors.ts";

const DEADLINE_MS = 600_000;
const graph = (status: number, code?: number) => new GraphApiError("boom", { status, code });

describe("afterFetchError: a failed fetch", () => {
  const cases: [string, unknown, number, AfterError][] = [
    ["larger than the cap", new MediaTooLargeError(16), 0, { outcome: "fail", failure: { class: "TooLarge", message: "the media is larger than 16 bytes" } }],
    [
      "bytes not matching their sha256",
      new MediaIntegrityError(),
      0,
      { outcome: "fail", failure: { class: "MediaUnavailable", message: "the downloaded media does not match its sha256" } },
    ],
    [
      "a media URL on a host the token must not go to (P4), at once",
      new MediaHostRefusedError("media.attacker.example"),
      0,
      {
        outcome: "fail",
        failure: {
          class: "MediaUnavailable",
          message:
            "refused to send the access token to media.attacker.example, which is neither the Graph API nor an allowed media host (WHATSAPP_MEDIA_HOSTS)",
        },
      },
    ],
    [
      "media WhatsApp no longer has (131052), at once",
      graph(400, 131052),
      0,
      { outcome: "fail", failure: { class: "MediaUnavailable", message: "WhatsApp: boom (media-unavailable, code 131052)" } },
    ],
    [
      "a refusal without a Graph code names the HTTP status",
      graph(404),
      0,
      { outcome: "fail", failure: { class: "MediaUnavailable", message: "WhatsApp: boom (unknown, code 404)" } },
    ],
    ["a 5xx before the deadline: asked again after a second", graph(503), 1000, { outcome: "retry", afterMs: 1000, why: "boom" }],
    ["a rate limit: after WhatsApp's own wait", graph(400, 4), 1000, { outcome: "retry", afterMs: 60_000, why: "boom" }],
    ["our token refused (190): after 30 s, it is not the user's media", graph(401, 190), 1000, { outcome: "retry", afterMs: 30_000, why: "boom" }],
    ["no permission (10): after 30 s", graph(403, 10), 1000, { outcome: "retry", afterMs: 30_000, why: "boom" }],
    [
      "a 5xx at the deadline",
      graph(503),
      DEADLINE_MS,
      { outcome: "fail", failure: { class: "MediaUnavailable", message: "WhatsApp kept failing for 600 s: boom (temporary)" } },
    ],
    [
      "our token still refused at the deadline",
      graph(401, 190),
      DEADLINE_MS + 4_400,
      { outcome: "fail", failure: { class: "MediaUnavailable", message: "WhatsApp kept failing for 604 s: boom (auth)" } },
    ],
    ["anything else (the object store, a bug): the queue's back-off", new Error("ECONNRESET"), 0, { outcome: "backOff" }],
  ];
  for (const [what, err, ageMs, expected] of cases) {
    test(`${what} → ${expected.outcome}`, () => assert.deepEqual(afterFetchError(err, ageMs, DEADLINE_MS), expected));
  }
});
