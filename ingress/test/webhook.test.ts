// POST /webhook on real NATS JetStream (ROLE=webhook, so what it published stays in the stream to
// be looked at): signatures over the exact bytes, limits and shapes refused before anything is
// touched, every message published once with its wamid as the deduplication id, status receipts and
// errors in the audit stream and metrics, 503 while JetStream is down and nothing lost once it's back.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { escapeNonAscii, signWebhookBody } from "@unmix/core/whatsapp";
import { buildMessage, messagesEnvelope, metaJson } from "@unmix/e2e/whatsapp-sim/webhooks";
import { STREAMS } from "../src/nats.ts";
import { APP_SECRET, type Harness, startHarness, streamMessages, USER_KEY_SECRET, until, VERIFY_TOKEN } from "./harness.ts";

let h: Harness;
before(async () => {
  h = await startHarness({ components: ["nats"] });
});
after(async () => h?.stop());

const business = () => ({ wabaId: h.sim.wabaId, phoneNumberId: h.sim.phoneNumberId, displayPhoneNumber: h.sim.displayPhoneNumber });
let counter = 0;
const wamid = () => `wamid.TEST${Date.now().toString(36)}${++counter}`;
const T = Date.parse("2026-11-25T10:00:00Z");

/** The body of a text message from `sender`, as Meta's bytes (non-ASCII escaped). */
function textBody(id: string, sender = { waId: "4917600000001", name: "Zoë Müller-Łukasz 🎧" }) {
  return metaJson(messagesEnvelope(business(), [buildMessage({ type: "text", body: "help", id }, sender, T, undefined)]));
}

async function post(body: string | Buffer, headers: Record<string, string> = {}) {
  const res = await fetch(`${h.ingress.url}/webhook`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  return { status: res.status, text: await res.text() };
}
const signed = (body: string | Buffer) => ({ "x-hub-signature-256": signWebhookBody(body, APP_SECRET) });

const inbound = async () => (await streamMessages(h.nats, STREAMS.inbound)).map((m) => ({ ...m, json: JSON.parse(m.data) }));
const inboundIds = async () => (await inbound()).map((m) => m.json.id as string);
const audit = async (event?: string) =>
  (await streamMessages(h.nats, STREAMS.audit, event ? `unmix.audit.${event}` : undefined)).map((m) => JSON.parse(m.data));
async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${h.ingress.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

describe("GET /webhook (verification handshake)", () => {
  test("the right verify token gets the challenge back as plain text", async () => {
    const res = await fetch(`${h.ingress.url}/webhook?hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=1158201444`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
    assert.equal(await res.text(), "1158201444");
  });

  test("a wrong token, a wrong mode or a missing challenge gets 403", async () => {
    for (const q of [
      `hub.mode=subscribe&hub.verify_token=wrong-token&hub.challenge=1`,
      `hub.mode=unsubscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=1`,
      `hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}`,
      `hub.mode=subscribe&hub.challenge=1`,
    ]) {
      const res = await fetch(`${h.ingress.url}/webhook?${q}`);
      assert.equal(res.status, 403, q);
      assert.notEqual(await res.text(), "1");
    }
  });
});

describe("signatures over the exact raw bytes", () => {
  test("Meta's bytes with non-ASCII escaped as \\uXXXX are accepted and published", async () => {
    const id = wamid();
    const body = textBody(id);
    assert.match(body, /\\u00eb/, "the simulator escapes ë as Meta does");
    assert.equal((await post(body, signed(body))).status, 200);
    assert.ok((await inboundIds()).includes(id));
  });

  test("odd whitespace (pretty-printed, tabs, CRLF) is fine when it is what was signed", async () => {
    const id = wamid();
    const pretty = JSON.stringify(JSON.parse(textBody(id)), null, "\t").replaceAll("\n", "\r\n");
    const body = escapeNonAscii(`  \r\n${pretty}\n\n `);
    assert.equal((await post(body, signed(body))).status, 200);
    assert.ok((await inboundIds()).includes(id));
  });

  test("unescaped UTF-8 bytes verify against their own signature, never against the escaped form's", async () => {
    const id = wamid();
    const escaped = textBody(id);
    const utf8 = JSON.stringify(JSON.parse(escaped));
    assert.notEqual(utf8, escaped);
    assert.equal((await post(utf8, signed(escaped))).status, 401, "a re-serialised body must not match the signature of the original bytes");
    assert.equal((await post(utf8, signed(utf8))).status, 200);
    assert.ok((await inboundIds()).includes(id));
  });

  test("a wrong, malformed or missing signature gets 401 and nothing is published or audited", async () => {
    const before = {
      inbound: (await inbound()).length,
      audit: (await audit()).length,
      unauthorized: await metric("unmix_webhook_requests_total", 'outcome="unauthorized"'),
    };
    const id = wamid();
    const body = textBody(id);
    const good = signWebhookBody(body, APP_SECRET);
    const cases: Record<string, string>[] = [
      {},
      { "x-hub-signature-256": signWebhookBody(body, `${APP_SECRET}-wrong`) },
      { "x-hub-signature-256": good.slice(7) }, // no sha256= prefix
      { "x-hub-signature-256": `sha1=${good.slice(7)}` },
      { "x-hub-signature-256": `${good.slice(0, -2)}00` },
      { "x-hub-signature-256": "sha256=" },
      { "x-hub-signature": good }, // the legacy header name alone
      { "x-hub-signature-256": signWebhookBody(`${body} `, APP_SECRET) }, // one byte more than what is sent
    ];
    for (const headers of cases) assert.equal((await post(body, headers)).status, 401, JSON.stringify(headers));
    // the same, as the simulator sends them
    const viaSim = await h.sim.deliverRaw(body, { signature: "wrong" });
    const none = await h.sim.deliverRaw(body, { signature: "none" });
    assert.deepEqual(
      [...viaSim, ...none].map((d) => d.status),
      [401, 401],
    );
    // even an invalid body is not looked at before the signature
    assert.equal((await post("{not json", {})).status, 401);
    assert.equal((await inbound()).length, before.inbound);
    assert.equal((await audit()).length, before.audit);
    assert.ok(!(await inboundIds()).includes(id));
    assert.equal(await metric("unmix_webhook_requests_total", 'outcome="unauthorized"'), before.unauthorized + cases.length + 3);
  });
});

describe("limits and shapes", () => {
  test("a body over 3 MB gets 413, signed or not, and nothing is published", async () => {
    const count = (await inbound()).length;
    const big = Buffer.alloc(3 * 1024 * 1024 + 1, 0x20);
    assert.equal((await post(big, signed(big))).status, 413);
    assert.equal((await inbound()).length, count);
  });

  test("a signed body that is not JSON gets 400; valid JSON that is not a WhatsApp envelope gets 422", async () => {
    const count = (await inbound()).length;
    for (const body of ["{not json", "", "\u0000"]) assert.equal((await post(body, signed(body))).status, 400, JSON.stringify(body));
    for (const body of [
      '{"object":"page","entry":[]}',
      "[]",
      '"text"',
      '{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"1"},"messages":[{"id":"wamid.x","timestamp":"1","type":"text"}]}}]}]}',
    ]) {
      const res = await post(body, signed(body));
      assert.equal(res.status, 422, body);
    }
    assert.equal((await inbound()).length, count);
  });
});

describe("publishing", () => {
  test("every message type is published once, keyed by the sender's hash, with only P1 fields", async () => {
    const from = { waId: "4917600000002", name: "Every Type" };
    const types = [
      { type: "audio" },
      { type: "video", caption: "secret caption" },
      { type: "image" },
      { type: "document", filename: "secret.pdf" },
      { type: "sticker" },
      { type: "text", body: "hello there" },
      { type: "location", latitude: 1, longitude: 2, address: "secret address" },
      { type: "reaction", messageId: "wamid.earlier", emoji: "👍" },
      { type: "unsupported", unsupportedType: "poll" },
    ] as const;
    const ids: string[] = [];
    for (const t of types) {
      const sent = await h.sim.sendUserMessage({ ...t, from } as Parameters<typeof h.sim.sendUserMessage>[0]);
      assert.deepEqual(
        sent.deliveries.map((d) => d.status),
        [200],
        t.type,
      );
      ids.push(sent.id);
    }
    const published = (await inbound()).filter((m) => ids.includes(m.json.id));
    assert.deepEqual(published.map((m) => m.json.type).sort(), types.map((t) => t.type).sort());
    const { userKey } = await import("@unmix/core/privacy");
    for (const m of published) {
      assert.equal(m.subject, `unmix.inbound.${userKey(from.waId, USER_KEY_SECRET)}`);
      assert.equal(m.headers["Nats-Msg-Id"], m.json.id);
      assert.deepEqual(
        Object.keys(m.json).filter((k) => !["v", "id", "timestamp", "phoneNumberId", "sender", "type", "media", "command", "errorCodes"].includes(k)),
        [],
      );
      for (const secret of ["secret", "hello there", "👍", "wamid.earlier"]) assert.ok(!m.data.includes(secret), `${m.json.type} kept ${secret}`);
    }
    const unsupported = published.find((m) => m.json.type === "unsupported");
    assert.deepEqual(unsupported?.json.errorCodes, [131051]);
  });

  test("a batch is published message by message, in every layout", async () => {
    for (const layout of ["messages", "changes", "entries"] as const) {
      const users = [{ waId: "4917600000003" }, { waId: "4917600000004" }, { userId: "US.77700000000000000001" }];
      const result = await h.sim.sendBatch(
        users.map((from, i) => ({ type: "text", body: `m${i}`, from })),
        { layout },
      );
      assert.deepEqual(
        result.deliveries.map((d) => d.status),
        [200],
      );
      const ids = await inboundIds();
      for (const id of result.ids) assert.ok(ids.includes(id), `${layout}: ${id} missing`);
    }
  });

  test("duplicates, one after another or at the same moment, are stored once", async () => {
    for (const concurrent of [false, true]) {
      const sent = await h.sim.sendUserMessage({ type: "audio", from: { waId: "4917600000005" } }, { duplicates: 5, concurrent });
      assert.deepEqual(
        sent.deliveries.map((d) => d.status),
        [200, 200, 200, 200, 200, 200],
      );
      assert.equal((await inboundIds()).filter((id) => id === sent.id).length, 1, concurrent ? "concurrent" : "sequential");
    }
    assert.ok((await metric("unmix_webhook_messages_total", 'type="audio",duplicate="true"')) >= 10);
  });

  test("status receipts and webhook errors go to the audit stream (no recipient) and to metrics", async () => {
    const before = await metric("unmix_webhook_statuses_total", 'status="played"');
    const recipient = "4917600000006";
    for (const status of ["sent", "delivered", "read", "played"] as const) await h.sim.sendReceipt({ messageId: "wamid.OURS1", status, recipient });
    await h.sim.sendReceipt({ messageId: "wamid.OURS2", status: "failed", recipient, error: { code: 131047, title: "Re-engagement message" } });
    // Meta's redelivery of a receipt is stored once
    await h.sim.sendReceipt({ messageId: "wamid.OURS1", status: "read", recipient });
    const errorBody = metaJson({
      object: "whatsapp_business_account",
      entry: [
        {
          id: h.sim.wabaId,
          changes: [
            {
              field: "messages",
              value: {
                messaging_product: "whatsapp",
                metadata: { phone_number_id: h.sim.phoneNumberId },
                errors: [{ code: 131000, title: "Something went wrong" }],
              },
            },
          ],
        },
      ],
    });
    assert.deepEqual(
      (await h.sim.deliverRaw(errorBody)).map((d) => d.status),
      [200],
    );

    const statuses = await audit("status");
    const { messageRef } = await import("../src/envelope.ts");
    const ours1 = statuses.filter((s) => s.ref === messageRef("wamid.OURS1")).map((s) => s.status);
    assert.deepEqual(ours1, ["sent", "delivered", "read", "played"]);
    assert.deepEqual(statuses.find((s) => s.ref === messageRef("wamid.OURS2"))?.errorCodes, [131047]);
    assert.ok(!JSON.stringify(statuses).includes(recipient) && !JSON.stringify(statuses).includes("wamid.OURS"));
    assert.ok((await audit("webhook-error")).some((e) => e.code === 131000));
    assert.equal(await metric("unmix_webhook_statuses_total", 'status="played"'), before + 1);
    assert.ok((await metric("unmix_webhook_errors_total", 'code="131047"')) >= 1);
    assert.ok((await metric("unmix_webhook_errors_total", 'code="131000"')) >= 1);
  });
});

describe("JetStream unavailable", () => {
  test("while NATS is down the webhook answers 503; once it is back Meta's redelivery is accepted and nothing is lost", async () => {
    const nats = h.stack.nats as NonNullable<typeof h.stack.nats>;
    const accepted = await h.sim.sendUserMessage({ type: "audio", from: { waId: "4917600000007" } });
    assert.deepEqual(
      accepted.deliveries.map((d) => d.status),
      [200],
    );
    await nats.crash();
    let restarted = false;
    try {
      const during = await h.sim.sendUserMessage({ type: "video", from: { waId: "4917600000007" } });
      assert.deepEqual(
        during.deliveries.map((d) => d.status),
        [503],
      );
      const ready = await fetch(`${h.ingress.url}/readyz`);
      assert.equal(ready.status, 503);
      await nats.start();
      restarted = true;
      await until("the ingress to reconnect", async () => ((await fetch(`${h.ingress.url}/readyz`)).status === 200 ? true : undefined));
      await until("the observer to reconnect", async () => ((await h.nats.ping()) ? true : undefined));
      // Meta delivers the same bytes again
      assert.deepEqual(
        (await h.sim.deliverRaw(during.body)).map((d) => d.status),
        [200],
      );
      const ids = await inboundIds();
      assert.ok(ids.includes(accepted.id), "a message acknowledged before the crash survives it (file store)");
      assert.ok(ids.includes(during.id), "the message refused with 503 is stored after the redelivery");
      assert.equal(ids.filter((id) => id === during.id).length, 1);
    } finally {
      if (!restarted) await nats.start();
    }
  });
});

describe("the process", () => {
  const main = new URL("../src/main.ts", import.meta.url).pathname;
  const run = (env: Record<string, string>) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [main], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (c) => {
        stderr += c;
      });
      child.on("exit", (code) => resolve({ code, stderr }));
    });

  test("a missing or bad variable stops it with status 78 and a message naming the variable", async () => {
    const base: Record<string, string> = { ...h.env, ROLE: "webhook", PORT: "0" };
    const { WHATSAPP_APP_SECRET: _unset, ...missing } = base;
    const r1 = await run(missing);
    assert.equal(r1.code, 78);
    assert.match(r1.stderr, /WHATSAPP_APP_SECRET is not set/);
    const r2 = await run({ ...base, PORT: "eighty" });
    assert.equal(r2.code, 78);
    assert.match(r2.stderr, /PORT is invalid/);
    const { WHATSAPP_ACCESS_TOKEN: _alsoUnset, ...noToken } = base;
    const r3 = await run({ ...noToken, ROLE: "worker", PROCESSED_TTL_SECONDS: "3600", RESULT_CACHE_TTL_SECONDS: "90000" });
    assert.equal(r3.code, 78);
    assert.match(r3.stderr, /PROCESSED_TTL_SECONDS is invalid: must outlive/);
    assert.match(r3.stderr, /RESULT_CACHE_TTL_SECONDS is invalid: at most 86400 \(24 h\)/, "P12: the policy's 24 hours bound the cache");
    assert.match(r3.stderr, /WHATSAPP_ACCESS_TOKEN is not set/, "every bad variable is named, not only the first");
  });

  test("it serves health and readiness, and SIGTERM stops it cleanly", async () => {
    const child = spawn(process.execPath, [main], {
      env: { PATH: process.env.PATH ?? "", ...h.env, ROLE: "webhook", PORT: "0", LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    let out = "";
    child.stdout.on("data", (c) => {
      out += c;
    });
    const url = await until("the process to listen", () =>
      /"msg":"ingress started"/.test(out) ? (JSON.parse(out.split("\n").find((l) => l.includes("ingress started")) as string).url as string) : undefined,
    );
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    const ready = await fetch(`${url}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(((await ready.json()) as { checks: unknown }).checks, { nats: "ok" });
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
    assert.match(out, /ingress stopped/);
  });
});
