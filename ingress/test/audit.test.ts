// The audit trail (P5) and the authenticated inbound path, on the real stack: every message leaves
// its entries before it is acknowledged, an audit stream that refuses writes holds messages back
// until it takes them again, admin actions are recorded with the operator and counts, and the
// worker handles only what the webhook signed.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { userKey } from "@unmix/core/privacy";
import { replies } from "@unmix/core/replies";
import type { NatsUserName } from "@unmix/e2e/stack/nats";
import { connect, DiscardPolicy, Events, type NatsConnection } from "nats";
import { messageRef } from "../src/envelope.ts";
import { BUCKETS, STREAMS, subjects } from "../src/nats.ts";
import { asWebhook, type Harness, startHarness, streamMessages, USER_KEY_SECRET, until } from "./harness.ts";

let h: Harness;
before(async () => {
  h = await startHarness({ env: { WORKER_MAX_DELIVER: "50", WORKER_BACKOFF_SECONDS: "0.5", WORKER_ACK_WAIT_SECONDS: "5" } });
});
after(async () => {
  await h?.stop();
});

let seq = 0;
const newUser = () => {
  const n = String(++seq).padStart(4, "0");
  return { waId: `4915112${n}77`, name: `Audit Tester ${n}` };
};
type User = ReturnType<typeof newUser>;
const keyOf = (u: User) => userKey(u.waId, USER_KEY_SECRET);

interface Entry {
  event: string;
  ref?: string;
  outcome?: string;
  reason?: string;
  action?: string;
  operator?: string;
  counts?: Record<string, number>;
}
const auditEntries = async () => (await streamMessages(h.nats, STREAMS.audit)).map((m) => ({ ...(JSON.parse(m.data) as Entry), raw: m.data }));
const entriesOf = async (wamid: string) => (await auditEntries()).filter((e) => e.ref === messageRef(wamid));

async function handled(wamid: string): Promise<string> {
  const kv = await h.nats.kv(BUCKETS.processed);
  return until(`the worker to handle ${wamid}`, async () => {
    const e = await kv.get(messageRef(wamid));
    return e?.operation === "PUT" ? e.string() : undefined;
  });
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${h.ingress.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

/** Makes the audit stream refuse every new entry (full, discarding new) until the returned function is called. */
async function refuseAuditWrites(): Promise<() => Promise<void>> {
  const info = await h.nats.jsm.streams.info(STREAMS.audit);
  await h.nats.jsm.streams.update(STREAMS.audit, { discard: DiscardPolicy.New, max_msgs: Math.max(info.state.messages, 1) });
  if (info.state.messages === 0) await h.nats.publish("unmix.audit.handled", "{}"); // fill the one place
  return async () => {
    await h.nats.jsm.streams.update(STREAMS.audit, { discard: info.config.discard, max_msgs: info.config.max_msgs });
  };
}

const admin = (path: string, init: RequestInit = {}) =>
  fetch(`${h.ingress.adminUrl}${path}`, { ...init, headers: { authorization: `Bearer ${h.adminToken}`, "content-type": "application/json", ...init.headers } });

describe("P5: the audit trail", () => {
  test("P5: a handled message leaves exactly its received and handled entries, by ref, with no number, name or wamid", async () => {
    const u = newUser();
    const sent = await h.sim.sendUserMessage({ type: "text", body: "help", from: u });
    assert.equal(await handled(sent.id), "help");
    const mine = await until("both entries", async () => {
      const e = await entriesOf(sent.id);
      return e.length >= 2 ? e : undefined;
    });
    assert.deepEqual(
      mine.map((e) => [e.event, e.outcome]),
      [
        ["received", undefined],
        ["handled", "help"],
      ],
    );
    for (const e of await auditEntries()) {
      for (const secret of [u.waId, u.name, sent.id, "wamid.", keyOf(u)]) assert.ok(!e.raw.includes(secret), `no ${secret} in ${e.raw}`);
    }
  });

  test("P5: while the audit stream refuses writes a message is not acknowledged nor answered; once it takes them, it is handled once with its entries", async () => {
    const u = newUser();
    const restore = await refuseAuditWrites();
    let sent: { id: string };
    try {
      sent = await h.sim.sendUserMessage({ type: "text", body: "help", from: u });
      // the webhook took it (JetStream has it); the worker tries and gives it back, again and again
      await until("a redelivery", async () => ((await h.nats.jsm.consumers.info(STREAMS.inbound, "worker")).num_redelivered > 0 ? true : undefined));
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(h.sim.sentMessages().filter((m) => m.replyTo === sent.id).length, 0, "no reply without an audit entry");
      assert.equal(await (await h.nats.kv(BUCKETS.processed)).get(messageRef(sent.id)), null, "not recorded as processed");
      const consumer = await h.nats.jsm.consumers.info(STREAMS.inbound, "worker");
      assert.ok(consumer.num_ack_pending + consumer.num_pending >= 1, "still in the inbound stream, unacknowledged");
    } finally {
      await restore();
    }
    const reply = await h.sim.waitForMessage((m) => m.replyTo === sent.id);
    assert.equal(reply.text, replies.help);
    await handled(sent.id);
    const mine = await until("both entries", async () => {
      const e = await entriesOf(sent.id);
      return e.length >= 2 ? e : undefined;
    });
    assert.deepEqual(
      mine.map((e) => e.event),
      ["received", "handled"],
    );
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(h.sim.sentMessages().filter((m) => m.replyTo === sent.id).length, 1, "answered exactly once");
  });

  test("P5: admin actions are audited with the operator's identity and their counts; without the audit trail they do nothing", async () => {
    // `help` makes the user active (a key-value entry a purge erases; a purge keeps an opt-out)
    const u = newUser();
    const sent = await h.sim.sendUserMessage({ type: "text", body: "help", from: u });
    assert.equal(await handled(sent.id), "help");
    assert.equal((await admin("/admin/jobs?limit=5")).status, 200);
    const purge = await admin("/admin/purge", { method: "POST", body: JSON.stringify({ phone: `+${u.waId}` }) });
    assert.equal(purge.status, 200);
    const erased = (await purge.json()) as Record<string, number> & { optedOut: boolean };
    const entries = (await auditEntries()).filter((e) => e.event === "admin");
    const purges = entries.filter((e) => e.action === "purge");
    assert.deepEqual(
      purges.slice(-2).map((e) => [e.outcome, e.operator]),
      [
        ["started", h.adminUser],
        ["done", h.adminUser],
      ],
    );
    assert.deepEqual(purges.at(-1)?.counts, { ...erased, optedOut: erased.optedOut ? 1 : 0 }, "the counts, the opt-out kept as 0/1");
    assert.ok(erased.keyValueEntries && erased.keyValueEntries > 0, "the purge erased something");
    assert.ok(entries.some((e) => e.action === "list-jobs" && e.outcome === "done" && typeof e.counts?.jobs === "number"));
    for (const e of entries) assert.ok(!e.raw.includes(u.waId), "no number in an admin entry");

    // the audit trail refuses writes: the purge is refused and erases nothing
    const v = newUser();
    const help = await h.sim.sendUserMessage({ type: "text", body: "help", from: v });
    assert.equal(await handled(help.id), "help");
    const restore = await refuseAuditWrites();
    try {
      const refused = await admin("/admin/purge", { method: "POST", body: JSON.stringify({ phone: `+${v.waId}` }) });
      assert.equal(refused.status, 503);
      assert.equal((await admin("/admin/jobs")).status, 503, "nothing shown without an entry");
    } finally {
      await restore();
    }
    const active = await (await h.nats.kv(BUCKETS.active)).get(keyOf(v));
    assert.equal(active?.operation, "PUT", "the user's entry is still there");
  });
});

describe("the inbound path is authenticated", () => {
  test("an unsigned, a forged and a re-addressed inbound message are dead-lettered, audited and counted, and change nothing", async () => {
    const u = newUser();
    const stop = await h.sim.sendUserMessage({ type: "text", body: "stop", from: u });
    assert.equal(await handled(stop.id), "stopped");
    const other = newUser();
    const before = {
      unsigned: await metric("unmix_worker_dead_letters_total", 'reason="unsigned"'),
      forged: await metric("unmix_worker_dead_letters_total", 'reason="forged"'),
    };
    // what a pod with NATS access but without the key could try: opt the user back in, erase them
    const command = (id: string, c: string) =>
      JSON.stringify({ v: 1, id, timestamp: "1795600000", phoneNumberId: h.sim.phoneNumberId, sender: { waId: u.waId }, type: "text", command: c });
    const subject = subjects.inbound(keyOf(u));
    const unsigned = { id: `wamid.UNSIGNED${Date.now()}`, command: "start" };
    await h.nats.publish(subject, command(unsigned.id, unsigned.command), { msgId: unsigned.id });
    const forged = { id: `wamid.FORGED${Date.now()}`, command: "delete" };
    await h.nats.publish(subject, command(forged.id, forged.command), {
      msgId: forged.id,
      headers: { "Unmix-Signature": `v1=${"ab".repeat(32)}` },
    });
    // signed for another user's subject, then re-addressed
    const moved = { id: `wamid.MOVED${Date.now()}`, command: "delete" };
    const payload = command(moved.id, moved.command);
    await h.nats.publish(subject, payload, { ...asWebhook(subjects.inbound(keyOf(other)), payload, moved.id) });

    const dead = await until("three dead letters", async () => {
      const d = await streamMessages(h.nats, STREAMS.deadLetter, subjects.deadLetter(keyOf(u)));
      return d.length >= 3 ? d : undefined;
    });
    assert.deepEqual(dead.map((d) => JSON.parse(d.data).id).sort(), [forged.id, moved.id, unsigned.id].sort());
    assert.equal(await metric("unmix_worker_dead_letters_total", 'reason="unsigned"'), before.unsigned + 1);
    assert.equal(await metric("unmix_worker_dead_letters_total", 'reason="forged"'), before.forged + 2);
    const audited = (await auditEntries()).filter((e) => e.event === "dead-lettered");
    for (const [m, reason] of [
      [unsigned, "unsigned"],
      [forged, "forged"],
      [moved, "forged"],
    ] as const)
      assert.ok(
        audited.some((e) => e.ref === messageRef(m.id) && e.reason === reason),
        `${m.id} audited as ${reason}`,
      );
    // nothing changed: still opted out, nothing answered, nothing recorded as processed
    assert.equal((await (await h.nats.kv(BUCKETS.optOut)).get(keyOf(u)))?.operation, "PUT");
    const processed = await h.nats.kv(BUCKETS.processed);
    for (const m of [unsigned, forged, moved]) {
      assert.equal(h.sim.sentMessages().filter((s) => s.replyTo === m.id).length, 0, "no reply");
      assert.equal(await processed.get(messageRef(m.id)), null);
    }
  });
});

describe("NATS permissions", () => {
  /** What the server refused of `act`, as "publish <subject>" / "subscription <subject>". */
  async function refusals(user: NatsUserName, act: (nc: NatsConnection) => void): Promise<string[]> {
    const nats = h.stack.nats as NonNullable<Harness["stack"]["nats"]>;
    const nc = await connect(nats.connectOptions(user));
    const seen: string[] = [];
    (async () => {
      for await (const s of nc.status()) {
        const p = (s as { permissionContext?: { operation: string; subject: string } }).permissionContext;
        if (s.type === Events.Error && p) seen.push(`${p.operation} ${p.subject}`);
      }
    })().catch(() => {});
    act(nc);
    await nc.flush();
    await new Promise((r) => setTimeout(r, 500));
    await nc.close();
    return seen.sort();
  }
  const sub = (nc: NatsConnection, subject: string) => nc.subscribe(subject, { callback: () => {} });

  test("each component's user may publish and subscribe to its own part only", async () => {
    assert.deepEqual(
      await refusals("webhook", (nc) => {
        nc.publish("unmix.audit.webhook-error", "{}"); // its own
        sub(nc, "unmix.inbound.>"); // read numbers off the queue
        nc.publish("$JS.API.STREAM.MSG.GET.UNMIX_INBOUND", "{}");
        nc.publish("$JS.API.CONSUMER.CREATE.UNMIX_INBOUND", "{}");
        nc.publish("unmix.audit.received", "{}"); // another component's entry
        sub(nc, "_INBOX_unmix_worker.>"); // another component's replies
      }),
      [
        "publish $JS.API.CONSUMER.CREATE.UNMIX_INBOUND",
        "publish $JS.API.STREAM.MSG.GET.UNMIX_INBOUND",
        "publish unmix.audit.received",
        "subscription _INBOX_unmix_worker.>",
        "subscription unmix.inbound.>",
      ],
    );
    assert.deepEqual(
      await refusals("worker", (nc) => {
        nc.publish("unmix.inbound.permission-test", "{}"); // inject a message
        nc.publish("unmix.audit.job-created", "{}");
      }),
      ["publish unmix.audit.job-created", "publish unmix.inbound.permission-test"],
    );
    assert.deepEqual(
      await refusals("controller", (nc) => {
        nc.publish("unmix.audit.result-expired", "{}"); // its own
        nc.publish("unmix.inbound.permission-test", "{}");
        sub(nc, "unmix.>");
        nc.publish("$JS.API.STREAM.MSG.GET.UNMIX_INBOUND", "{}");
        nc.publish("$KV.unmix_active.x", "{}");
        sub(nc, "_INBOX.>");
      }),
      [
        "publish $JS.API.STREAM.MSG.GET.UNMIX_INBOUND",
        "publish $KV.unmix_active.x",
        "publish unmix.inbound.permission-test",
        "subscription _INBOX.>",
        "subscription unmix.>",
      ],
    );
  });

  test("a client without credentials is refused", async () => {
    await assert.rejects(connect({ servers: h.stack.nats?.url, reconnect: false }), /authorization/i);
  });
});
