// The WhatsApp simulator keeps the contract in shared/reference/whatsapp-cloud-api.md: webhooks
// shaped, escaped and signed as Meta sends them; Graph routes that refuse what Meta refuses; the
// 24-hour window; and the chat page's API. A plain HTTP server stands in for the ingress and checks
// every signature with node:crypto on its own.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createWhatsAppClient } from "@unmix/core/whatsapp";
import { z } from "zod";
import { base64Forms } from "../src/personal-data.ts";
import { startWhatsAppSimulator, type WhatsAppSimulator } from "../src/whatsapp-sim/index.ts";

const APP_SECRET = "app-secret-for-tests";
const TOKEN = "EAAG-test-token";
const MB = 1024 * 1024;
const ogg = (size = 2000) => Buffer.concat([Buffer.from("OggS"), Buffer.alloc(24), Buffer.from("OpusHead"), Buffer.alloc(size)]);
const mp4 = (size = 2000) => Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from("ftypisom"), Buffer.alloc(size)]);

// ── the stand-in ingress ──────────────────────────────────────────────────────────────────────

interface Received {
  raw: Buffer;
  headers: IncomingHttpHeaders;
  at: number;
  signatureValid: boolean;
}
const received: Received[] = [];
let answerStatus = 200;
let answerDelayMs = 0;
let inFlight = 0;
let maxInFlight = 0;

const signedCorrectly = (raw: Buffer, header: string | string[] | undefined) => {
  const expected = Buffer.from(`sha256=${createHmac("sha256", APP_SECRET).update(raw).digest("hex")}`);
  const given = Buffer.from(String(header ?? ""));
  return given.length === expected.length && timingSafeEqual(given, expected);
};

const ingress = createServer((req, res) => {
  const chunks: Buffer[] = [];
  inFlight++;
  maxInFlight = Math.max(maxInFlight, inFlight);
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const raw = Buffer.concat(chunks);
    received.push({ raw, headers: req.headers, at: performance.now(), signatureValid: signedCorrectly(raw, req.headers["x-hub-signature-256"]) });
    setTimeout(() => {
      inFlight--;
      res.statusCode = answerStatus;
      res.end();
    }, answerDelayMs);
  });
});
async function until(condition: () => boolean, timeoutMs = 2000) {
  for (const deadline = performance.now() + timeoutMs; !condition(); await new Promise((r) => setTimeout(r, 10)))
    if (performance.now() > deadline) throw new Error("timed out waiting");
}
// biome-ignore lint/suspicious/noExplicitAny: webhook JSON is checked field by field below
const payloadOf = (r: Received | undefined): any => JSON.parse(String(r?.raw));
// biome-ignore lint/suspicious/noExplicitAny: as above
const statusesReceived = (): any[] => received.flatMap((r) => payloadOf(r).entry[0].changes[0].value.statuses ?? []);

let now = Date.parse("2026-11-25T10:00:00Z");
let sim: WhatsAppSimulator;
let wa: ReturnType<typeof createWhatsAppClient>;
let webhookUrl: string;

before(async () => {
  await new Promise<void>((r) => ingress.listen(0, "127.0.0.1", r));
  webhookUrl = `http://127.0.0.1:${(ingress.address() as AddressInfo).port}/webhook`;
  sim = await startWhatsAppSimulator({ appSecret: APP_SECRET, accessToken: TOKEN, clock: () => now, webhookUrl, statusReceipts: true });
  wa = createWhatsAppClient({ baseUrl: sim.baseUrl, version: sim.version, accessToken: TOKEN });
});
after(async () => {
  await sim.stop();
  ingress.close();
});
beforeEach(() => {
  received.length = 0;
  answerStatus = 200;
  answerDelayMs = 0;
  maxInFlight = 0;
});

// ── the reference's examples, verbatim (§3) ───────────────────────────────────────────────────

const EXAMPLE_A = {
  object: "whatsapp_business_account",
  entry: [
    {
      id: "318842120093457",
      changes: [
        {
          field: "messages",
          value: {
            messaging_product: "whatsapp",
            metadata: { display_phone_number: "4915120004711", phone_number_id: "487201336590124" },
            contacts: [{ profile: { name: "Lena K." }, wa_id: "4917623456789", user_id: "DE.58201947736120048815" }],
            messages: [
              {
                from: "4917623456789",
                from_user_id: "DE.58201947736120048815",
                id: "wamid.HBgNNDkxNzYyMzQ1Njc4ORUCABIYFDNFQjA5QTczQkIxRjQ1RDI4QzE3AA==",
                timestamp: "1767013522",
                type: "audio",
                audio: {
                  mime_type: "audio/ogg; codecs=opus",
                  sha256: "q3Zb8Xh0mB1rU2m9yWfJdE6kT4pLs7VcN5aR0oGiHxY=",
                  id: "1298034471162559",
                  url: "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1298034471162559",
                  voice: true,
                },
              },
            ],
          },
        },
      ],
    },
  ],
};
const EXAMPLE_B_VIDEO = {
  caption: "remove the music please",
  mime_type: "video/mp4",
  sha256: "Jm4Pz0y1cVb8QeT2rS6wXk9LhA3uN7dGfE5iO1aYtBQ=",
  id: "874420915537031",
  url: "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=874420915537031",
};

/** Every key path with the JSON type at it: two payloads of the same shape give the same list. */
function shape(value: unknown, path = "$"): string[] {
  if (Array.isArray(value)) return value.flatMap((v) => shape(v, `${path}[]`));
  if (value && typeof value === "object") return Object.entries(value).flatMap(([k, v]) => shape(v, `${path}.${k}`));
  return [`${path}:${typeof value}`];
}
const sameShape = (a: unknown, b: unknown) => assert.deepEqual([...new Set(shape(a))].sort(), [...new Set(shape(b))].sort());

const MessageEnvelope = z.object({
  object: z.literal("whatsapp_business_account"),
  entry: z.array(
    z.object({
      id: z.literal("318842120093457"),
      changes: z.array(
        z.object({
          field: z.literal("messages"),
          value: z.object({
            messaging_product: z.literal("whatsapp"),
            metadata: z.object({ display_phone_number: z.string(), phone_number_id: z.literal("487201336590124") }),
            contacts: z.array(z.object({ profile: z.object({ name: z.string() }), wa_id: z.string().optional(), user_id: z.string().optional() })).optional(),
            messages: z
              .array(
                z.object({
                  from: z.string().regex(/^\d+$/).optional(),
                  from_user_id: z
                    .string()
                    .regex(/^[A-Z]{2}\.[A-Za-z0-9]+$/)
                    .optional(),
                  id: z.string().startsWith("wamid."),
                  timestamp: z.string().regex(/^\d{10}$/),
                  type: z.string(),
                }),
              )
              .optional(),
            statuses: z.array(z.object({ id: z.string(), status: z.string(), timestamp: z.string().regex(/^\d{10}$/) })).optional(),
          }),
        }),
      ),
    }),
  ),
});

// ── webhooks ──────────────────────────────────────────────────────────────────────────────────

describe("webhooks as Meta sends them", () => {
  test("a voice note has exactly the shape of the reference's Example A, signed over the bytes posted", async () => {
    const bytes = ogg();
    const r = await sim.sendUserMessage({ type: "audio", bytes, mimeType: "audio/ogg; codecs=opus", voice: true });
    assert.equal(r.deliveries[0]?.status, 200);
    const [hit] = received;
    assert.ok(hit?.signatureValid, "X-Hub-Signature-256 is the HMAC of the raw body with the app secret");
    assert.equal(hit?.headers["content-type"], "application/json");
    const payload = payloadOf(hit);
    MessageEnvelope.parse(payload);
    sameShape(payload, EXAMPLE_A);
    const audio = payload.entry[0].changes[0].value.messages[0].audio;
    assert.equal(audio.sha256, createHash("sha256").update(bytes).digest("base64"));
    assert.equal(audio.id, r.mediaId);
    assert.equal(payload.entry[0].changes[0].value.messages[0].timestamp, String(now / 1000));

    const download = await fetch(audio.url, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(download.headers.get("content-type"), "audio/ogg; codecs=opus");
    assert.deepEqual(Buffer.from(await download.arrayBuffer()), bytes, "the webhook's URL serves the user's bytes");
  });

  test("message ids are shaped like Meta's: wamid.HBg… whose base64 holds the sender's number in ASCII digits", async () => {
    const r = await sim.sendUserMessage({ type: "text", body: "hi" });
    const id = payloadOf(received.at(-1)).entry[0].changes[0].value.messages[0].id as string;
    assert.equal(id, r.id);
    const number = sim.defaultUser.waId as string;
    assert.ok(
      id.startsWith(`wamid.${Buffer.from([0x1c, 0x18, number.length]).toString("base64")}`),
      `${id} begins like a real one (wamid.HBgL… for 11 digits)`,
    );
    const record = Buffer.from(id.slice("wamid.".length), "base64");
    assert.deepEqual([...record.subarray(0, 3)], [0x1c, 0x18, number.length]);
    assert.equal(record.subarray(3, 3 + number.length).toString("ascii"), number);
    assert.ok(
      base64Forms(number).some((f) => id.includes(f)),
      "the number's base64 is a substring of the id",
    );
    // two messages from the same user share the number, not the id
    assert.notEqual((await sim.sendUserMessage({ type: "text", body: "hi" })).id, id);
  });

  test("a video with a caption has the fields of Example B", async () => {
    await sim.sendUserMessage({ type: "video", bytes: mp4(), mimeType: "video/mp4", caption: "remove the music please" });
    const message = payloadOf(received[0]).entry[0].changes[0].value.messages[0];
    sameShape(message.video, EXAMPLE_B_VIDEO);
    assert.equal(message.video.caption, "remove the music please");
  });

  test("every other type the bot may receive carries Meta's fields for it", async () => {
    const original = (await sim.sendUserMessage({ type: "text", body: "help" })).id;
    const { ids } = await sim.sendBatch([
      { type: "text", body: "help", quoting: original },
      { type: "image", caption: "look" },
      { type: "document", filename: "song.pdf" },
      { type: "sticker", animated: true },
      { type: "location", latitude: 52.52, longitude: 13.405, name: "Berlin" },
      { type: "reaction", messageId: original, emoji: "👍" },
      { type: "reaction", messageId: original },
      { type: "unsupported", unsupportedType: "poll" },
    ]);
    const messages = payloadOf(received[1]).entry[0].changes[0].value.messages;
    assert.deepEqual(
      messages.map((m: { id: string }) => m.id),
      ids,
    );
    const [text, image, document, sticker, location, reaction, unreaction, unsupported] = messages;
    assert.deepEqual(text.text, { body: "help" });
    assert.deepEqual(text.context, { from: sim.defaultUser.waId, id: original });
    for (const media of [image.image, document.document, sticker.sticker])
      assert.deepEqual(
        Object.keys(media)
          .sort()
          .filter((k) => ["id", "mime_type", "sha256", "url"].includes(k)),
        ["id", "mime_type", "sha256", "url"],
      );
    assert.equal(image.image.caption, "look");
    assert.equal(document.document.filename, "song.pdf");
    assert.equal(sticker.sticker.animated, true);
    assert.deepEqual(location.location, { latitude: 52.52, longitude: 13.405, name: "Berlin" });
    assert.deepEqual(reaction.reaction, { message_id: original, emoji: "👍" });
    assert.deepEqual(unreaction.reaction, { message_id: original }, "a removed reaction has no emoji");
    assert.equal(unsupported.unsupported.type, "poll");
    assert.equal(unsupported.errors[0].code, 131051);
  });

  test("a username-only sender has only BSUIDs: no `from`, no `wa_id`", async () => {
    await sim.sendUserMessage({ type: "text", body: "hi", from: { userId: "BR.Zx81kQ0p", name: "anon" } });
    const value = payloadOf(received[0]).entry[0].changes[0].value;
    assert.deepEqual(value.contacts, [{ profile: { name: "anon" }, user_id: "BR.Zx81kQ0p" }]);
    assert.equal(value.messages[0].from_user_id, "BR.Zx81kQ0p");
    assert.equal("from" in value.messages[0], false);
  });

  test("non-ASCII profile names arrive escaped as \\uXXXX, and the signature is over those bytes", async () => {
    await sim.sendUserMessage({ type: "text", body: "Grüße 🎶", from: { waId: "4915112345678", name: "Zoë Ñandú" } });
    const [hit] = received;
    const raw = String(hit?.raw);
    assert.ok(raw.includes('"name":"Zo\\u00eb \\u00d1and\\u00fa"'), raw);
    assert.ok(raw.includes('"body":"Gr\\u00fc\\u00dfe \\ud83c\\udfb6"'), raw);
    assert.ok(
      hit?.raw.every((b) => b < 0x80),
      "only ASCII on the wire",
    );
    assert.ok(hit?.signatureValid);
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(raw)));
    assert.equal(signedCorrectly(reserialised, hit?.headers["x-hub-signature-256"]), false, "re-serialised UTF-8 does not verify");
    assert.equal(payloadOf(hit).entry[0].changes[0].value.contacts[0].profile.name, "Zoë Ñandú");
  });

  test("batches put several messages in one POST: in one value, one change each, or one entry each", async () => {
    const alice = { waId: "4915100000001", name: "Alice" };
    const bob = { waId: "4915100000002", name: "Bob" };
    const batch = [
      { type: "text" as const, body: "1", from: alice },
      { type: "text" as const, body: "2", from: alice },
      { type: "text" as const, body: "3", from: bob },
    ];
    await sim.sendBatch(batch);
    await sim.sendBatch(batch, { layout: "changes" });
    await sim.sendBatch(batch, { layout: "entries" });
    assert.equal(received.length, 3);
    const [one, changes, entries] = received.map(payloadOf);
    for (const p of [one, changes, entries]) MessageEnvelope.parse(p);
    assert.deepEqual(
      one.entry[0].changes[0].value.contacts.map((c: { wa_id: string }) => c.wa_id),
      [alice.waId, bob.waId],
      "each sender once",
    );
    assert.equal(one.entry[0].changes[0].value.messages.length, 3);
    assert.deepEqual([changes.entry.length, changes.entry[0].changes.length], [1, 3]);
    assert.deepEqual([entries.entry.length, entries.entry[2].changes[0].value.messages[0].text.body], [3, "3"]);
    assert.ok(received.every((r) => r.signatureValid));
  });

  test("duplicates are the same bytes, one after another or at the same time", async () => {
    answerDelayMs = 50;
    const sequential = await sim.sendUserMessage({ type: "text", body: "dup" }, { duplicates: 2 });
    assert.equal(maxInFlight, 1);
    const concurrent = await sim.sendUserMessage({ type: "text", body: "dup" }, { duplicates: 2, concurrent: true });
    assert.equal(maxInFlight, 3, "all three deliveries were in flight together");
    assert.equal(received.length, 6);
    assert.ok(received.slice(0, 3).every((r) => r.raw.equals(Buffer.from(sequential.body))));
    assert.ok(received.slice(3).every((r) => r.raw.equals(Buffer.from(concurrent.body))));
    assert.notEqual(sequential.id, concurrent.id);
  });

  test("a delayed delivery waits; a redelivery later posts the very same bytes", async () => {
    const started = performance.now();
    const first = await sim.sendUserMessage({ type: "text", body: "late" }, { delayMs: 150 });
    assert.ok((received[0]?.at ?? 0) - started >= 140, "arrived after the delay");
    answerStatus = 503;
    const [again] = await sim.deliverRaw(first.body);
    assert.equal(again?.status, 503, "the ingress's answer is reported");
    assert.deepEqual(received[1]?.raw, Buffer.from(first.body));
    assert.ok(received[1]?.signatureValid);
  });

  test("odd raw bodies are delivered byte for byte and signed", async () => {
    const raw = '{ "object" : "whatsapp_business_account",\n\t"entry" : [ ] }\r\n';
    await sim.deliverRaw(raw);
    assert.equal(String(received[0]?.raw), raw);
    assert.ok(received[0]?.signatureValid);
  });

  test("negative tests can send a wrong signature or none", async () => {
    await sim.sendUserMessage({ type: "text", body: "x" }, { signature: "wrong" });
    await sim.sendUserMessage({ type: "text", body: "x" }, { signature: "none" });
    assert.equal(received[0]?.signatureValid, false);
    assert.match(String(received[0]?.headers["x-hub-signature-256"]), /^sha256=[0-9a-f]{64}$/);
    assert.equal(received[1]?.headers["x-hub-signature-256"], undefined);
  });

  test("an unreachable webhook is reported as status 0, not thrown", async () => {
    sim.setWebhookUrl("http://127.0.0.1:9/webhook");
    try {
      const r = await sim.sendUserMessage({ type: "text", body: "x" });
      assert.equal(r.deliveries[0]?.status, 0);
      assert.ok(r.deliveries[0]?.error);
    } finally {
      sim.setWebhookUrl(webhookUrl);
    }
  });
});

// ── Graph routes ──────────────────────────────────────────────────────────────────────────────

const graph = (path: string, init: RequestInit = {}, token: string | null = TOKEN) =>
  fetch(`${sim.baseUrl}${path}`, { ...init, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...init.headers } });
const postJson = (path: string, body: unknown) => graph(path, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
const metaError = async (res: Response) =>
  ((await res.json()) as { error: { code: number; message: string; error_data?: { details: string }; fbtrace_id: string } }).error;

describe("media routes", () => {
  test("metadata: Meta's fields, file_size as a string, and Bearer required", async () => {
    const bytes = ogg();
    const id = sim.addMedia(bytes, "audio/ogg");
    const res = await graph(`/${sim.version}/${id}`);
    const body = (await res.json()) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), ["file_size", "id", "messaging_product", "mime_type", "sha256", "url"]);
    assert.equal(body.file_size, String(bytes.length));
    assert.equal(body.messaging_product, "whatsapp");
    const anonymous = await graph(`/${sim.version}/${id}`, {}, null);
    assert.equal(anonymous.status, 401);
    assert.equal((await metaError(anonymous)).code, 190);
    const otherNumber = await graph(`/${sim.version}/${id}?phone_number_id=111111111111111`);
    assert.equal((await metaError(otherNumber)).code, 100, "media of another number is not found");
  });

  test("download URLs need the bearer token and die after five minutes", async () => {
    const id = sim.addMedia(ogg(), "audio/ogg");
    const { url } = (await (await graph(`/${sim.version}/${id}`)).json()) as { url: string };
    assert.equal((await fetch(url)).status, 401, "no token, no media");
    assert.equal((await fetch(url, { headers: { authorization: "Bearer stolen" } })).status, 401);
    now += 4 * 60_000;
    assert.equal((await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200, "still valid after four minutes");
    now += 61_000;
    assert.equal((await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 404, "expired after five");
  });

  test("a user's media id lives seven days", async () => {
    const id = sim.addMedia(ogg(), "audio/ogg");
    now += 6 * 24 * 3600_000;
    assert.equal((await graph(`/${sim.version}/${id}`)).status, 200);
    now += 2 * 24 * 3600_000;
    assert.equal((await metaError(await graph(`/${sim.version}/${id}`))).code, 100);
  });

  test("upload: multipart with messaging_product and a file, refused with Meta's errors otherwise", async () => {
    const form = (fields: Record<string, string>, file?: Blob) => {
      const f = new FormData();
      for (const [k, v] of Object.entries(fields)) f.set(k, v);
      if (file) f.set("file", file, "a.mp4");
      return f;
    };
    const upload = (body: FormData | string) => graph(`/${sim.version}/${sim.phoneNumberId}/media`, { method: "POST", body });
    const video = new Blob([mp4()], { type: "video/mp4" });

    const ok = await upload(form({ messaging_product: "whatsapp", type: "video/mp4" }, video));
    const { id } = (await ok.json()) as { id: string };
    assert.equal(sim.media(id)?.mimeType, "video/mp4");
    assert.equal((await metaError(await upload(form({ type: "video/mp4" }, video)))).code, 100, "messaging_product is required");
    assert.equal((await metaError(await upload(form({ messaging_product: "whatsapp" })))).code, 100, "file is required");
    const tooBig = await metaError(await upload(form({ messaging_product: "whatsapp" }, new Blob([mp4(16 * MB)], { type: "video/mp4" }))));
    assert.equal(tooBig.code, 131053);
    assert.match(tooBig.error_data?.details ?? "", /16 MB/);
    const wrongNumber = await graph(`/${sim.version}/999/media`, { method: "POST", body: form({ messaging_product: "whatsapp" }, video) });
    assert.equal((await metaError(wrongNumber)).code, 100);
  });

  test("uploaded media can be deleted once, and the deletion is recorded", async () => {
    const id = await wa.uploadMedia(sim.phoneNumberId, ogg(), "audio/ogg", "a.ogg");
    assert.equal(sim.deletedMedia.includes(id), false);
    assert.deepEqual(await (await graph(`/${sim.version}/${id}`, { method: "DELETE" })).json(), { success: true });
    assert.equal((await metaError(await graph(`/${sim.version}/${id}`, { method: "DELETE" }))).code, 100);
    assert.equal(sim.media(id), undefined, "gone");
    assert.deepEqual(
      sim.deletedMedia.filter((d) => d === id),
      [id],
      "recorded once",
    );
  });
});

describe("messages route", () => {
  let userMessage: string;
  const user = { waId: "4917600000042", name: "Ana" };
  before(async () => {
    userMessage = (await sim.sendUserMessage({ type: "text", body: "hello", from: user })).id;
  });
  const messages = (body: unknown) => postJson(`/${sim.version}/${sim.phoneNumberId}/messages`, body);

  test("a valid reply gets Meta's response: contacts and a wamid", async () => {
    const res = await messages({
      messaging_product: "whatsapp",
      recipient_type: "individual",
      to: `+${user.waId}`,
      type: "text",
      text: { body: "hi" },
      context: { message_id: userMessage },
    });
    const body = (await res.json()) as { messaging_product: string; contacts: unknown[]; messages: { id: string }[] };
    assert.equal(res.status, 200);
    assert.equal(body.messaging_product, "whatsapp");
    assert.deepEqual(body.contacts, [{ input: `+${user.waId}`, wa_id: user.waId }]);
    assert.match(body.messages[0]?.id ?? "", /^wamid\./);
    // our reply's id embeds the recipient's number, as Meta's do
    assert.equal(
      Buffer.from((body.messages[0]?.id ?? "").slice(6), "base64")
        .subarray(3, 3 + (user.waId as string).length)
        .toString(),
      user.waId,
    );
    assert.equal(sim.sentMessages().at(-1)?.replyTo, userMessage);
  });

  test("bad parameters get error 100 with the parameter named", async () => {
    const base = { messaging_product: "whatsapp", to: user.waId };
    const cases: [unknown, RegExp][] = [
      [{ ...base, type: "text", text: {} }, /text\['body'\]/],
      [{ ...base, type: "text", text: { body: "x".repeat(4097) } }, /text\['body'\]/],
      [{ ...base, type: "video", video: { id: "1", caption: "x".repeat(1025) } }, /video\['caption'\]/],
      [{ ...base, type: "audio", audio: {} }, /id or link/],
      [{ ...base, recipient: "DE.123", type: "text", text: { body: "x" } }, /to or recipient/],
      [{ messaging_product: "whatsapp", type: "text", text: { body: "x" } }, /to or recipient/],
      [{ ...base, type: "reaction", reaction: { message_id: userMessage, emoji: "👍" }, context: { message_id: userMessage } }, /contextual reply/],
      [{ ...base, type: "sticker", sticker: { id: "1" } }, /type/],
      [{ ...base, messaging_product: "sms", type: "text", text: { body: "x" } }, /messaging_product/],
      [{ messaging_product: "whatsapp", status: "read", message_id: "wamid.unknown" }, /no message/],
    ];
    for (const [body, param] of cases) {
      const res = await messages(body);
      assert.equal(res.status, 400, JSON.stringify(body));
      const err = await metaError(res);
      assert.equal(err.code, 100);
      assert.match(err.error_data?.details ?? "", param, JSON.stringify(body));
    }
    const junk = await graph(`/${sim.version}/${sim.phoneNumberId}/messages`, {
      method: "POST",
      body: "{not json",
      headers: { "content-type": "application/json" },
    });
    assert.equal((await metaError(junk)).code, 100);
  });

  test("video media sent as audio is refused with 131053", async () => {
    const id = await wa.uploadMedia(sim.phoneNumberId, mp4(), "video/mp4", "v.mp4");
    const err = await metaError(await messages({ messaging_product: "whatsapp", to: user.waId, type: "audio", audio: { id } }));
    assert.equal(err.code, 131053);
  });

  test("every status webhook of a message echoes its biz_opaque_callback_data; a message sent without one has none", async () => {
    const tagged = await wa.sendText(sim.phoneNumberId, user, "your result", { callbackData: "sj-0123abcd" });
    const plain = await wa.sendText(sim.phoneNumberId, user, "help text");
    await until(() => statusesReceived().filter((st) => st.id === tagged || st.id === plain).length === 4);
    const of = (id: string) => statusesReceived().filter((st) => st.id === id);
    assert.deepEqual(
      of(tagged).map((st) => [st.status, st.biz_opaque_callback_data]),
      [
        ["sent", "sj-0123abcd"],
        ["delivered", "sj-0123abcd"],
      ],
    );
    assert.ok(of(plain).every((st) => !("biz_opaque_callback_data" in st)));
    for (const r of received) MessageEnvelope.parse(payloadOf(r));
  });

  test("outside the 24-hour window only a template is delivered; the rest fails with 131047 in a status webhook", async () => {
    now += 25 * 3600_000;
    const late = await wa.sendText(sim.phoneNumberId, user, "your result is ready");
    const template = await wa.sendTemplate(sim.phoneNumberId, user, { name: "result_ready", languageCode: "en" });
    assert.equal(sim.sentMessages().find((m) => m.id === late)?.status, "failed");
    assert.equal(sim.sentMessages().find((m) => m.id === late)?.errorCode, 131047);
    assert.equal(sim.sentMessages().find((m) => m.id === template)?.status, "accepted");

    const about = () => statusesReceived().filter((st) => st.id === late || st.id === template);
    await until(() => about().length === 3); // failed; sent and delivered for the template
    const statuses = about();
    const failed = statuses.find((s) => s.id === late);
    assert.equal(failed.status, "failed");
    assert.equal(failed.recipient_id, user.waId);
    assert.equal(failed.errors[0].code, 131047);
    assert.deepEqual(
      statuses.filter((s) => s.id === template).map((s) => s.status),
      ["sent", "delivered"],
    );
    for (const r of received) MessageEnvelope.parse(payloadOf(r));
    assert.ok(received.every((r) => r.signatureValid));
  });

  test("a status receipt for a bot message can be sent on demand", async () => {
    const messageId = "wamid.HBgLbotmessage";
    await sim.sendReceipt({ messageId, status: "played", recipient: "4917600000042" });
    const status = statusesReceived().find((st) => st.id === messageId);
    assert.deepEqual([status.id, status.status, status.recipient_id], [messageId, "played", "4917600000042"]);
  });
});

describe("test helpers", () => {
  test("base64Forms finds a number inside any base64 text that encodes it, at every alignment, and not in random base64", () => {
    const number = "4917623456789";
    for (let before = 0; before < 6; before++)
      for (const after of [0, 1, 2, 7]) {
        const bytes = Buffer.concat([randomBytes(before), Buffer.from(number), randomBytes(after)]);
        for (const text of [bytes.toString("base64"), bytes.toString("base64url")])
          assert.ok(
            base64Forms(number).some((f) => text.includes(f)),
            `${before} bytes before, ${after} after: ${text}`,
          );
      }
    assert.ok(!base64Forms(number).some((f) => randomBytes(64).toString("base64").includes(f)));
  });
  test("waitForMessage resolves on a later reply and rejects, naming what was sent, when none comes", async () => {
    const { id } = await sim.sendUserMessage({ type: "text", body: "ping" });
    const waiting = sim.waitForMessage((m) => m.replyTo === id, 2000);
    setTimeout(() => void wa.sendText(sim.phoneNumberId, sim.defaultUser, "pong", { replyTo: id }), 50);
    assert.equal((await waiting).text, "pong");
    await assert.rejects(
      sim.waitForMessage((m) => m.text === "never", 100),
      /within 100 ms; the bot sent: .*text "pong"/,
    );
  });

  test("delayNext stalls a route, then it answers normally", async () => {
    sim.delayNext("media-info", 200);
    const id = sim.addMedia(ogg(), "audio/ogg");
    const started = performance.now();
    await wa.getMediaInfo(id);
    assert.ok(performance.now() - started >= 190);
    const again = performance.now();
    await wa.getMediaInfo(id);
    assert.ok(performance.now() - again < 150);
  });
});

// ── chat page ─────────────────────────────────────────────────────────────────────────────────

interface ThreadItem {
  id: string;
  direction: "in" | "out";
  type: string;
  text?: string;
  replyTo?: string;
  media?: { src: string; mimeType: string; voice: boolean };
  reaction?: string;
  read?: boolean;
  status?: string;
}
const thread = async () => (await (await fetch(`${sim.baseUrl}/sim/chat/thread`)).json()) as { typing: boolean; items: ThreadItem[] };

describe("chat page", () => {
  test("the page is served with the stable test ids a browser test needs", async () => {
    const res = await fetch(`${sim.baseUrl}/`);
    assert.match(String(res.headers.get("content-type")), /text\/html/);
    const html = await res.text();
    for (const id of ["thread", "text-input", "send-text", "file-input", "as-voice", "send-file", "record", "typing", "notice"])
      assert.ok(html.includes(`data-testid="${id}"`), id);
  });

  test("a text typed in the page reaches the bot as a signed webhook, and the bot's quoted voice reply shows up playable", async () => {
    const sent = await fetch(`${sim.baseUrl}/sim/chat/send`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text: "hello bot" }),
    });
    const { id, webhookStatus } = (await sent.json()) as { id: string; webhookStatus: number };
    assert.equal(webhookStatus, 200);
    const delivered = received.find((r) => payloadOf(r).entry[0].changes[0].value.messages?.[0].id === id);
    assert.ok(delivered?.signatureValid);
    assert.equal(payloadOf(delivered).entry[0].changes[0].value.messages[0].text.body, "hello bot");

    // the bot answers as the product does
    await wa.markRead(sim.phoneNumberId, id, { typing: true });
    assert.equal((await thread()).typing, true, "the user sees the bot typing");
    await wa.sendReaction(sim.phoneNumberId, sim.defaultUser, id, "⏳");
    const voice = ogg(3000);
    const mediaId = await wa.uploadMedia(sim.phoneNumberId, voice, "audio/ogg; codecs=opus", "clean.ogg");
    await wa.sendAudio(sim.phoneNumberId, sim.defaultUser, mediaId, { voice: true, replyTo: id });

    const { items, typing } = await thread();
    assert.equal(typing, false, "typing stops with the reply");
    const mine = items.find((i) => i.id === id);
    assert.deepEqual([mine?.direction, mine?.text, mine?.read, mine?.reaction], ["in", "hello bot", true, "⏳"]);
    const reply = items.at(-1);
    assert.deepEqual([reply?.direction, reply?.type, reply?.replyTo, reply?.media?.voice, reply?.status], ["out", "audio", id, true, "accepted"]);
    assert.ok(!items.some((i) => i.direction === "out" && i.type === "reaction"), "the bot's reactions decorate the message rather than appear as bubbles");

    const played = await fetch(`${sim.baseUrl}${reply?.media?.src}`);
    assert.deepEqual(Buffer.from(await played.arrayBuffer()), voice);
    const seek = await fetch(`${sim.baseUrl}${reply?.media?.src}`, { headers: { range: "bytes=10-19" } });
    assert.equal(seek.status, 206);
    assert.deepEqual(Buffer.from(await seek.arrayBuffer()), voice.subarray(10, 20));
  });

  test("files from the page: an OGG as a voice note, an MP3 as plain audio, a video as video", async () => {
    const send = (file: Blob, name: string, voice: boolean) => {
      const form = new FormData();
      form.set("file", file, name);
      form.set("voice", String(voice));
      return fetch(`${sim.baseUrl}/sim/chat/send`, { method: "POST", body: form });
    };
    await send(new Blob([ogg()], { type: "audio/ogg" }), "note.ogg", true);
    await send(new Blob([Buffer.from("ID3 mp3")], { type: "audio/mpeg" }), "song.mp3", true);
    await send(new Blob([mp4()], { type: "video/mp4" }), "clip.mp4", false);
    const sentMedia = received.map((r) => payloadOf(r).entry[0].changes[0].value.messages?.[0]).filter(Boolean);
    assert.deepEqual(
      sentMedia.map((m) => [m.type, m[m.type].mime_type, m[m.type].voice]),
      [
        ["audio", "audio/ogg; codecs=opus", true],
        ["audio", "audio/mpeg", false],
        ["video", "video/mp4", undefined],
      ],
    );
  });

  test("without a webhook URL the page says the bot cannot hear", async () => {
    sim.setWebhookUrl(undefined);
    try {
      const res = await fetch(`${sim.baseUrl}/sim/chat/send`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text: "hi" }),
      });
      assert.equal(res.status, 409);
      assert.match(((await res.json()) as { error: string }).error, /webhook URL/);
    } finally {
      sim.setWebhookUrl(webhookUrl);
    }
  });
});

test("main refuses to start without the app secret, naming the variable", () => {
  const main = fileURLToPath(new URL("../src/whatsapp-sim/main.ts", import.meta.url));
  const run = spawnSync(process.execPath, [main], { env: { PATH: process.env.PATH, WHATSAPP_ACCESS_TOKEN: "x" }, encoding: "utf8" });
  assert.equal(run.status, 78);
  assert.match(run.stderr, /WHATSAPP_APP_SECRET is not set/);
});

test("main starts the simulator from the environment and prints the chat page's URL", async () => {
  const { main } = await import("../src/whatsapp-sim/main.ts");
  const writes: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = ((chunk: string) => writes.push(chunk) > 0) as typeof process.stdout.write;
  let started: WhatsAppSimulator;
  try {
    started = await main({ WHATSAPP_SIM_PORT: "0", WHATSAPP_APP_SECRET: APP_SECRET, WHATSAPP_ACCESS_TOKEN: TOKEN, WHATSAPP_API_VERSION: "v23.0" });
  } finally {
    process.stdout.write = write;
  }
  try {
    assert.equal(started.version, "v23.0");
    assert.ok(writes.join("").includes(`chat page:      ${started.baseUrl}/`));
    assert.equal((await fetch(`${started.baseUrl}/`)).status, 200);
  } finally {
    await started.stop();
  }
});
