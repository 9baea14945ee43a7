// The production WhatsApp client against the simulator: the same code that talks to Meta in
// production, checked for what a user would notice (media fetched intact, replies quoted on the
// right message, errors that say whether to retry) and for webhook signatures that match Meta's.
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import {
  createWhatsAppClient,
  escapeNonAscii,
  GraphApiError,
  MediaHostRefusedError,
  MediaIntegrityError,
  MediaTooLargeError,
  MediaUrlExpiredError,
  signWebhookBody,
  verifyWebhookSignature,
  type WhatsAppClient,
  WhatsAppConfig,
} from "@unmix/core/whatsapp";
import { MEDIA_URL_TTL_MS, type MetaError, startWhatsAppSimulator, type WhatsAppSimulator } from "@unmix/e2e/whatsapp-sim";

const APP_SECRET = "app-secret-for-tests";
const TOKEN = "EAAG-test-token";
const USER = { waId: "4917623456789", userId: "DE.58201947736120048815" };
const MB = 1024 * 1024;

/** fetchMedia into memory, as a test reads it (the controller streams it into the object store). */
async function fetchBytes(client: WhatsAppClient, id: string, o: Parameters<WhatsAppClient["fetchMedia"]>[1]) {
  let bytes = Buffer.alloc(0);
  const { info, size } = await client.fetchMedia(id, o, async (body) => {
    bytes = Buffer.concat(await body.toArray());
  });
  assert.equal(size, bytes.length);
  return { info, bytes };
}

// Bytes that pass WhatsApp's content checks for their type.
const ogg = (size = 2000) => Buffer.concat([Buffer.from("OggS"), Buffer.alloc(24), Buffer.from("OpusHead"), Buffer.alloc(size)]);
const mp4 = (size = 2000) => Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from("ftypisom"), Buffer.alloc(size)]);
const mp3 = (size = 2000) => Buffer.concat([Buffer.from("ID3"), Buffer.alloc(size)]);

let now = Date.parse("2026-11-25T10:00:00Z");
let sim: WhatsAppSimulator;
let wa: ReturnType<typeof createWhatsAppClient>;
const webhook = createServer((req, res) => {
  req.resume();
  req.on("end", () => res.end());
});

before(async () => {
  await new Promise<void>((r) => webhook.listen(0, "127.0.0.1", r));
  sim = await startWhatsAppSimulator({
    appSecret: APP_SECRET,
    accessToken: TOKEN,
    clock: () => now,
    webhookUrl: `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/webhook`,
  });
  wa = createWhatsAppClient({ baseUrl: sim.baseUrl, version: sim.version, accessToken: TOKEN, userAgent: "unmix-test/1.0" });
});
after(async () => {
  await sim.stop();
  webhook.close();
});

const requestsSince = (n: number) => sim.requests.slice(n);

describe("media from users", () => {
  test("media info and download carry the bearer token and our User-Agent, and return the exact bytes", async () => {
    const bytes = ogg();
    const id = sim.addMedia(bytes, "audio/ogg; codecs=opus");
    const seen = sim.requests.length;

    const info = await wa.getMediaInfo(id, sim.phoneNumberId);
    assert.deepEqual(
      { ...info, url: undefined },
      { id, url: undefined, mimeType: "audio/ogg; codecs=opus", sha256: createHash("sha256").update(bytes).digest("base64"), fileSize: bytes.length },
    );
    assert.deepEqual(await wa.downloadMedia(info.url, { maxBytes: MB }), bytes);

    const [metadata, download] = requestsSince(seen);
    assert.equal(metadata?.path, `/${sim.version}/${id}?phone_number_id=${sim.phoneNumberId}`);
    for (const r of [metadata, download]) {
      assert.equal(r?.headers.authorization, `Bearer ${TOKEN}`);
      assert.equal(r?.headers["user-agent"], "unmix-test/1.0");
    }
  });

  test("a URL older than five minutes fails with MediaUrlExpiredError; a fresh URL from the media id works", async () => {
    const bytes = mp4();
    const id = sim.addMedia(bytes, "video/mp4");
    const stale = await wa.getMediaInfo(id);
    now += MEDIA_URL_TTL_MS + 1000;
    await assert.rejects(wa.downloadMedia(stale.url, { maxBytes: MB }), MediaUrlExpiredError);
    const fresh = await wa.getMediaInfo(id);
    assert.notEqual(fresh.url, stale.url);
    assert.deepEqual(await wa.downloadMedia(fresh.url, { maxBytes: MB }), bytes);
  });

  test("fetchMedia gets a new URL once when the download answers 404, and gives up the second time", async () => {
    const bytes = ogg();
    const id = sim.addMedia(bytes, "audio/ogg");
    sim.failNext("media-download", { httpStatus: 404 });
    const seen = sim.requests.length;
    const { bytes: fetched } = await fetchBytes(wa, id, { maxBytes: MB });
    assert.deepEqual(fetched, bytes);
    assert.equal(requestsSince(seen).filter((r) => r.path.startsWith(`/${sim.version}/${id}`)).length, 2, "the media info was asked twice");

    sim.failNext("media-download", { httpStatus: 404 }, 2);
    await assert.rejects(fetchBytes(wa, id, { maxBytes: MB }), MediaUrlExpiredError);
  });

  test("fetchMedia refuses bytes that do not match the sha256 the webhook announced, in base64 or hex", async () => {
    const bytes = ogg();
    const id = sim.addMedia(bytes, "audio/ogg");
    const hex = createHash("sha256").update(bytes).digest("hex");
    assert.deepEqual((await fetchBytes(wa, id, { maxBytes: MB, expectedSha256: hex })).bytes, bytes);
    const other = createHash("sha256").update("another file").digest("base64");
    await assert.rejects(fetchBytes(wa, id, { maxBytes: MB, expectedSha256: other }), MediaIntegrityError);
  });

  test("fetchMedia streams: 8 MB flow through in chunks, and a reader never gets all the bytes of a file whose sha256 does not match", async () => {
    const bytes = mp4(8 * MB);
    const id = sim.addMedia(bytes, "video/mp4");
    const read = async (expectedSha256?: string) => {
      const chunks: number[] = [];
      const done = wa.fetchMedia(id, { maxBytes: 16 * MB, ...(expectedSha256 ? { expectedSha256 } : {}) }, async (body) => {
        for await (const chunk of body) chunks.push((chunk as Buffer).length);
      });
      return { done, chunks };
    };
    const good = await read();
    assert.equal((await good.done).size, bytes.length);
    assert.equal(
      good.chunks.reduce((a, b) => a + b, 0),
      bytes.length,
    );
    assert.ok(good.chunks.length > 8 && Math.max(...good.chunks) < MB, `${good.chunks.length} chunks, the largest ${Math.max(...good.chunks)} bytes`);
    const bad = await read(createHash("sha256").update("another file").digest("hex"));
    await assert.rejects(bad.done, MediaIntegrityError);
    assert.ok(bad.chunks.reduce((a, b) => a + b, 0) < bytes.length, "the last chunk was held back");
  });

  test("a media endpoint that reports sha256 in hex is accepted too", async () => {
    const hexSim = await startWhatsAppSimulator({ appSecret: APP_SECRET, accessToken: TOKEN, sha256Encoding: "hex" });
    try {
      const client = createWhatsAppClient({ baseUrl: hexSim.baseUrl, version: hexSim.version, accessToken: TOKEN });
      const bytes = mp3();
      const id = hexSim.addMedia(bytes, "audio/mpeg");
      const { info, bytes: fetched } = await fetchBytes(client, id, { maxBytes: MB });
      assert.match(info.sha256, /^[0-9a-f]{64}$/);
      assert.deepEqual(fetched, bytes);
    } finally {
      await hexSim.stop();
    }
  });

  test("media over the size cap is refused: before downloading when the size is announced, while downloading otherwise", async () => {
    const id = sim.addMedia(mp4(4000), "video/mp4");
    const seen = sim.requests.length;
    await assert.rejects(fetchBytes(wa, id, { maxBytes: 1000 }), MediaTooLargeError);
    assert.equal(requestsSince(seen).length, 1, "nothing was downloaded");
    const info = await wa.getMediaInfo(id);
    await assert.rejects(wa.downloadMedia(info.url, { maxBytes: 1000 }), MediaTooLargeError);
  });

  test("the access token is never sent to a plain-HTTP host other than the API's", async () => {
    await assert.rejects(wa.downloadMedia("http://example.invalid/media?mid=1", { maxBytes: MB }), MediaHostRefusedError);
  });

  describe("the access token goes only to the Graph API and the allowed media hosts", () => {
    const bytes = ogg(100);
    const sha = createHash("sha256").update(bytes).digest("base64");
    /** A client of the real Graph API whose media info names `mediaUrl`, recording where each request went and with what token. */
    const meta = (mediaUrl: string, mediaHosts?: string[]) => {
      const seen: { url: string; authorization: string | null }[] = [];
      const fetch = (async (url: string | URL, init?: RequestInit) => {
        seen.push({ url: String(url), authorization: new Headers(init?.headers).get("authorization") });
        if (String(url).startsWith("https://graph.facebook.com/"))
          return Response.json({ id: "1", url: mediaUrl, mime_type: "audio/ogg", sha256: sha, file_size: String(bytes.length) });
        return new Response(bytes);
      }) as typeof globalThis.fetch;
      const client = createWhatsAppClient({
        baseUrl: "https://graph.facebook.com",
        version: "v24.0",
        accessToken: TOKEN,
        fetch,
        ...(mediaHosts ? { mediaHosts } : {}),
      });
      return { client, seen };
    };

    test("P4: Meta's own media host (lookaside.fbsbx.com) gets the token and the download", async () => {
      const { client, seen } = meta("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1&ext=1&hash=x");
      assert.deepEqual((await fetchBytes(client, "1", { maxBytes: MB })).bytes, bytes);
      assert.deepEqual(
        seen.map((r) => [new URL(r.url).host, r.authorization]),
        [
          ["graph.facebook.com", `Bearer ${TOKEN}`],
          ["lookaside.fbsbx.com", `Bearer ${TOKEN}`],
        ],
      );
    });

    for (const [what, url] of [
      ["another HTTPS host", "https://media.attacker.example/whatsapp_business/attachments/?mid=1"],
      ["a host that merely ends like Meta's", "https://lookaside.fbsbx.com.attacker.example/?mid=1"],
      ["Meta's media host over plain HTTP", "http://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1"],
      ["an address inside the cluster", "https://10.0.0.1/?mid=1"],
    ]) {
      test(`P4: ${what}: refused with MediaHostRefusedError, and no request goes there`, async () => {
        const { client, seen } = meta(url as string);
        await assert.rejects(
          fetchBytes(client, "1", { maxBytes: MB }),
          (e: MediaHostRefusedError) => e instanceof MediaHostRefusedError && /not an allowed media host|neither/.test(e.message),
        );
        assert.deepEqual(
          seen.map((r) => new URL(r.url).host),
          ["graph.facebook.com"],
        );
      });
    }

    test("P4: WHATSAPP_MEDIA_HOSTS replaces the default list: the configured host is allowed, Meta's is then refused", async () => {
      const own = meta("https://media.example.net/m/1", ["media.example.net"]);
      assert.deepEqual((await fetchBytes(own.client, "1", { maxBytes: MB })).bytes, bytes);
      const other = meta("https://lookaside.fbsbx.com/m/1", ["media.example.net"]);
      await assert.rejects(fetchBytes(other.client, "1", { maxBytes: MB }), MediaHostRefusedError);
      assert.equal(other.seen.length, 1);
    });

    test("P4: the setting defaults to Meta's media host and takes only host names", () => {
      assert.deepEqual(WhatsAppConfig.parse({ WHATSAPP_ACCESS_TOKEN: "t" }).WHATSAPP_MEDIA_HOSTS, ["lookaside.fbsbx.com"]);
      assert.deepEqual(WhatsAppConfig.parse({ WHATSAPP_ACCESS_TOKEN: "t", WHATSAPP_MEDIA_HOSTS: " A.example.com, b.example.com " }).WHATSAPP_MEDIA_HOSTS, [
        "a.example.com",
        "b.example.com",
      ]);
      for (const bad of ["https://a.example.com", "a.example.com:443", "a.example.com/x", ","])
        assert.equal(WhatsAppConfig.safeParse({ WHATSAPP_ACCESS_TOKEN: "t", WHATSAPP_MEDIA_HOSTS: bad }).success, false, bad);
    });
  });
});

describe("uploading results", () => {
  test("an OGG/Opus upload returns a media id whose bytes and type WhatsApp keeps", async () => {
    const bytes = ogg(5000);
    const seen = sim.requests.length;
    const id = await wa.uploadMedia(sim.phoneNumberId, bytes, "audio/ogg; codecs=opus", "cleaned.ogg");
    assert.deepEqual(sim.media(id), { bytes, mimeType: "audio/ogg; codecs=opus" });
    const [upload] = requestsSince(seen);
    assert.deepEqual(upload?.body, {
      messaging_product: "whatsapp",
      type: "audio/ogg; codecs=opus",
      file: { filename: "cleaned.ogg", mimeType: "audio/ogg; codecs=opus", size: bytes.length },
    });
  });

  test("a stream of known size is uploaded as it is read: 15 MB arrive intact with their length, and a stream shorter than announced fails", async () => {
    const bytes = mp4(15 * MB);
    const seen = sim.requests.length;
    const chunked = () =>
      Readable.from(
        (function* () {
          for (let i = 0; i < bytes.length; i += 64 * 1024) yield bytes.subarray(i, i + 64 * 1024);
        })(),
      );
    const id = await wa.uploadMedia(sim.phoneNumberId, { body: chunked(), size: bytes.length }, "video/mp4", "clean.mp4");
    assert.ok(sim.media(id)?.bytes.equals(bytes));
    const [upload] = requestsSince(seen);
    assert.equal(Number(upload?.headers["content-length"]) > bytes.length, true, "sent with its length, not chunked");
    await assert.rejects(wa.uploadMedia(sim.phoneNumberId, { body: chunked(), size: bytes.length + 1 }, "video/mp4", "short.mp4"));
  });

  test("WhatsApp's limits are enforced with error 131053, which is not worth retrying", async () => {
    const cases: [Buffer, string, RegExp][] = [
      [mp3(16 * MB), "audio/mpeg", /exceeds the 16 MB limit/],
      [mp4(16 * MB), "video/mp4", /exceeds the 16 MB limit/],
      [Buffer.from("GIF89a"), "image/gif", /Unsupported media type image\/gif/],
      [mp3(), "audio/ogg", /not audio\/ogg/],
      [Buffer.concat([Buffer.from("OggS"), Buffer.alloc(24), Buffer.from("\u0001vorbis"), Buffer.alloc(100)]), "audio/ogg", /not audio\/ogg/],
    ];
    for (const [bytes, type, why] of cases) {
      const err = await wa.uploadMedia(sim.phoneNumberId, bytes, type, "f").catch((e: unknown) => e);
      assert.ok(err instanceof GraphApiError, `${type} was refused`);
      assert.equal(err.code, 131053);
      assert.equal(err.kind, "media-rejected");
      assert.equal(err.retryable, false);
      assert.match(err.details ?? "", why);
    }
    assert.ok(await wa.uploadMedia(sim.phoneNumberId, mp4(15 * MB), "video/mp4", "ok.mp4"), "15 MB of MP4 is fine");
  });

  test("deleted media is gone", async () => {
    const id = await wa.uploadMedia(sim.phoneNumberId, mp3(), "audio/mpeg", "x.mp3");
    await wa.deleteMedia(id);
    await assert.rejects(wa.getMediaInfo(id), (e: GraphApiError) => e.code === 100);
  });
});

describe("messages to the user", () => {
  let incoming: string;
  before(async () => {
    const r = await sim.sendUserMessage({ type: "audio", bytes: ogg(), mimeType: "audio/ogg; codecs=opus", voice: true, from: USER });
    incoming = r.id;
  });

  test("the cleaned voice note comes back as a voice note quoted on the original", async () => {
    const mediaId = await wa.uploadMedia(sim.phoneNumberId, ogg(), "audio/ogg; codecs=opus", "clean.ogg");
    const wamid = await wa.sendAudio(sim.phoneNumberId, USER, mediaId, { voice: true, replyTo: incoming });
    const sent = sim.sentMessages().find((m) => m.id === wamid);
    assert.deepEqual(
      {
        to: sent?.to,
        addressedBy: sent?.addressedBy,
        type: sent?.type,
        replyTo: sent?.replyTo,
        mediaId: sent?.mediaId,
        voice: sent?.voice,
        status: sent?.status,
      },
      { to: USER.waId, addressedBy: "to", type: "audio", replyTo: incoming, mediaId, voice: true, status: "accepted" },
    );
    const request = sim.requests.findLast((r) => r.path.endsWith("/messages"))?.body as { to?: string } | undefined;
    assert.equal(request?.to, `+${USER.waId}`, "the number goes out with its + so Meta does not prefix a country code");
  });

  test("a cleaned video, a text, a reaction and a template each reach the user as sent", async () => {
    const videoId = await wa.uploadMedia(sim.phoneNumberId, mp4(), "video/mp4", "clean.mp4");
    const video = await wa.sendVideo(sim.phoneNumberId, USER, videoId, { caption: "music removed", replyTo: incoming });
    const text = await wa.sendText(sim.phoneNumberId, USER, "Sorry, that file is too long.", { replyTo: incoming });
    const reaction = await wa.sendReaction(sim.phoneNumberId, USER, incoming, "✅");
    const template = await wa.sendTemplate(sim.phoneNumberId, USER, { name: "policy_update", languageCode: "en", bodyParameters: ["1 December"] });
    const byId = new Map(sim.sentMessages().map((m) => [m.id, m]));
    assert.equal(byId.get(video)?.caption, "music removed");
    assert.equal(byId.get(video)?.mediaId, videoId);
    assert.equal(byId.get(text)?.text, "Sorry, that file is too long.");
    assert.equal(byId.get(text)?.replyTo, incoming);
    assert.deepEqual(byId.get(reaction)?.reaction, { messageId: incoming, emoji: "✅" });
    assert.deepEqual(byId.get(template)?.template, {
      name: "policy_update",
      languageCode: "en",
      components: [{ type: "body", parameters: [{ type: "text", text: "1 December" }] }],
    });
  });

  test("a username-only user is addressed by BSUID in `recipient`, never `to`", async () => {
    const wamid = await wa.sendText(sim.phoneNumberId, { userId: USER.userId }, "Here you go");
    const body = sim.requests.findLast((r) => r.path.endsWith("/messages"))?.body as Record<string, unknown>;
    assert.equal(body.recipient, USER.userId);
    assert.equal("to" in body, false);
    const sent = sim.sentMessages().find((m) => m.id === wamid);
    assert.deepEqual([sent?.to, sent?.addressedBy, sent?.status], [USER.userId, "recipient", "accepted"]);
  });

  test("marking read shows blue ticks, with the typing indicator when asked", async () => {
    await wa.markRead(sim.phoneNumberId, incoming, { typing: true });
    assert.deepEqual(sim.markedRead().at(-1), { messageId: incoming, typing: true, time: now });
    const body = sim.requests.at(-1)?.body;
    assert.deepEqual(body, { messaging_product: "whatsapp", status: "read", message_id: incoming, typing_indicator: { type: "text" } });
  });

  test("sending media that was never uploaded is a bad request, not a retry", async () => {
    const err = await wa.sendAudio(sim.phoneNumberId, USER, "1234567890123456").catch((e: unknown) => e);
    assert.ok(err instanceof GraphApiError);
    assert.deepEqual([err.code, err.kind, err.retryable], [100, "bad-request", false]);
  });
});

describe("message templates", () => {
  test("a template's review status is read from the business account, exactly by name and language", async () => {
    sim.setTemplate("policy_notice", "en", "APPROVED");
    sim.setTemplate("policy_notice", "de", "PENDING");
    sim.setTemplate("policy_notice_v2", "en", "REJECTED");
    const seen = sim.requests.length;
    assert.equal(await wa.templateStatus(sim.wabaId, "policy_notice", "en"), "APPROVED");
    assert.equal(await wa.templateStatus(sim.wabaId, "policy_notice", "de"), "PENDING");
    assert.equal(await wa.templateStatus(sim.wabaId, "policy_notice_v2", "en"), "REJECTED", "not confused with the name it contains");
    assert.equal(await wa.templateStatus(sim.wabaId, "policy_notice", "fr"), undefined);
    assert.equal(await wa.templateStatus(sim.wabaId, "no_such_template", "en"), undefined);
    const first = requestsSince(seen)[0];
    assert.equal(first?.method, "GET");
    assert.match(first?.path ?? "", new RegExp(`^/${sim.version}/${sim.wabaId}/message_templates\\?name=policy_notice&`));
    assert.equal(first?.headers.authorization, `Bearer ${TOKEN}`);
  });

  test("the approved templates, for an operator to pick from: only APPROVED ones, each with its language", async () => {
    sim.setTemplate("policy_notice", "en", "APPROVED");
    sim.setTemplate("policy_notice", "de", "PENDING");
    sim.setTemplate("policy_notice_v2", "en", "REJECTED");
    sim.setTemplate("policy_notice", "es", "APPROVED");
    const listed = await wa.approvedTemplates(sim.wabaId);
    const names = listed.map((t) => `${t.name}/${t.languageCode}`).sort();
    assert.ok(names.includes("policy_notice/en") && names.includes("policy_notice/es"), names.join(", "));
    assert.ok(!names.includes("policy_notice/de") && !names.includes("policy_notice_v2/en"), "no pending or rejected one");
    assert.match(sim.requests.at(-1)?.path ?? "", /message_templates\?status=APPROVED&/);
  });

  test("a template that is not approved is refused when sent (132001); the wrong account is an unknown object", async () => {
    sim.setTemplate("policy_paused", "en", "PAUSED");
    await assert.rejects(wa.sendTemplate(sim.phoneNumberId, USER, { name: "policy_paused", languageCode: "en" }), (e: GraphApiError) => {
      assert.deepEqual([e.code, e.kind, e.retryable], [132001, "template", false]);
      return true;
    });
    await assert.rejects(wa.templateStatus("999999999", "policy_notice", "en"), (e: GraphApiError) => e.code === 100);
  });
});

describe("errors say whether to retry", () => {
  test("each injected Meta error is classified per the reference, with its trace id and details", async () => {
    const cases: [Parameters<WhatsAppSimulator["failNext"]>[1], Partial<GraphApiError>][] = [
      ["token-expired", { status: 401, code: 190, subcode: 463, kind: "auth", retryable: false }],
      ["rate-limit", { status: 400, code: 130429, kind: "rate-limit", retryable: true, retryAfterMs: 1000 }],
      ["pair-rate-limit", { status: 400, code: 131056, kind: "pair-rate-limit", retryable: true, retryAfterMs: 1000 }],
      ["media-rejected", { status: 400, code: 131053, kind: "media-rejected", retryable: false }],
      ["temporarily-unavailable", { status: 503, code: 133004, kind: "temporary", retryable: true }],
    ];
    const meta = (code: number, httpStatus = 400): MetaError => ({ httpStatus, code, message: `(#${code}) test` });
    const more: [MetaError, Partial<GraphApiError>][] = [
      [meta(0, 401), { kind: "auth", retryable: false }],
      [meta(1), { kind: "temporary", retryable: true }],
      [meta(2, 503), { kind: "temporary", retryable: true }],
      [meta(131000, 500), { kind: "temporary", retryable: true }],
      [meta(131016, 503), { kind: "temporary", retryable: true }],
      [meta(4), { kind: "rate-limit", retryable: true, retryAfterMs: 60_000 }],
      [meta(80007), { kind: "rate-limit", retryable: true, retryAfterMs: 60_000 }],
      [meta(131057), { kind: "rate-limit", retryable: true, retryAfterMs: 60_000 }],
      [meta(131047), { kind: "outside-window", retryable: false }],
      [meta(131026), { kind: "undeliverable", retryable: false }],
      [meta(131052), { kind: "media-unavailable", retryable: false }],
      [meta(100), { kind: "bad-request", retryable: false }],
      [meta(131008), { kind: "bad-request", retryable: false }],
      [meta(131009), { kind: "bad-request", retryable: false }],
      [meta(10, 403), { kind: "permission", retryable: false }],
      [meta(200, 403), { kind: "permission", retryable: false }],
      [meta(131005, 403), { kind: "permission", retryable: false }],
      [meta(131049), { kind: "withheld", retryable: false }],
      [meta(132001), { kind: "template", retryable: false }],
      [meta(368), { kind: "restricted", retryable: false }],
      [meta(131031), { kind: "restricted", retryable: false }],
    ];
    for (const [fault, expected] of [...cases, ...more]) {
      sim.failNext("messages", fault);
      const err = await wa.sendText(sim.phoneNumberId, USER, "hello").catch((e: unknown) => e);
      assert.ok(err instanceof GraphApiError, `${JSON.stringify(fault)} throws a GraphApiError`);
      for (const [key, value] of Object.entries(expected)) assert.equal(err[key as keyof GraphApiError], value, `${JSON.stringify(fault)}: ${key}`);
      assert.ok(err.fbtraceId, "fbtrace_id is kept for Meta support");
    }
  });

  test("the pair rate limit backs off 4^X seconds, as Meta asks", async () => {
    sim.failNext("messages", "pair-rate-limit");
    const err = (await wa.sendText(sim.phoneNumberId, USER, "hi").catch((e: unknown) => e)) as GraphApiError;
    assert.deepEqual(
      [0, 1, 2, 3].map((x) => err.retryDelayMs(x)),
      [1000, 4000, 16_000, 64_000],
    );
    assert.match(err.details ?? "", /same recipient phone number/);
  });

  test("an expired token on a download is an auth error, not an expired URL", async () => {
    const info = await wa.getMediaInfo(sim.addMedia(ogg(), "audio/ogg"));
    sim.failNext("media-download", "token-expired");
    await assert.rejects(wa.downloadMedia(info.url, { maxBytes: MB }), (e: GraphApiError) => e.kind === "auth" && e.status === 401);
  });

  test("after a failure the next call succeeds: faults last only as long as asked", async () => {
    sim.failNext("messages", "rate-limit", 2);
    for (let i = 0; i < 2; i++) await assert.rejects(wa.sendText(sim.phoneNumberId, USER, "x"), (e: GraphApiError) => e.code === 130429);
    assert.match(await wa.sendText(sim.phoneNumberId, USER, "x"), /^wamid\./);
  });

  test("a wrong token is refused with 190 by the simulator, as by Meta", async () => {
    const stranger = createWhatsAppClient({ baseUrl: sim.baseUrl, version: sim.version, accessToken: "not-the-token" });
    await assert.rejects(stranger.getMediaInfo(sim.addMedia(ogg(), "audio/ogg")), (e: GraphApiError) => e.code === 190 && e.kind === "auth");
  });

  test("an unreachable API is a retryable error, not a crash", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    const offline = createWhatsAppClient({ baseUrl: `http://127.0.0.1:${port}`, version: "v24.0", accessToken: TOKEN });
    await assert.rejects(offline.sendText("1", USER, "x"), (e: GraphApiError) => e.status === 0 && e.kind === "temporary" && e.retryable);
  });

  test("an answer that is not Graph's JSON is a typed error: retryable from a failing proxy, not from a confused one", async () => {
    sim.failNext("messages", { httpStatus: 502 });
    await assert.rejects(
      wa.sendText(sim.phoneNumberId, USER, "x"),
      (e: GraphApiError) => e.status === 502 && e.code === undefined && e.kind === "temporary" && e.retryable,
    );
    sim.failNext("messages", { httpStatus: 200 });
    await assert.rejects(wa.sendText(sim.phoneNumberId, USER, "x"), (e: GraphApiError) => /unexpected WhatsApp API response/.test(e.message) && !e.retryable);
  });

  test("a slow API times out into a retryable error", async () => {
    const impatient = createWhatsAppClient({ baseUrl: sim.baseUrl, version: sim.version, accessToken: TOKEN, timeoutMs: 100 });
    sim.delayNext("messages", 500);
    await assert.rejects(impatient.sendText(sim.phoneNumberId, USER, "x"), (e: GraphApiError) => e.status === 0 && e.retryable);
  });
});

describe("webhook signatures", () => {
  test("signWebhookBody matches a published HMAC-SHA256 vector and node:crypto over the same bytes", () => {
    assert.equal(
      signWebhookBody("The quick brown fox jumps over the lazy dog", "key"),
      "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
    );
    const body = Buffer.from('{"object":"whatsapp_business_account","entry":[]}');
    assert.equal(signWebhookBody(body, APP_SECRET), `sha256=${createHmac("sha256", APP_SECRET).update(body).digest("hex")}`);
  });

  test("verifyWebhookSignature accepts only the signature of these exact bytes with this secret", () => {
    const body = Buffer.from('{"object":"whatsapp_business_account","entry":[]}');
    const good = `sha256=${createHmac("sha256", APP_SECRET).update(body).digest("hex")}`;
    assert.equal(verifyWebhookSignature(body, good, APP_SECRET), true);
    assert.equal(verifyWebhookSignature(body, good.toUpperCase().replace("SHA256=", "sha256="), APP_SECRET), true, "hex case does not matter");
    assert.equal(verifyWebhookSignature(Buffer.from(`${body} `), good, APP_SECRET), false, "one more byte");
    assert.equal(verifyWebhookSignature(body, good, "another-secret"), false);
    assert.equal(verifyWebhookSignature(body, undefined, APP_SECRET), false);
    assert.equal(verifyWebhookSignature(body, good.slice(7), APP_SECRET), false, "no sha256= prefix");
    assert.equal(verifyWebhookSignature(body, good.slice(0, -2), APP_SECRET), false, "truncated");
    assert.equal(verifyWebhookSignature(body, `${good}00`, APP_SECRET), false, "too long");
    assert.equal(verifyWebhookSignature(body, `sha1=${createHmac("sha1", APP_SECRET).update(body).digest("hex")}`, APP_SECRET), false);
    assert.equal(verifyWebhookSignature(body, `sha256=${"zz".repeat(32)}`, APP_SECRET), false);
  });

  test("non-ASCII is escaped as Meta does, and only the escaped bytes verify", () => {
    const payload = { contacts: [{ profile: { name: "Zoë 🎧 Ñandú" } }] };
    const escaped = escapeNonAscii(JSON.stringify(payload));
    assert.equal(escaped, '{"contacts":[{"profile":{"name":"Zo\\u00eb \\ud83c\\udfa7 \\u00d1and\\u00fa"}}]}');
    assert.deepEqual(JSON.parse(escaped), payload, "still the same JSON");
    const header = `sha256=${createHmac("sha256", APP_SECRET).update(Buffer.from(escaped)).digest("hex")}`;
    assert.equal(verifyWebhookSignature(Buffer.from(escaped), header, APP_SECRET), true);
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(escaped)), "utf8");
    assert.equal(verifyWebhookSignature(reserialised, header, APP_SECRET), false, "the decoded UTF-8 text is not what Meta signed");
  });

  test("odd whitespace is part of the signed bytes", () => {
    const raw = Buffer.from('{ "object" :\t"whatsapp_business_account",\r\n  "entry": [ ] }\n');
    const header = `sha256=${createHmac("sha256", APP_SECRET).update(raw).digest("hex")}`;
    assert.equal(verifyWebhookSignature(raw, header, APP_SECRET), true);
    assert.equal(verifyWebhookSignature(Buffer.from(JSON.stringify(JSON.parse(raw.toString()))), header, APP_SECRET), false);
  });
});
