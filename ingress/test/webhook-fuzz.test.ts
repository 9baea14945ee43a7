// Property-based tests (fast-check) of POST /webhook and its envelope parser, in process: the real
// Fastify plugin with a recording stand-in for JetStream, requests by inject(). Whatever the bytes,
// the handler answers per the contract (200, 400, 401, 413 or 422, never a 5xx), publishes
// nothing from a forged or altered body and nothing but P1's fields from a genuine one.
// A fixed seed and a few hundred runs per property here (make test); `make fuzz-webhook` runs the
// same properties long with FUZZ_RUNS and a random FUZZ_SEED (printed on failure, to replay).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createLogger } from "@unmix/core/log";
import { signWebhookBody } from "@unmix/core/whatsapp";
import { buildMessage, messagesEnvelope, metaJson, type UserMessage } from "@unmix/e2e/whatsapp-sim/webhooks";
import fc from "fast-check";
import Fastify, { type FastifyInstance, LogController } from "fastify";
import { EnvelopeError, extract, InboundMessage } from "../src/envelope.ts";
import { Metrics } from "../src/metrics.ts";
import type { Nats } from "../src/nats.ts";
import { webhookRoutes } from "../src/webhook.ts";

const SECRET = "fuzz-app-secret-0123456789";
const BODY_LIMIT = 64 * 1024;
const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const SEED = Number(process.env.FUZZ_SEED ?? 20261202);
const params = { numRuns: RUNS, seed: SEED, endOnFailure: true };

/** What reached "JetStream": inbound messages and audit entries. */
const published: { subject: string; data: string }[] = [];
const audited: { event: string; entry: Record<string, unknown> }[] = [];
const nats = {
  async publish(subject: string, data: Uint8Array | string) {
    published.push({ subject, data: String(data) });
    return { stream: "INBOUND", seq: published.length, duplicate: false };
  },
  async audit(event: string, entry: Record<string, unknown>) {
    audited.push({ event, entry });
    return { stream: "AUDIT", seq: audited.length, duplicate: false };
  },
} as unknown as Nats;

let app: FastifyInstance;
before(async () => {
  app = Fastify({
    loggerInstance: createLogger("webhook-fuzz", { level: "silent" }),
    logController: new LogController({ disableRequestLogging: true }),
  }) as unknown as FastifyInstance;
  app.decorate("nats", nats);
  app.decorate("metrics", new Metrics());
  await app.register(webhookRoutes, {
    appSecret: SECRET,
    verifyToken: "v",
    userKeySecret: "k",
    bodyLimit: BODY_LIMIT,
    publishTimeoutMs: 1000,
    signingKey: "inbound-signing-key",
  });
  await app.ready();
});
after(async () => app?.close());

async function post(body: string | Buffer, headers: Record<string, string>) {
  published.length = 0;
  audited.length = 0;
  const res = await app.inject({ method: "POST", url: "/webhook", payload: body, headers: { "content-type": "application/json", ...headers } });
  return { status: res.statusCode, published: published.map((p) => JSON.parse(p.data) as unknown), audited: audited.length };
}
const signed = (body: string | Buffer) => ({ "x-hub-signature-256": signWebhookBody(body, SECRET) });

// ---------------------------------------------------------------- generators

const BUSINESS = { wabaId: "102290129340398", phoneNumberId: "106540352242922", displayPhoneNumber: "15550783881" };
const digits = (min: number, max: number) => fc.stringMatching(new RegExp(`^[1-9][0-9]{${min - 1},${max - 1}}$`));
const sender = fc.record(
  {
    waId: digits(8, 15),
    userId: fc.stringMatching(/^[A-Z]{2}\.[0-9]{10,20}$/),
    name: fc.string({ maxLength: 40, unit: "grapheme" }),
  },
  { requiredKeys: ["name"] },
);
const content: fc.Arbitrary<UserMessage> = fc.oneof(
  fc.record({ type: fc.constant("text" as const), body: fc.oneof(fc.string({ maxLength: 80 }), fc.constantFrom("help", " DELETE! ", "/stop", "start")) }),
  fc.record({ type: fc.constant("location" as const), latitude: fc.double({ noNaN: true }), longitude: fc.double({ noNaN: true }) }),
  fc.record({ type: fc.constant("reaction" as const), messageId: fc.constant("wamid.earlier"), emoji: fc.constant("👍") }),
);
const mediaMessage = fc
  .record({
    type: fc.constantFrom("audio", "video", "image", "document", "sticker"),
    mimeType: fc.constantFrom("audio/ogg; codecs=opus", "audio/mpeg", "video/mp4", "image/jpeg", "application/pdf"),
    id: digits(10, 16),
  })
  .map((media) => ({ media }));
let seq = 0;
/** A genuine envelope of 1–5 messages from one sender, as Meta's bytes. */
const envelope = fc
  .record({
    who: sender.filter((s) => s.waId !== undefined || s.userId !== undefined),
    messages: fc.array(fc.oneof(content, mediaMessage), { minLength: 1, maxLength: 5 }),
    layout: fc.constantFrom("messages" as const, "changes" as const, "entries" as const),
  })
  .map(({ who, messages, layout }) => {
    const built = messages.map((m) => {
      const id = `wamid.FUZZ${(++seq).toString(36)}`;
      if ("media" in m) {
        const { type, ...media } = m.media;
        const resolved = { ...media, sha256: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", url: "https://lookaside.fbsbx.com/x" };
        return buildMessage({ type, id }, who, Date.UTC(2026, 11, 2), resolved);
      }
      return buildMessage({ ...m, id }, who, Date.UTC(2026, 11, 2), undefined);
    });
    return { body: metaJson(messagesEnvelope(BUSINESS, built, layout)), ids: built.map((b) => (b.message as { id: string }).id) };
  });

/** Replaces, removes or adds one value somewhere in a JSON document. */
function mutate(doc: unknown, path: number[], replacement: unknown, remove: boolean): unknown {
  if (doc === null || typeof doc !== "object") return replacement;
  const copy: Record<string, unknown> | unknown[] = Array.isArray(doc) ? [...doc] : { ...(doc as Record<string, unknown>) };
  const keys = Object.keys(copy);
  if (keys.length === 0 || path.length === 0) return Array.isArray(copy) ? [...copy, replacement] : { ...copy, extra: replacement };
  const key = keys[(path[0] as number) % keys.length] as string;
  const rec = copy as Record<string, unknown>;
  if (remove && path.length === 1) {
    if (Array.isArray(copy)) copy.splice(Number(key), 1);
    else delete rec[key];
  } else rec[key] = mutate(rec[key], path.slice(1), replacement, remove);
  return copy;
}
const mutated = fc
  .record({
    e: envelope,
    edits: fc.array(fc.record({ path: fc.array(fc.nat(), { maxLength: 9 }), value: fc.jsonValue({ maxDepth: 2 }), remove: fc.boolean() }), {
      minLength: 1,
      maxLength: 4,
    }),
  })
  .map(({ e, edits }) => edits.reduce((doc, x) => mutate(doc, x.path, x.value, x.remove), JSON.parse(e.body) as unknown));

/** What the handler may publish for one message: P1's fields only, valid per the stream's schema. */
function assertKeptOnlyP1(messages: unknown[]) {
  for (const m of messages) assert.ok(InboundMessage.safeParse(m).success, JSON.stringify(m));
}

// ---------------------------------------------------------------- properties

describe("the envelope parser (extract)", () => {
  test("anything at all either yields P1 fields or throws EnvelopeError: never another error", () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything({ withNullPrototype: true, withMap: true, withBigInt: true }), fc.jsonValue(), mutated), (doc) => {
        try {
          assertKeptOnlyP1(extract(doc).messages);
        } catch (err) {
          if (!(err instanceof EnvelopeError)) throw err;
        }
      }),
      params,
    );
  });

  test("a genuine envelope yields exactly its messages, in order", () => {
    fc.assert(
      fc.property(envelope, (e) =>
        assert.deepEqual(
          extract(JSON.parse(e.body)).messages.map((m) => m.id),
          e.ids,
        ),
      ),
      params,
    );
  });
});

describe("POST /webhook under arbitrary input", () => {
  test("signed arbitrary bytes get 200, 400 or 422, never a 5xx; nothing is published unless it is 200", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 2048 }), fc.string({ unit: "binary", maxLength: 2048 })), async (bytes) => {
        const body = typeof bytes === "string" ? bytes : Buffer.from(bytes);
        const r = await post(body, signed(body));
        assert.ok([200, 400, 422].includes(r.status), `status ${r.status}`);
        if (r.status !== 200) assert.deepEqual([r.published, r.audited], [[], 0]);
      }),
      params,
    );
  });

  test("signed mutated envelopes: 200 with P1 fields only, or a 4xx that published nothing", async () => {
    await fc.assert(
      fc.asyncProperty(mutated, async (doc) => {
        const body = metaJson(doc);
        const r = await post(body, signed(body));
        assert.ok([200, 400, 422].includes(r.status), `status ${r.status}`);
        if (r.status === 200) assertKeptOnlyP1(r.published);
        else assert.deepEqual([r.published, r.audited], [[], 0]);
      }),
      params,
    );
  });

  test("a genuine signed envelope is published message by message, exactly once each", async () => {
    await fc.assert(
      fc.asyncProperty(envelope, async (e) => {
        const r = await post(e.body, signed(e.body));
        assert.equal(r.status, 200);
        assertKeptOnlyP1(r.published);
        assert.deepEqual(
          r.published.map((m) => (m as { id: string }).id),
          e.ids,
        );
      }),
      params,
    );
  });
});

describe("POST /webhook: forged or altered bodies publish nothing", () => {
  test("one byte changed, inserted or removed after signing: 401, nothing published", async () => {
    await fc.assert(
      fc.asyncProperty(envelope, fc.nat(), fc.integer({ min: 1, max: 255 }), fc.constantFrom("flip", "insert", "remove"), async (e, at, byte, how) => {
        const original = Buffer.from(e.body);
        const i = at % original.length;
        const altered =
          how === "flip"
            ? Buffer.from(original.map((b, j) => (j === i ? b ^ byte : b)))
            : how === "insert"
              ? Buffer.concat([original.subarray(0, i), Buffer.from([byte]), original.subarray(i)])
              : Buffer.concat([original.subarray(0, i), original.subarray(i + 1)]);
        const r = await post(altered, signed(original));
        assert.equal(r.status, 401);
        assert.deepEqual([r.published, r.audited], [[], 0]);
      }),
      params,
    );
  });

  test("a signature with another secret, an arbitrary header or none: 401, nothing published", async () => {
    const header = fc.oneof(
      fc.string({ minLength: 1, maxLength: 16 }).map((s) => ({ "x-hub-signature-256": signWebhookBody("{}", `${SECRET}${s}`) })),
      fc.stringMatching(/^[\x21-\x7e]{0,90}$/).map((s) => ({ "x-hub-signature-256": s })),
      fc.stringMatching(/^[0-9a-f]{64}$/).map((s) => ({ "x-hub-signature-256": `sha256=${s}` })),
      fc.constant({}),
    );
    await fc.assert(
      fc.asyncProperty(envelope, header, async (e, h) => {
        const r = await post(e.body, h as Record<string, string>);
        assert.equal(r.status, 401);
        assert.deepEqual([r.published, r.audited], [[], 0]);
      }),
      params,
    );
  });

  test("over the body limit, signed or not: 413, nothing published", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: BODY_LIMIT + 1, max: BODY_LIMIT * 4 }), fc.boolean(), async (size, sign) => {
        const body = Buffer.alloc(size, 0x20);
        const r = await post(body, sign ? signed(body) : {});
        assert.equal(r.status, 413);
        assert.deepEqual([r.published, r.audited], [[], 0]);
      }),
      { ...params, numRuns: Math.min(RUNS, 50) },
    );
  });
});
