// Policy broadcasts (P15) on the real stack: NATS JetStream holds the campaign, the ingress worker
// sends it through the WhatsApp simulator. 50 active users (25 of them last seen two days ago), the
// simulator answering 130429 and 131056 to some sends, the worker restarted mid-campaign and the
// start repeated: each user gets exactly one notice of the right kind, opted-out users none.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { SentMessage } from "@unmix/e2e/whatsapp-sim";
import { type Campaign, campaignId } from "../src/broadcast.ts";
import { messageRef } from "../src/envelope.ts";
import { BUCKETS, kvStream, kvSubject, STREAMS } from "../src/nats.ts";
import { UserState } from "../src/users.ts";
import { type Harness, startHarness, streamMessages, USER_KEY_SECRET, until } from "./harness.ts";

let h: Harness;
before(async () => {
  // slow enough that the restart lands mid-campaign; retries capped at 2 s to keep the test short
  h = await startHarness({ env: { BROADCAST_MESSAGES_PER_SECOND: "10", BROADCAST_RETRY_MAX_SECONDS: "2", WORKER_ACK_WAIT_SECONDS: "5" } });
});
after(async () => {
  await h?.stop();
});

const admin = (path: string, body?: unknown) =>
  fetch(`${h.ingress.adminUrl}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${h.adminToken}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

const TEXT = "We changed our data policy: results are now kept for 24 hours.";
const TEMPLATE = { name: "policy_update", languageCode: "en" };
const waId = (n: number) => `4915511${String(n).padStart(4, "0")}77`;
const recent = Array.from({ length: 25 }, (_, i) => waId(i));
const old = Array.from({ length: 25 }, (_, i) => waId(100 + i));
/** Active, but their stop arrived while the campaign was being planned (the opt-out bucket says so). */
const stopping = [waId(200), waId(201)];
/** Sent stop before: no longer active at all. */
const stopped = [waId(300), waId(301), waId(302)];

async function handledBy(wamid: string) {
  const kv = await h.nats.kv(BUCKETS.processed);
  await until(`the worker to handle ${wamid}`, async () => ((await kv.get(messageRef(wamid)))?.operation === "PUT" ? true : undefined));
}

describe("policy broadcasts (durable campaigns)", () => {
  before(async () => {
    for (const u of [...recent, ...stopped]) await handledBy((await h.sim.sendUserMessage({ type: "text", body: "help", from: { waId: u } })).id);
    for (const u of stopped) await handledBy((await h.sim.sendUserMessage({ type: "text", body: "stop", from: { waId: u } })).id);
    // last seen two days ago, as the worker would have recorded it then
    const twoDaysAgo = Date.now() - 2 * 24 * 3600_000;
    const then = new UserState(h.nats, { secret: USER_KEY_SECRET, jobsPerHour: 20, now: () => twoDaysAgo });
    for (const u of old) await then.touch(then.keysOf({ waId: u }), { waId: u }, h.sim.phoneNumberId);
    const now = new UserState(h.nats, { secret: USER_KEY_SECRET, jobsPerHour: 20 });
    const optOut = await h.nats.kv(BUCKETS.optOut);
    for (const u of stopping) {
      const keys = now.keysOf({ waId: u });
      await now.touch(keys, { waId: u }, h.sim.phoneNumberId);
      await optOut.put(keys.primary, JSON.stringify({ at: Date.now() }));
    }
    h.sim.setTemplate(TEMPLATE.name, TEMPLATE.languageCode, "APPROVED");
    h.sim.setTemplate("policy_draft", "en", "PENDING");
  });

  test("P15: a start that cannot reach everyone, or whose template is not approved, is refused and sends nothing", async () => {
    const since = h.sim.sentMessages().length;
    const textOnly = await admin("/admin/broadcasts", { text: TEXT, idempotencyKey: "text-only" });
    assert.equal(textOnly.status, 400);
    const refused = (await textOnly.json()) as { error: string; counts: Record<string, number> };
    assert.match(refused.error, /25 recipient\(s\) are outside the 24-hour window/);
    assert.deepEqual(refused.counts, { text: 25, template: 0, optedOut: 2, outsideWindow: 25 });

    const pending = await admin("/admin/broadcasts", { text: TEXT, template: { name: "policy_draft", languageCode: "en" }, idempotencyKey: "draft" });
    assert.equal(pending.status, 400);
    assert.match(((await pending.json()) as { error: string }).error, /"policy_draft" \(en\) is PENDING, not APPROVED/);
    const missing = await admin("/admin/broadcasts", { template: { name: "policy_update", languageCode: "de" }, idempotencyKey: "missing" });
    assert.equal(missing.status, 400);
    assert.match(((await missing.json()) as { error: string }).error, /no template "policy_update" in language "de"/);
    assert.ok(
      h.sim.requests.some((r) => r.method === "GET" && r.path.startsWith(`/${h.sim.version}/${h.sim.wabaId}/message_templates?name=policy_draft`)),
      "the status came from the Graph API",
    );

    const dry = await admin("/admin/broadcasts", { text: TEXT, template: TEMPLATE, dryRun: true });
    assert.equal(dry.status, 200);
    assert.deepEqual(await dry.json(), { dryRun: true, total: 52, byKind: { text: 25, template: 25 }, skipped: { optedOut: 2, outsideWindow: 0 } });
    assert.equal(h.sim.sentMessages().length, since, "nothing was sent");
    assert.deepEqual(((await (await admin("/admin/broadcasts")).json()) as { campaigns: unknown[] }).campaigns, [], "and no campaign exists");
  });

  test("P15: 50 users, rate-limited sends, the worker restarted mid-campaign and the start repeated: exactly one notice each, of the right kind", async () => {
    const since = h.sim.sentMessages().length;
    h.sim.failNext("messages", "rate-limit", 3);
    h.sim.failNext("messages", "pair-rate-limit", 2);
    const request = { text: TEXT, template: TEMPLATE, idempotencyKey: "policy-2026-12" };
    const first = await admin("/admin/broadcasts", request);
    assert.equal(first.status, 202);
    const started = (await first.json()) as { id: string; state: string };
    assert.match(started.id, /^bc-[0-9a-f]{24}$/);
    const again = await admin("/admin/broadcasts", request);
    assert.equal(again.status, 200, "a repeated start is a no-op");
    assert.equal(((await again.json()) as { id: string }).id, started.id);

    const ours = () => h.sim.sentMessages().slice(since);
    await until("a dozen notices to be out", () => (ours().length >= 12 ? true : undefined), 60_000);
    await h.restart();
    const mid = (await (await admin(`/admin/broadcasts/${started.id}`)).json()) as Campaign;
    assert.equal(mid.state, "Sending", "the restart landed mid-campaign");
    assert.ok(mid.sent < 50, JSON.stringify(mid));
    const third = await admin("/admin/broadcasts", request);
    assert.deepEqual([third.status, ((await third.json()) as { id: string }).id], [200, started.id], "still the same campaign after the restart");

    const done = await until(
      "the campaign to finish",
      async () => {
        const p = (await (await admin(`/admin/broadcasts/${started.id}`)).json()) as Campaign;
        return p.state === "Finished" ? p : undefined;
      },
      120_000,
    );
    assert.deepEqual(
      { total: done.total, sent: done.sent, skipped: done.skipped, failed: done.failed, unconfirmed: done.unconfirmed, byKind: done.byKind },
      { total: 52, sent: 50, skipped: 2, failed: 0, unconfirmed: 0, byKind: { text: 25, template: 25 } },
    );
    assert.ok(done.finishedAt && done.finishedAt >= done.startedAt);

    const to = (u: string) => ours().filter((m: SentMessage) => m.to === u);
    for (const u of recent)
      assert.deepEqual(
        to(u).map((m) => [m.type, m.text, m.status]),
        [["text", TEXT, "accepted"]],
        `recent user ${u}`,
      );
    for (const u of old)
      assert.deepEqual(
        to(u).map((m) => [m.type, m.template?.name]),
        [["template", TEMPLATE.name]],
        `user ${u} outside the window`,
      );
    for (const u of [...stopping, ...stopped]) assert.deepEqual(to(u), [], `opted-out user ${u}`);
    assert.equal(ours().length, 50);

    const listed = ((await (await admin("/admin/broadcasts")).json()) as { campaigns: Campaign[] }).campaigns;
    assert.deepEqual(
      listed.map((c) => [c.id, c.state, c.sent]),
      [[started.id, "Finished", 50]],
    );
    const metrics = await (await fetch(`${h.ingress.url}/metrics`)).text();
    assert.match(metrics, /^unmix_broadcast_campaigns_total\{event="finished"\} 1$/m);
    assert.match(metrics, /^unmix_broadcast_pending 0$/m);
  });

  test("P5: each start is audited with the operator and the counts, and so is the campaign's end", async () => {
    const entries = (await streamMessages(h.nats, STREAMS.audit, "unmix.audit.admin")).map((m) => JSON.parse(m.data) as Record<string, unknown>);
    const starts = entries.filter((e) => e.action === "broadcast" && e.outcome === "done");
    assert.deepEqual(
      starts.map((e) => e.counts),
      [
        { refused: 1 },
        { refused: 1 },
        { refused: 1 },
        { text: 25, template: 25, optedOut: 2, outsideWindow: 0, total: 52, created: 1 },
        { text: 25, template: 25, optedOut: 2, outsideWindow: 0, total: 52, created: 0 },
        { text: 25, template: 25, optedOut: 2, outsideWindow: 0, total: 52, created: 0 },
      ],
    );
    assert.ok(
      starts.every((e) => e.operator === h.adminUser && h.adminUser.startsWith("system:serviceaccount:")),
      "the operator's own name",
    );
    const finished = entries.filter((e) => e.action === "broadcast-finished");
    assert.deepEqual(
      finished.map((e) => e.counts),
      [{ total: 52, sent: 50, skipped: 2, failed: 0, unconfirmed: 0, text: 25, template: 25 }],
    );
    assert.deepEqual(
      finished.map((e) => e.operator),
      [h.adminUser],
      "the end names the operator who started it",
    );
    const text = JSON.stringify(entries);
    for (const u of [...recent, ...old]) assert.ok(!text.includes(u), "no number in the audit trail");
  });

  const finished = (id: string) =>
    until(
      `campaign ${id} to finish`,
      async () => {
        const p = (await (await admin(`/admin/broadcasts/${id}`)).json()) as Campaign;
        return p.state === "Finished" ? p : undefined;
      },
      120_000,
    );
  const counts = (p: Campaign) => ({ total: p.total, sent: p.sent, skipped: p.skipped, failed: p.failed, unconfirmed: p.unconfirmed, byKind: p.byKind });
  const keyOf = (u: string) => new UserState(h.nats, { secret: USER_KEY_SECRET, jobsPerHour: 20 }).keyOf(u);

  test("P15: a notice whose send began when its worker died is counted unconfirmed and never sent again (at most once)", async () => {
    const idempotencyKey = "after-a-crash";
    const id = campaignId(idempotencyKey);
    const victim = recent[1] as string;
    // what a worker killed between its "sending" record and the Graph API's answer leaves behind
    await (await h.nats.kv(BUCKETS.broadcasts)).put(`notice.${id}.${keyOf(victim)}`, JSON.stringify({ state: "sending", kind: "text" }));
    const since = h.sim.sentMessages().length;
    const res = await admin("/admin/broadcasts", { text: "A second notice.", template: TEMPLATE, idempotencyKey });
    assert.equal(res.status, 202);
    const done = await finished(id);
    assert.deepEqual(counts(done), { total: 52, sent: 49, skipped: 2, failed: 0, unconfirmed: 1, byKind: { text: 24, template: 25 } });
    const sent = h.sim.sentMessages().slice(since);
    assert.deepEqual(
      sent.filter((m) => m.to === victim),
      [],
      "not sent again",
    );
    for (const u of [...recent, ...old].filter((x) => x !== victim)) assert.equal(sent.filter((m) => m.to === u).length, 1, u);
  });

  test("P15: a start that stopped after writing its campaign, before its recipients, is finished by the next worker to start", async () => {
    const id = campaignId("half-started");
    const half: Campaign = {
      id,
      state: "Preparing",
      notice: { template: TEMPLATE },
      operator: "shared-admin-token",
      total: 52,
      planned: { text: 0, template: 50, optedOut: 2, outsideWindow: 0 },
      sent: 0,
      skipped: 2,
      failed: 0,
      unconfirmed: 0,
      byKind: { text: 0, template: 0 },
      startedAt: new Date().toISOString(),
    };
    await (await h.nats.kv(BUCKETS.broadcasts)).create(`campaign.${id}`, JSON.stringify(half));
    const since = h.sim.sentMessages().length;
    await h.restart();
    const done = await finished(id);
    assert.deepEqual(counts(done), { total: 52, sent: 50, skipped: 2, failed: 0, unconfirmed: 0, byKind: { text: 0, template: 50 } });
    const sent = h.sim.sentMessages().slice(since);
    for (const u of [...recent, ...old])
      assert.deepEqual(
        sent.filter((m) => m.to === u).map((m) => [m.type, m.template?.name]),
        [["template", TEMPLATE.name]],
        u,
      );
  });

  test("P14: purging a user removes their broadcast outcomes with the rest of their data", async () => {
    const u = recent[0] as string;
    const key = keyOf(u);
    const records = async () => {
      const filter = kvSubject(BUCKETS.broadcasts, `notice.*.${key}`);
      const info = await h.nats.jsm.streams.info(kvStream(BUCKETS.broadcasts), { subjects_filter: filter });
      return Object.values(info.state.subjects ?? {}).reduce((a, n) => a + n, 0);
    };
    assert.equal(await records(), 3, "each campaign recorded their notice");
    const res = await admin("/admin/purge", { phone: `+${u}` });
    assert.equal(res.status, 200);
    assert.equal(await records(), 0);
  });
});
