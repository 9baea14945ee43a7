// The pure decisions of a policy broadcast: who gets what, whether it may start, the pacer, and what
// a failed send leads to.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { GraphApiError } from "@unmix/core/whatsapp";
import { afterFailure, type Decision, noticeFor, pauseUntil, refusal, type SendFailure, takeSlot, tally, WINDOW_MS } from "../src/broadcast-plan.ts";

const NOW = Date.parse("2026-12-02T12:00:00Z");
const HOUR = 3600_000;
const text = "Our data policy changed.";
const template = { name: "policy_update", languageCode: "en" };
const recent = { lastSeen: NOW - HOUR, optedOut: false };
const old = { lastSeen: NOW - 2 * WINDOW_MS, optedOut: false };
/** Inside 24 h, but within the last 10 minutes of the window: a text might arrive after it closed. */
const closing = { lastSeen: NOW - WINDOW_MS + 5 * 60_000, optedOut: false };

describe("who gets what", () => {
  test("P15: inside the 24-hour window the text, outside it only the template, opted-out users nothing", () => {
    assert.deepEqual(noticeFor({ text, template }, recent, NOW), { send: "text" });
    assert.deepEqual(noticeFor({ text, template }, old, NOW), { send: "template" });
    assert.deepEqual(noticeFor({ text, template }, closing, NOW), { send: "template" }, "a window about to close counts as closed");
    assert.deepEqual(noticeFor({ text, template }, { ...recent, optedOut: true }, NOW), { skip: "opted-out" });
    assert.deepEqual(noticeFor({ template }, recent, NOW), { send: "template" }, "a template-only notice goes to everyone as the template");
    assert.deepEqual(noticeFor({ text }, old, NOW), { skip: "outside-window" });
  });

  test("P15: a text-only campaign refuses to start while some recipients are outside the window, with the counts", () => {
    const decisions: Decision[] = [recent, recent, old, { ...old, optedOut: true }].map((u) => noticeFor({ text }, u, NOW));
    const plan = tally(decisions);
    assert.deepEqual(plan, { text: 2, template: 0, optedOut: 1, outsideWindow: 1 });
    assert.match(refusal({ text }, plan) ?? "", /^1 recipient\(s\) are outside the 24-hour window/);
    const withTemplate = tally([recent, old].map((u) => noticeFor({ text, template }, u, NOW)));
    assert.deepEqual(withTemplate, { text: 1, template: 1, optedOut: 0, outsideWindow: 0 });
    assert.equal(refusal({ text, template }, withTemplate), undefined);
    assert.equal(refusal({ text }, tally([recent].map((u) => noticeFor({ text }, u, NOW)))), undefined, "all inside: text only is fine");
  });
});

describe("pacing", () => {
  test("sends are spaced 1/rate apart; an idle pacer sends at once", () => {
    let pace = { nextAt: 0 };
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      const slot = takeSlot(pace, NOW, 20);
      waits.push(slot.waitMs);
      pace = slot.pace;
    }
    assert.deepEqual(waits, [0, 50, 100, 150]);
    assert.equal(takeSlot(pace, NOW + 10_000, 20).waitMs, 0, "no burst owed after a quiet spell");
  });

  test("a throughput error pushes every later send back, never forward", () => {
    const pace = pauseUntil({ nextAt: NOW + 100 }, NOW + 2000);
    assert.equal(takeSlot(pace, NOW, 20).waitMs, 2000);
    assert.equal(pauseUntil(pace, NOW + 500).nextAt, NOW + 2000);
  });
});

const failure = (code: number | undefined, status = 400, timedOut = false): SendFailure => {
  const e = new GraphApiError("x", { status, code });
  return { kind: e.kind, retryable: e.retryable, delayMs: (n) => e.retryDelayMs(n), timedOut };
};

describe("after a failed send", () => {
  test("130429 (throughput) retries the user and slows the whole campaign down, exponentially", () => {
    assert.deepEqual(afterFailure(failure(130429), 0, 5, 60_000), { retry: true, delayMs: 1000, throttle: true });
    assert.deepEqual(afterFailure(failure(130429), 2, 5, 60_000), { retry: true, delayMs: 4000, throttle: true });
  });

  test("131056 (pair rate) retries that user only, after Meta's 4^X seconds (capped)", () => {
    assert.deepEqual(
      [0, 1, 2].map((n) => afterFailure(failure(131056), n, 5, 10_000)),
      [
        { retry: true, delayMs: 1000, throttle: false },
        { retry: true, delayMs: 4000, throttle: false },
        { retry: true, delayMs: 10_000, throttle: false },
      ],
    );
  });

  test("bounded: the last attempt's failure is final", () => {
    assert.deepEqual(afterFailure(failure(130429), 4, 5, 60_000), { retry: false, outcome: "failed" });
  });

  test("what retrying cannot fix fails at once; a send without an answer is never repeated (at most once)", () => {
    assert.deepEqual(afterFailure(failure(131026), 0, 5, 60_000), { retry: false, outcome: "failed" }, "undeliverable");
    assert.deepEqual(afterFailure(failure(132001), 0, 5, 60_000), { retry: false, outcome: "failed" }, "template error");
    assert.deepEqual(afterFailure(failure(undefined, 0, true), 0, 5, 60_000), { retry: false, outcome: "unconfirmed" });
    assert.deepEqual(afterFailure(failure(133004, 503), 0, 5, 60_000), { retry: true, delayMs: 1000, throttle: false }, "temporary");
  });
});
