// A policy broadcast (P15) through the whole product, the worker SIGKILLed in the middle of the
// campaign: the webhook and the worker as two processes on the real stack, the campaign in NATS
// JetStream, notices through the WhatsApp simulator (which answers 130429 and 131056 to some).
// A kill can land between a notice's "sending" record and its outcome: that recipient is counted
// `unconfirmed` and never sent again (at most once, ingress/README.md), so the test allows at
// most one such recipient per kill and checks that nobody ever gets two notices.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { lastSeenAt, type Product, ROOT, startProduct, until } from "../src/product.ts";

let p: Product;
before(async () => {
  p = await startProduct({
    gpus: 1,
    splitIngress: true,
    jobImage: { entrypoint: ["/bin/sh", join(ROOT, "controller/test/standin-job.sh")] },
    workerEnv: { BROADCAST_MESSAGES_PER_SECOND: "8", BROADCAST_RETRY_MAX_SECONDS: "2" },
  });
});
after(async () => {
  await p?.stop();
});

const admin = async (path: string, body?: unknown) => {
  const res = await fetch(`${p.adminUrl}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${p.adminToken}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

const TEXT = "Our data policy changed: results are now kept for 24 hours.";
const TEMPLATE = { name: "policy_update", languageCode: "en" };
const waId = (n: number) => `4917700${String(n).padStart(4, "0")}55`;
const recent = Array.from({ length: 25 }, (_, i) => waId(i));
const old = Array.from({ length: 25 }, (_, i) => waId(100 + i));
const stopped = [waId(200), waId(201)];

test("P15: the worker killed mid-campaign and the start repeated: nobody gets two notices, every notice of the right kind, and the campaign finishes", async (t) => {
  for (const u of [...recent, ...stopped]) {
    const { id } = await p.sim.sendUserMessage({ type: "text", body: "help", from: { waId: u } });
    await p.sim.waitForMessage((m) => m.replyTo === id, 30_000);
  }
  for (const u of stopped) {
    const { id } = await p.sim.sendUserMessage({ type: "text", body: "stop", from: { waId: u } });
    await p.sim.waitForMessage((m) => m.replyTo === id, 30_000);
  }
  // users last seen two days ago: their activity entries as the worker wrote them then (users.ts)
  await lastSeenAt(p, old, Date.now() - 2 * 24 * 3600_000);
  p.sim.setTemplate(TEMPLATE.name, TEMPLATE.languageCode, "APPROVED");
  p.sim.failNext("messages", "rate-limit", 3);
  p.sim.failNext("messages", "pair-rate-limit", 2);
  const since = p.sim.sentMessages().length;
  const notices = () => p.sim.sentMessages().slice(since);

  const request = { text: TEXT, template: TEMPLATE, idempotencyKey: "policy-change-2026-12" };
  const first = await admin("/admin/broadcasts", request);
  assert.equal(first.status, 202, JSON.stringify(first.body));
  const id = first.body.id as string;
  assert.deepEqual(await admin("/admin/broadcasts", request), { status: 200, body: { id, state: first.body.state } });

  await until("some notices to be out", () => (notices().length >= 15 ? true : undefined), 120_000);
  await p.restart("worker", { kill: true });
  const mid = await admin(`/admin/broadcasts/${id}`);
  assert.equal(mid.body.state, "Sending", "the kill landed mid-campaign");
  assert.equal((await admin("/admin/broadcasts", request)).body.id, id, "the same campaign after the restart");

  const done = await until(
    "the campaign to finish",
    async () => {
      const c = (await admin(`/admin/broadcasts/${id}`)).body;
      return c.state === "Finished" ? c : undefined;
    },
    180_000,
  );
  t.diagnostic(`finished: ${JSON.stringify(done)}`);
  const to = (u: string) => notices().filter((m) => m.to === u);
  for (const u of recent)
    assert.ok(
      to(u).every((m) => m.type === "text" && m.text === TEXT && m.status === "accepted"),
      `recent user ${u}`,
    );
  for (const u of old)
    assert.ok(
      to(u).every((m) => m.type === "template" && m.template?.name === TEMPLATE.name),
      `user ${u} outside the window`,
    );
  for (const u of stopped) assert.deepEqual(to(u), [], "an opted-out user gets nothing");
  const counts = [...recent, ...old].map((u) => to(u).length);
  assert.ok(
    counts.every((n) => n <= 1),
    "nobody gets two notices",
  );
  const unconfirmed = done.unconfirmed as number;
  assert.ok(unconfirmed <= 1, `at most the one notice in flight is unconfirmed: ${JSON.stringify(done)}`);
  assert.ok(counts.filter((n) => n === 0).length <= unconfirmed, "a user without a notice is one counted unconfirmed");
  assert.deepEqual(
    { total: done.total, sentOrUnconfirmed: (done.sent as number) + unconfirmed, skipped: done.skipped, failed: done.failed },
    { total: 50, sentOrUnconfirmed: 50, skipped: 0, failed: 0 },
  );
  const byKind = done.byKind as { text: number; template: number };
  assert.equal(byKind.text + byKind.template, done.sent);
  const extra = notices().length - (done.sent as number);
  assert.ok(extra >= 0 && extra <= unconfirmed, `each notice sent is counted once (an unconfirmed one may have gone out): ${extra}`);
});
